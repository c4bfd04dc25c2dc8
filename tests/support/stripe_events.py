"""Stripe webhook bodies signed as Stripe signs them (HMAC-SHA256 over "t.payload")."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time

from tests.support.stripe_peer import WEBHOOK_SECRET


def signed(payload: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    """A Stripe-Signature header as Stripe computes it: HMAC-SHA256 of "t.payload"."""
    timestamp = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def event_body(event_type: str = "payment_intent.succeeded") -> bytes:
    return json.dumps(
        {
            "id": "evt_" + secrets.token_hex(8),
            "object": "event",
            "type": event_type,
            "data": {"object": {"id": "pi_1", "object": "payment_intent", "status": "succeeded"}},
        }
    ).encode()
