"""Identifiers: a type prefix and 26 characters that sort by creation time (ULID layout).

Sorting by id is sorting by creation, which gives stable cursors for newest-first lists.
Within a process ids are strictly increasing (ULID's monotonic mode: in the same
millisecond, or if the clock steps back, the random part counts up), so two events a
transaction writes in one millisecond list in the order they happened.
"""

from __future__ import annotations

import secrets
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


_lock = threading.Lock()
_last = 0


def new_id(prefix: str) -> str:
    global _last
    fresh = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    with _lock:
        value = _last = max(fresh, _last + 1 + secrets.randbits(16))
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return f"{prefix}_{''.join(reversed(chars))}"


def wallet_id_for(agency_id: str) -> str:
    """An agency's one wallet has an id derived from the agency's, so no lookup is needed."""
    return "wal_" + agency_id.removeprefix("agc_")


def system_account_id(kind: str, currency: str) -> str:
    return f"sys_{kind}_{currency}"
