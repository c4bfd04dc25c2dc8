"""Delivering events to the owner's webhook endpoints, signed by the open standard.

A delivery POSTs the event's JSON (``{id, type, created_at, data}``) with the Standard
Webhooks headers (``webhook-id``: the event's id, the same on every retry;
``webhook-timestamp``; ``webhook-signature``, made by the ``standardwebhooks`` library).
After a secret rotation both the new and the previous secret sign for 24 hours.

Any 2xx is success. Anything else (or no answer in 10 s) is retried on the schedule, with
jitter, for about three days; an endpoint that has failed continuously for three days is
disabled and the owner told. Redirects are not followed. At-least-once: the event id is the
receiver's de-duplication key.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, literal, or_, select, update
from standardwebhooks.webhooks import Webhook

from refill import metrics
from refill.db.database import Database, Tx
from refill.db.schema import UTCDateTime, events, webhook_deliveries, webhook_endpoints
from refill.keyring import Keyring
from refill.notify.events import Event, EventType, emit, event_from_row, when
from refill.notify.netguard import Resolver, UrlNotAllowed, check_url, pinned_client

log = logging.getLogger("refill.webhooks")

TIMEOUT_SECONDS = 10.0
DISABLE_AFTER = timedelta(days=3)
ROTATION_OVERLAP = timedelta(hours=24)
# Standard Webhooks' suggested schedule, stretched to about three days.
DEFAULT_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000, 36000, 36000, 36000, 36000, 36000)


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    keyring: Keyring
    resolver: Resolver
    allow_private: bool
    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    timeout: float = TIMEOUT_SECONDS

    @property
    def lease(self) -> timedelta:
        """How long a claimed delivery is another process's: past the POST's timeout, so a
        live one is never sent twice at once, and soon after it, so a crash delays little."""
        return timedelta(seconds=self.timeout * 2 + 5)


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery_id: str
    attempts: int
    endpoint_id: str
    agency_id: str
    url: str
    generation: int
    previous_valid_until: datetime | None
    body: str
    event_id: str


def secrets_for(config: DeliveryConfig, claimed: Claimed, now: datetime) -> list[str]:
    current = config.keyring.webhook_secret(claimed.endpoint_id, claimed.generation)
    if claimed.previous_valid_until is not None and claimed.previous_valid_until > now:
        previous = config.keyring.webhook_secret(claimed.endpoint_id, claimed.generation - 1)
        return [current, previous]
    return [current]


def sign(secrets: list[str], msg_id: str, at: datetime, body: str) -> str:
    """The ``webhook-signature`` header: one ``v1,…`` per secret, space-separated."""
    return " ".join(Webhook(secret).sign(msg_id, at, body) for secret in secrets)


def _claim(tx: Tx, delivery_id: str, lease: timedelta) -> Claimed | None:
    row = tx.conn.execute(
        update(webhook_deliveries)
        .where(
            webhook_deliveries.c.id == delivery_id,
            webhook_deliveries.c.status == "pending",
            webhook_deliveries.c.next_attempt_at <= tx.now,
            or_(
                webhook_deliveries.c.lease_until.is_(None),
                webhook_deliveries.c.lease_until <= tx.now,
            ),
        )
        .values(lease_until=tx.now + lease)
        .returning(
            webhook_deliveries.c.attempts,
            webhook_deliveries.c.endpoint_id,
            webhook_deliveries.c.event_id,
        )
    ).one_or_none()
    if row is None:
        return None
    endpoint = tx.conn.execute(
        select(webhook_endpoints).where(webhook_endpoints.c.id == row.endpoint_id)
    ).one()
    if not endpoint.enabled:
        # Waits for the endpoint to be enabled again (which makes it due).
        tx.conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id == delivery_id)
            .values(lease_until=None, next_attempt_at=None, last_error="endpoint disabled")
        )
        return None
    event = event_from_row(
        tx.conn.execute(select(events).where(events.c.id == row.event_id)).one()._mapping
    )
    return claimed_for(delivery_id, int(row.attempts), endpoint, event)


def claimed_for(delivery_id: str, attempts: int, endpoint: Any, event: Event) -> Claimed:
    """What a claimed delivery needs to be sent, from its endpoint's row and its event."""
    return Claimed(
        delivery_id,
        attempts,
        endpoint.id,
        endpoint.agency_id,
        endpoint.url,
        int(endpoint.secret_generation),
        endpoint.previous_valid_until,
        json.dumps(event.payload(), sort_keys=True),
        event.id,
    )


@dataclass(frozen=True, slots=True)
class Attempt:
    ok: bool
    status_code: int | None
    error: str | None


def post(config: DeliveryConfig, claimed: Claimed, now: datetime) -> Attempt:
    """One POST, outside any transaction."""
    try:
        target = check_url(
            claimed.url, resolver=config.resolver, allow_private=config.allow_private
        )
    except UrlNotAllowed as exc:
        return Attempt(False, None, exc.message)
    headers = {
        "content-type": "application/json",
        "user-agent": "Refill-Webhooks/1",
        "webhook-id": claimed.event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": sign(
            secrets_for(config, claimed, now), claimed.event_id, now, claimed.body
        ),
    }
    try:
        with pinned_client(target.addresses[0], config.timeout) as client:
            response = client.post(claimed.url, content=claimed.body.encode(), headers=headers)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        return Attempt(False, None, f"{type(exc).__name__}: {exc}"[:500])
    ok = 200 <= response.status_code < 300
    return Attempt(ok, response.status_code, None if ok else f"HTTP {response.status_code}")


def _record(tx: Tx, config: DeliveryConfig, claimed: Claimed, attempt: Attempt) -> str:
    """Record one delivery attempt; its outcome: succeeded, retrying or failed (for good)."""
    attempts = claimed.attempts + 1
    common = {
        "attempts": attempts,
        "last_status_code": attempt.status_code,
        "last_error": attempt.error,
        "lease_until": None,
        "updated_at": tx.now,
    }
    endpoint = webhook_endpoints.c
    if attempt.ok:
        tx.conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id == claimed.delivery_id)
            .values(status="succeeded", completed_at=tx.now, next_attempt_at=None, **common)
        )
        tx.conn.execute(  # a write only when it was failing: no contention on success
            update(webhook_endpoints)
            .where(endpoint.id == claimed.endpoint_id, endpoint.failing_since.is_not(None))
            .values(failing_since=None)
        )
        return "succeeded"
    wait = config.schedule[attempts - 1] if attempts <= len(config.schedule) else None
    tx.conn.execute(
        update(webhook_deliveries)
        .where(webhook_deliveries.c.id == claimed.delivery_id)
        .values(
            status="pending" if wait is not None else "failed",
            next_attempt_at=None if wait is None else tx.now + _jittered(wait),
            completed_at=None if wait is not None else tx.now,
            **common,
        )
    )
    failing_since = tx.conn.execute(
        update(webhook_endpoints)
        .where(endpoint.id == claimed.endpoint_id)
        .values(failing_since=func.coalesce(endpoint.failing_since, literal(tx.now, UTCDateTime())))
        .returning(endpoint.failing_since, endpoint.enabled, endpoint.url)
    ).one()
    _disable_if_failing(tx, claimed, failing_since.failing_since, failing_since.enabled)
    return "retrying" if wait is not None else "failed"


def _jittered(seconds: float) -> timedelta:
    return timedelta(seconds=seconds * random.uniform(0.9, 1.1))  # noqa: S311  jitter


def _disable_if_failing(
    tx: Tx, claimed: Claimed, failing_since: datetime | None, enabled: bool
) -> None:
    if not enabled or failing_since is None or tx.now - failing_since < DISABLE_AFTER:
        return
    reason = f"every delivery failed since {failing_since:%Y-%m-%d %H:%M} UTC"
    tx.conn.execute(
        update(webhook_endpoints)
        .where(webhook_endpoints.c.id == claimed.endpoint_id)
        .values(enabled=False, disabled_reason=reason, updated_at=tx.now)
    )
    emit(
        tx,
        claimed.agency_id,
        EventType.WEBHOOK_ENDPOINT_DISABLED,
        {
            "endpoint_id": claimed.endpoint_id,
            "url": claimed.url,
            "failing_since": when(failing_since),
            "reason": reason,
        },
    )
    log.warning("webhook endpoint %s disabled: %s", claimed.endpoint_id, reason)


def deliver(db: Database, config: DeliveryConfig, delivery_id: str) -> bool:
    """Claim, POST, record. False when the delivery is not due or another process has it."""
    claimed = db.write(lambda tx: _claim(tx, delivery_id, config.lease))
    if claimed is None:
        return False
    return send(db, config, claimed)


def send(db: Database, config: DeliveryConfig, claimed: Claimed) -> bool:
    """POST a delivery this process holds the lease of, and record what happened."""
    attempt = post(config, claimed, db.clock.now())
    metrics.count_webhook(db.write(lambda tx: _record(tx, config, claimed, attempt)))
    if not attempt.ok:
        log.info("webhook %s to %s failed: %s", claimed.event_id, claimed.url, attempt.error)
    return True


def due_deliveries(tx: Tx, limit: int) -> list[str]:
    stmt: Any = (
        select(webhook_deliveries.c.id)
        .where(
            webhook_deliveries.c.status == "pending",
            webhook_deliveries.c.next_attempt_at <= tx.now,
            or_(
                webhook_deliveries.c.lease_until.is_(None),
                webhook_deliveries.c.lease_until <= tx.now,
            ),
        )
        .order_by(webhook_deliveries.c.next_attempt_at)
        .limit(limit)
    )
    return list(tx.conn.execute(stmt).scalars())
