"""The dispatcher: fans each new event out, in one transaction, to a delivery for every
enabled webhook endpoint that wants its type and to the e-mail its type calls for, then
marks it dispatched. A crash in between dispatches it again: deliveries and e-mails are
unique per (endpoint, event) and (event, template), so nothing is written twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from refill.db.database import Tx, dialect_insert
from refill.db.schema import emails, events, webhook_deliveries, webhook_endpoints
from refill.ids import new_id
from refill.notify.events import Event, EventType, event_from_row
from refill.notify.webhooks import Claimed, claimed_for

# The e-mail each type calls for. A soft decline e-mails once (its first failure), not on
# each retry; a suspension always goes out.
TEMPLATES = {
    EventType.AUTO_RELOAD_SUCCEEDED: "receipt",
    EventType.TOPUP_SUCCEEDED: "receipt",
    EventType.AUTO_RELOAD_FAILED: "reload_failed",
    EventType.AUTO_RELOAD_SUSPENDED: "suspended",
    EventType.AUTO_RELOAD_REQUIRES_ACTION: "requires_action",
    EventType.AUTO_RELOAD_BLOCKED: "blocked",
    EventType.WALLET_LOW_BALANCE: "low_balance",
    EventType.WALLET_DEPLETED: "depleted",
    EventType.WALLET_REPLENISHED: "replenished",
    EventType.PAYMENT_METHOD_EXPIRING: "card_expiring",
    EventType.PAYMENT_METHOD_EXPIRED: "card_expired",
    EventType.WEBHOOK_ENDPOINT_DISABLED: "endpoint_disabled",
}


@dataclass(frozen=True, slots=True)
class NewDelivery:
    delivery_id: str


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery made with its lease already held by this process: sent right after the
    commit without another transaction to claim it (the poller takes over if it dies)."""

    claimed: Claimed


@dataclass(frozen=True, slots=True)
class NewEmail:
    email_id: str


def template_for(event: Event) -> str | None:
    if event.type == EventType.AUTO_RELOAD_FAILED and event.data.get("retry_number", 0) > 0:
        return None  # the chain's first failure was told; the suspension will be
    return TEMPLATES.get(EventType(event.type))


LOW_BALANCE_QUIET = timedelta(hours=24)
LOOK_BACK = timedelta(days=7)  # older low-balance e-mails are taken as sent long ago
# Money came in: after one of these, a low balance is news again.
RECOVERED = (
    EventType.AUTO_RELOAD_SUCCEEDED,
    EventType.TOPUP_SUCCEEDED,
    EventType.WALLET_REPLENISHED,
)


def _low_balance_is_news(tx: Tx, event: Event) -> bool:
    """At most one low-balance e-mail a day per wallet, unless money came in since the last
    one. Decided from the events alone, in their order, so that it does not depend on
    which dispatch ran first (the event itself still goes to every webhook)."""
    rows = tx.conn.execute(
        select(events.c.id, events.c.type, events.c.created_at)
        .where(
            events.c.agency_id == event.agency_id,
            events.c.type.in_([EventType.WALLET_LOW_BALANCE.value, *(t.value for t in RECOVERED)]),
            events.c.created_at >= event.created_at - LOOK_BACK,
            events.c.id <= event.id,
        )
        .order_by(events.c.id)
    ).all()
    last_told = None
    money_came_in = False
    for row in rows:
        if row.type != EventType.WALLET_LOW_BALANCE:
            money_came_in = True
            continue
        news = last_told is None or money_came_in or row.created_at - last_told >= LOW_BALANCE_QUIET
        if news:
            last_told, money_came_in = row.created_at, False
        if row.id == event.id:
            return news
    return True


def _was_depleted(tx: Tx, event: Event) -> bool:
    return (
        tx.conn.execute(
            select(events.c.id)
            .where(
                events.c.agency_id == event.agency_id,
                events.c.type == EventType.WALLET_DEPLETED.value,
                events.c.id < event.id,
            )
            .limit(1)
        ).first()
        is not None
    )


def wants(event_types: list[str], type_: str) -> bool:
    return "*" in event_types or type_ in event_types


def undispatched(tx: Tx, limit: int) -> list[str]:
    stmt = (
        select(events.c.id)
        .where(events.c.dispatched_at.is_(None))
        .order_by(events.c.id)
        .limit(limit)
    )
    if tx.dialect == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(tx.conn.execute(stmt).scalars())


def dispatch(tx: Tx, event_id: str, lease: timedelta | None = None) -> bool:
    """Fan one event out; False when another process has it or it was done. With a
    ``lease``, the deliveries are made claimed by this process (``ClaimedDelivery``)."""
    stmt: Any = select(events).where(events.c.id == event_id, events.c.dispatched_at.is_(None))
    if tx.dialect == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    row = tx.conn.execute(stmt).one_or_none()
    if row is None:
        return False
    event = event_from_row(row._mapping)
    if event.type != EventType.PING:  # a ping goes to the endpoint it tests, written there
        endpoints = tx.conn.execute(
            select(webhook_endpoints).where(
                webhook_endpoints.c.agency_id == event.agency_id,
                webhook_endpoints.c.enabled.is_(True),
            )
        ).all()
        for endpoint in endpoints:
            if not wants(json.loads(endpoint.event_types), event.type):
                continue
            if lease is None:
                add_delivery(tx, event, endpoint.id)
                continue
            delivery_id = add_delivery(tx, event, endpoint.id, lease_until=tx.now + lease)
            if delivery_id is not None:
                tx.announce(ClaimedDelivery(claimed_for(delivery_id, 0, endpoint, event)))
    template = template_for(event)
    if template == "low_balance" and not _low_balance_is_news(tx, event):
        template = None
    if template == "replenished" and not _was_depleted(tx, event):
        template = None  # a new wallet's first credits: nothing was ever refused
    if template is not None:
        add_email(
            tx,
            agency_id=event.agency_id,
            template=template,
            params={**event.data, "kind": event.type},
            event_id=event.id,
        )
    tx.conn.execute(update(events).where(events.c.id == event_id).values(dispatched_at=tx.now))
    return True


def add_delivery(
    tx: Tx, event: Event, endpoint_id: str, *, lease_until: datetime | None = None
) -> str | None:
    """A delivery of the event to the endpoint (once: None if it exists). Without a lease
    it is announced for any worker to claim; with one, the caller holds it."""
    delivery_id = new_id("whd")
    inserted = tx.conn.execute(
        dialect_insert(tx)(webhook_deliveries)
        .values(
            id=delivery_id,
            agency_id=event.agency_id,
            endpoint_id=endpoint_id,
            event_id=event.id,
            status="pending",
            attempts=0,
            next_attempt_at=tx.now,
            lease_until=lease_until,
            created_at=tx.now,
            updated_at=tx.now,
        )
        .on_conflict_do_nothing(index_elements=["endpoint_id", "event_id"])
        .returning(webhook_deliveries.c.id)
    ).first()
    if inserted is None:
        return None
    if lease_until is None:
        tx.announce(NewDelivery(delivery_id))
    return delivery_id


def add_email(
    tx: Tx,
    *,
    agency_id: str | None,
    template: str,
    params: dict[str, Any],
    event_id: str | None = None,
    to: list[str] | None = None,
) -> str:
    """An e-mail to send (its recipients resolved when it is sent, unless ``to`` names
    them); announced after commit."""
    email_id = new_id("eml")
    values = {
        "id": email_id,
        "agency_id": agency_id,
        "template": template,
        "params": json.dumps(params, sort_keys=True, default=str),
        "to_addresses": None if to is None else json.dumps(to),
        "event_id": event_id,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": tx.now,
        "created_at": tx.now,
    }
    stmt = dialect_insert(tx)(emails).values(**values)
    if event_id is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=["event_id", "template"])
    inserted = tx.conn.execute(stmt.returning(emails.c.id)).first()
    if inserted is not None:
        tx.announce(NewEmail(email_id))
    return email_id
