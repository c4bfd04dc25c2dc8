"""What every request must pass before the application reads it.

A pure ASGI layer (no per-request objects on the hot path):

- a body larger than ``max_body_bytes`` (or the larger limit of a path in ``path_limits``,
  e.g. the usage batch) is refused with 413 ``request_too_large``: at once
  when ``Content-Length`` says so, otherwise as soon as the bytes received pass the limit,
  so an anonymous client can never make the server hold a large body;
- a NUL character in the path, the query, a header or a form body is refused with 422
  ``invalid_characters`` (PostgreSQL cannot store it, and no name, id or reference has one).
  JSON bodies are checked field by field by the request schemas.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from refill.api.problems import Refused, refused

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _too_large(limit: int) -> Refused:
    return Refused(413, "request_too_large", f"the request body is larger than {limit} bytes")


def _nul(where: str) -> Refused:
    return Refused(422, "invalid_characters", f"{where} contains a NUL character, never valid")


def has_nul(text: str) -> bool:
    return "\x00" in text


def _nul_in_query(query: bytes) -> bool:
    lowered = query.lower()
    return b"%00" in lowered or b"\x00" in lowered


class RequestGuard:
    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, path_limits: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.path_limits = path_limits or {}

    def _limit(self, scope: Scope) -> int:
        return self.path_limits.get(scope.get("path", ""), self.max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._check_head(scope)
        if refusal is not None:
            # Answered here; under /portal the portal's layer turns it into a page.
            await refused(refusal)(scope, receive, send)
            return
        await self.app(scope, self._guarded(scope, receive), send)

    def _check_head(self, scope: Scope) -> Refused | None:
        if has_nul(scope.get("path", "")) or _nul_in_query(scope.get("query_string", b"")):
            return _nul("the address")
        for name, value in scope.get("headers", []):
            if b"\x00" in value:
                return _nul(f"the {name.decode('latin-1')} header")
            limit = self._limit(scope)
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                return _too_large(limit)
        return None

    def _guarded(self, scope: Scope, receive: Receive) -> Receive:
        """``receive`` that counts the body as it arrives (and looks for NUL in forms)."""
        limit = self._limit(scope)
        form = any(
            name == b"content-type" and value.startswith(b"application/x-www-form-urlencoded")
            for name, value in scope.get("headers", [])
        )
        seen = 0
        tail = b""

        async def receive_guarded() -> Message:
            nonlocal seen, tail
            message = await receive()
            if message["type"] == "http.request":
                chunk: bytes = message.get("body", b"")
                seen += len(chunk)
                if seen > limit:
                    raise _too_large(limit)
                if form:
                    window = tail + chunk
                    if _nul_in_query(window):
                        raise _nul("the form")
                    tail = window[-2:]
            return message

        return receive_guarded
