"""localstripe behind Stripe's idempotency rule, with faults on command.

localstripe ignores ``Idempotency-Key``: a second create with the same key makes a second
PaymentIntent, which real Stripe never does (it replays the first answer for 24 hours).
This proxy sits between Refill and localstripe and gives the emulator that rule: the first
POST with a key is forwarded and its answer kept; every later POST with the same key gets
that answer again (``Idempotent-Replayed: true``), without reaching localstripe. Two POSTs
with one key at once are serialized, so the second is a replay.

Faults, armed per path prefix and used once each, let a test kill a process while Stripe
holds its request:

- ``after``: forward the request (Stripe acts), keep the answer, then hold the connection
  for ``seconds`` before answering (the caller waits, or is killed meanwhile);
- ``drop``: hold the connection for ``seconds`` and close it without forwarding (the
  request never reached Stripe).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

import httpx

Mode = Literal["after", "drop"]
_FORWARDED_HEADERS = ("authorization", "content-type", "idempotency-key", "stripe-version")


@dataclass
class _Fault:
    prefix: str
    mode: Mode
    seconds: float


@dataclass(frozen=True)
class _Answer:
    status: int
    content_type: str
    body: bytes


class IdempotentStripeProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self._answers: dict[str, _Answer] = {}
        self._key_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        # POSTs that reached localstripe, by path: what a test counts.
        self.forwarded: Counter[str] = Counter()
        self.replayed: Counter[str] = Counter()
        self._client = httpx.Client(base_url=self.upstream, timeout=30)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return None

            def do_GET(self) -> None:
                proxy._handle(self)

            def do_POST(self) -> None:
                proxy._handle(self)

            def do_DELETE(self) -> None:
                proxy._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def arm(self, prefix: str, mode: Mode, seconds: float = 600.0) -> None:
        """The next request whose path starts with ``prefix`` meets this fault."""
        with self._lock:
            self._faults.append(_Fault(prefix, mode, seconds))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def _fault_for(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if path.startswith(fault.prefix):
                    self._faults.remove(fault)
                    return fault
        return None

    def _key_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> _Answer:
        response = self._client.request(method, path, headers=headers, content=body)
        if method == "POST":
            with self._lock:
                self.forwarded[path.split("?")[0]] += 1
        return _Answer(
            response.status_code,
            response.headers.get("content-type", "application/json"),
            response.content,
        )

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        method, path = handler.command, handler.path
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {
            name: value
            for name, value in handler.headers.items()
            if name.lower() in _FORWARDED_HEADERS
        }
        key = handler.headers.get("Idempotency-Key") if method == "POST" else None
        fault = self._fault_for(path)
        if fault is not None and fault.mode == "drop":
            time.sleep(fault.seconds)
            handler.close_connection = True
            return
        replayed = False
        if key is None:
            answer = self._forward(method, path, headers, body)
        else:
            with self._key_lock(key):
                cached = self._answers.get(key)
                if cached is not None:
                    answer, replayed = cached, True
                    with self._lock:
                        self.replayed[path.split("?")[0]] += 1
                else:
                    answer = self._forward(method, path, headers, body)
                    if answer.status < 500 and answer.status != 409:
                        self._answers[key] = answer
        if fault is not None:  # "after": Stripe acted; the caller waits for the answer
            time.sleep(fault.seconds)
        try:
            handler.send_response(answer.status)
            handler.send_header("Content-Type", answer.content_type)
            handler.send_header("Content-Length", str(len(answer.body)))
            if replayed:
                handler.send_header("Idempotent-Replayed", "true")
            handler.end_headers()
            handler.wfile.write(answer.body)
        except OSError:
            pass  # the caller is gone (killed while it waited)
