"""Events and webhook endpoints, as the owner manages them: reading events; adding,
changing, rotating, testing and removing endpoints; their deliveries, retried by hand."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

from refill import audit
from refill.db.database import Database, Tx
from refill.db.rows import record
from refill.db.schema import emails, events, webhook_deliveries, webhook_endpoints
from refill.errors import NotFound, ValidationFailed
from refill.ids import new_id
from refill.keyring import Keyring
from refill.notify.dispatch import NewDelivery, add_delivery
from refill.notify.events import Event, EventType, emit, event_from_row
from refill.notify.mail import recipients
from refill.notify.netguard import Rules, check_url
from refill.notify.webhooks import ROTATION_OVERLAP
from refill.services.pages import Page, paginate

MAX_ENDPOINTS = 20


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    agency_id: str
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    secret_generation: int
    previous_valid_until: datetime | None
    failing_since: datetime | None
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    endpoint_id: str
    event_id: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    completed_at: datetime | None


def _endpoint(row: Any) -> Endpoint:
    return record(Endpoint, row, event_types=json.loads(row["event_types"]))


def _delivery(row: Any) -> Delivery:
    return record(Delivery, row)


# --- events --------------------------------------------------------------------------------


def list_events(
    db: Database,
    *,
    agency_id: str,
    type_: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[Event]:
    stmt = select(events).where(events.c.agency_id == agency_id)
    if type_ is not None:
        stmt = stmt.where(events.c.type == type_)
    return paginate(
        db, stmt, events.c.id, event_from_row, limit=limit, cursor=cursor, newest_first=True
    )


def get_event(db: Database, *, agency_id: str, event_id: str) -> Event:
    def work(tx: Tx) -> Event:
        row = tx.conn.execute(
            select(events).where(events.c.id == event_id, events.c.agency_id == agency_id)
        ).one_or_none()
        if row is None:
            raise NotFound(f"event {event_id} not found", code="event_not_found")
        return event_from_row(row._mapping)

    return db.read(work)


# --- endpoints -----------------------------------------------------------------------------


def _types(given: list[str]) -> list[str]:
    known = {t.value for t in EventType} - {EventType.PING}
    if not given:
        raise ValidationFailed('choose at least one event type, or ["*"]', field="events")
    if given == ["*"]:
        return given
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValidationFailed(
            f"unknown event types: {', '.join(unknown)}",
            code="unknown_event_type",
            field="events",
        )
    return sorted(set(given))


def _load(tx: Tx, agency_id: str, endpoint_id: str) -> Endpoint:
    row = tx.conn.execute(
        select(webhook_endpoints).where(
            webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.agency_id == agency_id
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found", code="endpoint_not_found")
    return _endpoint(row._mapping)


def _snapshot(endpoint: Endpoint) -> dict[str, Any]:
    return {"url": endpoint.url, "events": endpoint.event_types, "enabled": endpoint.enabled}


def create_endpoint(
    db: Database,
    rules: Rules,
    keyring: Keyring,
    *,
    agency_id: str,
    url: str,
    event_types: list[str],
    description: str | None,
    actor: str,
) -> tuple[Endpoint, str]:
    """A new endpoint and its signing secret (shown once: it is derived, never stored)."""
    check_url(url, resolver=rules.resolver, allow_private=rules.allow_private)
    types = _types(event_types)

    def work(tx: Tx) -> Endpoint:
        count = len(
            tx.conn.execute(
                select(webhook_endpoints.c.id).where(webhook_endpoints.c.agency_id == agency_id)
            ).all()
        )
        if count >= MAX_ENDPOINTS:
            raise ValidationFailed(f"at most {MAX_ENDPOINTS} endpoints", code="too_many_endpoints")
        endpoint_id = new_id("we")
        tx.conn.execute(
            insert(webhook_endpoints).values(
                id=endpoint_id,
                agency_id=agency_id,
                url=url,
                description=description,
                event_types=json.dumps(types),
                enabled=True,
                secret_generation=1,
                created_at=tx.now,
                updated_at=tx.now,
            )
        )
        endpoint = _load(tx, agency_id, endpoint_id)
        audit.record(
            tx,
            agency_id=agency_id,
            actor=actor,
            action="webhook_endpoint.created",
            target_id=endpoint_id,
            after=_snapshot(endpoint),
        )
        return endpoint

    endpoint = db.write(work)
    return endpoint, keyring.webhook_secret(endpoint.id, endpoint.secret_generation)


def list_endpoints(db: Database, *, agency_id: str) -> list[Endpoint]:
    rows = db.read(
        lambda tx: tx.conn.execute(
            select(webhook_endpoints)
            .where(webhook_endpoints.c.agency_id == agency_id)
            .order_by(webhook_endpoints.c.id)
        ).all()
    )
    return [_endpoint(r._mapping) for r in rows]


def get_endpoint(db: Database, *, agency_id: str, endpoint_id: str) -> Endpoint:
    return db.read(lambda tx: _load(tx, agency_id, endpoint_id))


def update_endpoint(
    db: Database,
    rules: Rules,
    *,
    agency_id: str,
    endpoint_id: str,
    url: str | None = None,
    event_types: list[str] | None = None,
    enabled: bool | None = None,
    description: str | None = None,
    actor: str,
) -> Endpoint:
    """Change what is given. Enabling again forgets the failures and makes the deliveries
    that waited for it due now."""
    if url is not None:
        check_url(url, resolver=rules.resolver, allow_private=rules.allow_private)
    types = None if event_types is None else _types(event_types)

    def work(tx: Tx) -> Endpoint:
        before = _load(tx, agency_id, endpoint_id)
        values: dict[str, Any] = {"updated_at": tx.now}
        if url is not None:
            values["url"] = url
        if types is not None:
            values["event_types"] = json.dumps(types)
        if description is not None:
            values["description"] = description
        if enabled is not None:
            values["enabled"] = enabled
            if enabled and not before.enabled:
                values.update(failing_since=None, disabled_reason=None)
                tx.conn.execute(
                    update(webhook_deliveries)
                    .where(
                        webhook_deliveries.c.endpoint_id == endpoint_id,
                        webhook_deliveries.c.status == "pending",
                    )
                    .values(next_attempt_at=tx.now, last_error=None)
                )
        tx.conn.execute(
            update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id).values(**values)
        )
        after = _load(tx, agency_id, endpoint_id)
        audit.record(
            tx,
            agency_id=agency_id,
            actor=actor,
            action="webhook_endpoint.updated",
            target_id=endpoint_id,
            before=_snapshot(before),
            after=_snapshot(after),
        )
        return after

    return db.write(work)


def delete_endpoint(db: Database, *, agency_id: str, endpoint_id: str, actor: str) -> None:
    def work(tx: Tx) -> None:
        endpoint = _load(tx, agency_id, endpoint_id)
        tx.conn.execute(
            delete(webhook_deliveries).where(webhook_deliveries.c.endpoint_id == endpoint_id)
        )
        tx.conn.execute(delete(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id))
        audit.record(
            tx,
            agency_id=agency_id,
            actor=actor,
            action="webhook_endpoint.deleted",
            target_id=endpoint_id,
            before=_snapshot(endpoint),
        )

    db.write(work)


def rotate_secret(
    db: Database, keyring: Keyring, *, agency_id: str, endpoint_id: str, actor: str
) -> tuple[Endpoint, str]:
    """A new secret (shown once); the previous one still signs for 24 hours."""

    def work(tx: Tx) -> Endpoint:
        before = _load(tx, agency_id, endpoint_id)
        tx.conn.execute(
            update(webhook_endpoints)
            .where(webhook_endpoints.c.id == endpoint_id)
            .values(
                secret_generation=before.secret_generation + 1,
                previous_valid_until=tx.now + ROTATION_OVERLAP,
                updated_at=tx.now,
            )
        )
        audit.record(
            tx,
            agency_id=agency_id,
            actor=actor,
            action="webhook_endpoint.rotated",
            target_id=endpoint_id,
        )
        return _load(tx, agency_id, endpoint_id)

    endpoint = db.write(work)
    return endpoint, keyring.webhook_secret(endpoint.id, endpoint.secret_generation)


def send_test(db: Database, *, agency_id: str, endpoint_id: str) -> Delivery:
    """A ``ping`` event, delivered now to this endpoint only."""

    def work(tx: Tx) -> str:
        endpoint = _load(tx, agency_id, endpoint_id)
        event_id = emit(tx, agency_id, EventType.PING, {"endpoint_id": endpoint.id})
        row = tx.conn.execute(select(events).where(events.c.id == event_id)).one()
        add_delivery(tx, event_from_row(row._mapping), endpoint.id)
        return event_id

    event_id = db.write(work)
    return db.read(
        lambda tx: _delivery(
            tx.conn.execute(
                select(webhook_deliveries).where(
                    webhook_deliveries.c.endpoint_id == endpoint_id,
                    webhook_deliveries.c.event_id == event_id,
                )
            )
            .one()
            ._mapping
        )
    )


def list_deliveries(
    db: Database, *, agency_id: str, endpoint_id: str, limit: int = 50, cursor: str | None = None
) -> Page[Delivery]:
    db.read(lambda tx: _load(tx, agency_id, endpoint_id))
    stmt = select(webhook_deliveries).where(webhook_deliveries.c.endpoint_id == endpoint_id)
    return paginate(
        db, stmt, webhook_deliveries.c.id, _delivery, limit=limit, cursor=cursor, newest_first=True
    )


def retry_delivery(db: Database, *, agency_id: str, endpoint_id: str, delivery_id: str) -> Delivery:
    """Due again now (a failed one too); the event keeps its id (``webhook-id``)."""

    def work(tx: Tx) -> Delivery:
        _load(tx, agency_id, endpoint_id)
        row = tx.conn.execute(
            update(webhook_deliveries)
            .where(
                webhook_deliveries.c.id == delivery_id,
                webhook_deliveries.c.endpoint_id == endpoint_id,
            )
            .values(status="pending", next_attempt_at=tx.now, lease_until=None, completed_at=None)
            .returning(*webhook_deliveries.c)
        ).one_or_none()
        if row is None:
            raise NotFound(f"delivery {delivery_id} not found", code="delivery_not_found")
        tx.announce(NewDelivery(delivery_id))
        return _delivery(row._mapping)

    return db.write(work)


# --- the e-mail outbox ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxEmail:
    id: str
    agency_id: str | None
    template: str
    to: list[str]
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


def list_emails(
    db: Database, *, agency_id: str | None = None, status: str | None = None, limit: int = 50
) -> list[OutboxEmail]:
    """The newest e-mails of the outbox, with whom each goes (or went) to."""

    def work(tx: Tx) -> list[OutboxEmail]:
        stmt = select(emails).order_by(emails.c.created_at.desc(), emails.c.id.desc())
        if agency_id is not None:
            stmt = stmt.where(emails.c.agency_id == agency_id)
        if status is not None:
            stmt = stmt.where(emails.c.status == status)
        found = []
        for row in tx.conn.execute(stmt.limit(limit)).all():
            m = row._mapping
            to = (
                json.loads(m["to_addresses"])
                if m["to_addresses"]
                else (recipients(tx, m["agency_id"], m["template"]) if m["agency_id"] else [])
            )
            found.append(record(OutboxEmail, m, to=to))
        return found

    return db.read(work)


@dataclass(frozen=True, slots=True)
class RecentDelivery:
    delivery: Delivery
    event_type: str


def recent_deliveries(db: Database, *, agency_id: str, limit: int = 30) -> list[RecentDelivery]:
    """The agency's newest deliveries, every endpoint, with their event's type."""
    rows = db.read(
        lambda tx: tx.conn.execute(
            select(webhook_deliveries, events.c.type)
            .join(events, events.c.id == webhook_deliveries.c.event_id)
            .where(webhook_deliveries.c.agency_id == agency_id)
            .order_by(webhook_deliveries.c.created_at.desc(), webhook_deliveries.c.id.desc())
            .limit(limit)
        ).all()
    )
    return [RecentDelivery(_delivery(r._mapping), r.type) for r in rows]
