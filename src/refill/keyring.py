"""The server's own key, from which the secrets Refill needs are derived, so none of them is
stored: webhook signing secrets (per endpoint and generation) and the tokens in invitation
and password-reset links (per invitation or reset).

``REFILL_SECRET_KEY`` (32 bytes or more, base64) is the key; every process of a deployment
must share it. Without it, a key is made once and kept in ``REFILL_SECRET_KEY_FILE``
(default ``refill.secret``, readable by its owner only), which suits one machine.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger("refill.keyring")


class Keyring:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the secret key must have at least 32 bytes")
        self._key = key

    def derive(self, purpose: str, *parts: str) -> bytes:
        message = "\x00".join((purpose, *parts)).encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def token(self, purpose: str, *parts: str) -> str:
        """A URL-safe token for a link (invitation, reset), checked with ``token_ok``."""
        return base64.urlsafe_b64encode(self.derive(purpose, *parts)).decode().rstrip("=")

    def token_ok(self, given: str, purpose: str, *parts: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token(purpose, *parts).encode())

    def webhook_secret(self, endpoint_id: str, generation: int) -> str:
        """The endpoint's signing secret (``whsec_…``, Standard Webhooks' format)."""
        raw = self.derive("webhook-secret", endpoint_id, str(generation))
        return "whsec_" + base64.b64encode(raw).decode()


def keyring_from(key: str | None, key_file: Path) -> Keyring:
    if key:
        return Keyring(base64.b64decode(key + "=" * (-len(key) % 4)))
    if key_file.exists():
        return Keyring(base64.b64decode(key_file.read_text().strip()))
    fresh = base64.b64encode(secrets.token_bytes(32)).decode()
    descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(fresh + "\n")
    log.warning(
        "REFILL_SECRET_KEY is not set: made a key and kept it in %s. Every process must "
        "share one key (set REFILL_SECRET_KEY in production).",
        key_file,
    )
    return Keyring(base64.b64decode(fresh))
