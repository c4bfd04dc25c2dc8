"""JSON log lines (REFILL_LOG_FORMAT=json): one object a line with time, level, logger,
message and the request id in context; nothing that looks like a secret or a card number;
and the request-id layer that sets that id and answers it as X-Request-Id."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from contextvars import copy_context
from typing import Any

from refill.api.request_id import RequestId
from refill.logs import REQUEST_ID, JsonFormatter, redact


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    return logging.LogRecord(
        "refill.reload",
        logging.WARNING,
        __file__,
        1,
        message,
        args,
        sys.exc_info() if exc else None,
    )


def formatted(rec: logging.LogRecord, request_id: str | None = None) -> dict[str, Any]:
    def run() -> str:
        if request_id is not None:
            REQUEST_ID.set(request_id)
        return JsonFormatter().format(rec)

    line = copy_context().run(run)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_a_record_with_a_request_id_in_context_is_one_json_line_with_those_keys() -> None:
    entry = formatted(record("reload %s of %s blocked", "rld_1", "agc_1"), "req-42")
    assert set(entry) == {"time", "level", "logger", "message", "request_id"}
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "refill.reload"
    assert entry["message"] == "reload rld_1 of agc_1 blocked"
    assert entry["request_id"] == "req-42"
    assert entry["time"].endswith("Z")


def test_without_a_request_no_request_id_and_a_traceback_is_one_field() -> None:
    assert "request_id" not in formatted(record("worker pass"))
    try:
        raise ValueError("boom\non two lines")
    except ValueError:
        entry = formatted(record("failed", exc=True))
    assert "ValueError: boom" in entry["exception"]


def test_no_secret_and_no_card_number_is_written() -> None:
    secrets = [
        "Bearer rfl_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        "sk_live_51Hq2abcdefghijklmnop",
        "whsec_c2VjcmV0LW9mLWEtd2ViaG9vaw==",
        "postgresql+psycopg://refill:hunter2@db.internal/refill",
        "4242 4242 4242 4242",
        "4000000000000002",
    ]
    message = " | ".join(secrets)
    entry = formatted(record("%s", message), "req-1")
    line = json.dumps(entry)
    for fragment in ("rfl_AbCd", "51Hq2", "c2VjcmV0", "hunter2", "4242 4242", "4000000000000002"):
        assert fragment not in line
    assert "postgresql+psycopg://refill:[redacted]@db.internal/refill" in entry["message"]
    # Ids, amounts and times are not card numbers.
    kept = "txn_1234567890123 amount 1234567890123 at 1767225600000"
    assert redact(kept) == kept


async def _answer(app: Any, headers: list[tuple[bytes, bytes]]) -> tuple[list[Any], str | None]:
    seen: dict[str, str | None] = {}

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen["id"] = REQUEST_ID.get()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/", "headers": headers}
    await app(inner)(scope, receive, send)
    return sent[0]["headers"], seen["id"]


def test_the_request_id_is_the_callers_when_sane_and_answered_back() -> None:
    headers, seen = asyncio.run(_answer(RequestId, [(b"x-request-id", b"abc.DEF_1-2")]))
    assert seen == "abc.DEF_1-2"
    assert headers == [(b"x-request-id", b"abc.DEF_1-2")]
    for insane in (b"a b", b"x" * 101, b"", b"\xff", b"<script>"):
        headers, seen = asyncio.run(_answer(RequestId, [(b"x-request-id", insane)]))
        assert seen is not None
        assert len(seen) == 32
        assert headers == [(b"x-request-id", seen.encode())]
    assert REQUEST_ID.get() is None
