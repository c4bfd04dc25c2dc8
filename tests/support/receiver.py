"""A local webhook receiver: records every POST, verifies its Standard Webhooks signature
with the ``standardwebhooks`` library (as an owner's receiver would), and answers as told:
a status code, or a hang longer than Refill's timeout."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()
    answered: int | None  # None: it hung

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    def signed_by(self, secret: str) -> bool:
        """One of the signatures is this secret's, whatever the clock says (``verified_with``
        also checks that the timestamp is recent, as a receiver does)."""
        at = datetime.fromtimestamp(int(self.headers["webhook-timestamp"]), tz=UTC)
        expected = Webhook(secret).sign(self.headers["webhook-id"], at, self.body.decode())
        return expected in self.headers["webhook-signature"].split()

    def verified_with(self, secret: str) -> bool:
        try:
            Webhook(secret).verify(self.body, self.headers)
        except WebhookVerificationError:
            return False
        return True


class Receiver:
    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.plan: deque[int | float] = deque()  # int: answer this status; float: hang s
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._changed:
                    step = receiver.plan.popleft() if receiver.plan else 200
                if isinstance(step, float):
                    receiver._record(self, body, None)
                    time.sleep(step)
                    return
                self.send_response(step)
                self.send_header("content-length", "0")
                self.end_headers()
                receiver._record(self, body, step)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _record(self, handler: BaseHTTPRequestHandler, body: bytes, status: int | None) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._changed:
            self.hits.append(Hit(handler.path, headers, body, time.monotonic(), status))
            self._changed.notify_all()

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/hooks") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Hit]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.hits) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.hits)} of {count} deliveries arrived")
                self._changed.wait(left)
            return list(self.hits)
