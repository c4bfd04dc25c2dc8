"""A request id for every HTTP request: the caller's ``X-Request-Id`` when it is a sane
token (1 to 100 characters of ``A-Z a-z 0-9 . _ -``), otherwise a new one. It is set in
``logs.REQUEST_ID`` for the request's log lines and sent back as ``X-Request-Id``.

A pure ASGI layer, the outermost: even a refusal before the routes carries the id.
"""

from __future__ import annotations

import re
import secrets

from refill.api.guard import ASGIApp, Message, Receive, Scope, Send
from refill.logs import REQUEST_ID

HEADER = b"x-request-id"
_SANE = re.compile(rb"[A-Za-z0-9._-]{1,100}")


def request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == HEADER and _SANE.fullmatch(value):
            return str(value.decode("ascii"))
    return secrets.token_hex(16)


class RequestId:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        header = (HEADER, request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != HEADER]
                message["headers"] = [*headers, header]
            await send(message)

        token = REQUEST_ID.set(request_id)
        await self.app(scope, receive, send_with_id)
        # Not reset when the request raised: the error handler outside this layer logs the
        # failure with its id. Each request runs in a context of its own and sets it anew.
        REQUEST_ID.reset(token)
