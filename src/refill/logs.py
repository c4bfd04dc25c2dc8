"""Log lines: plain text (the default) or, with ``REFILL_LOG_FORMAT=json``, one JSON object
per line with ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, the
``request_id`` of the HTTP request being served when there is one, and ``exception`` for a
traceback.

The request id is a ``ContextVar`` the API's request-id layer sets (``api/request_id.py``);
it follows the request into the threads its routes run on. Only those keys are written,
never a record's arguments or extras, and what looks like a secret (a bearer token, an API
or Stripe key, a webhook secret, a URL's password, a card number) is masked.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

REQUEST_ID: ContextVar[str | None] = ContextVar("refill_request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
MASK = "[redacted]"

_SECRETS = re.compile(
    r"(?i:\bbearer\s+)[^\s\"',;]+"  # Authorization: Bearer <key or token>
    r"|\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]+"  # Stripe secret and restricted keys
    r"|\bwhsec_[A-Za-z0-9+/=]+"  # webhook signing secrets
    r"|\brfl_[A-Za-z0-9_-]{16,}"  # Refill API keys
)
_URL_PASSWORD = re.compile(r"(?<=://)([^/\s:@]*):[^/\s@]+@")
_DIGITS = re.compile(r"\b\d(?:[ -]?\d){14,18}\b")  # 15 to 19 digits: a card number


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _card_number(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group())
    return MASK if _luhn(digits) else match.group()


def redact(text: str) -> str:
    """``text`` with what looks like a secret or a card number masked."""
    text = _SECRETS.sub(lambda m: m.group()[: m.group().find(" ") + 1] + MASK, text)
    text = _URL_PASSWORD.sub(r"\1:" + MASK + "@", text)
    return _DIGITS.sub(_card_number, text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, str] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def setup(log_format: Literal["text", "json"] = "text", level: int = logging.INFO) -> None:
    """Log to stderr in ``log_format`` (a no-op when logging is configured already)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=level, handlers=[handler])
