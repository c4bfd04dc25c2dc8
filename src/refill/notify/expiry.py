"""Periodic notices: a card expiring in 30 and in 7 days (once each), and expired; and the
outbox forgetting events older than it keeps them."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from refill.cards import PaymentMethod
from refill.db.database import Tx
from refill.db.rows import record
from refill.db.schema import emails, events, payment_methods, webhook_deliveries
from refill.notify.events import EventType, emit

NOTICE_DAYS = (30, 7)


def notify_expiring_cards(tx: Tx) -> int:
    """Emit ``payment_method.expiring`` (30 and 7 days before) and ``.expired``, each once
    per card (remembered on the card)."""
    horizon = tx.now + timedelta(days=max(NOTICE_DAYS))
    pm = payment_methods.c
    rows = tx.conn.execute(
        select(payment_methods).where(
            pm.removed_at.is_(None),
            # only cards whose last month starts within the horizon (an index-free filter)
            pm.exp_year * 12 + pm.exp_month <= horizon.year * 12 + horizon.month,
        )
    ).all()
    emitted = 0
    for row in rows:
        card = record(PaymentMethod, row._mapping)
        sent = [n for n in row.expiry_notices.split(",") if n]
        notice = _due(card, sent, tx.now)
        if notice is None:
            continue
        if notice == "expired":
            # The longer notices will never be due now.
            now_sent = [*sent, *(str(d) for d in NOTICE_DAYS), "expired"]
        else:
            now_sent = [*sent, *(str(d) for d in NOTICE_DAYS if d >= int(notice))]
        # Taken by a conditional update: two workers running the job at once send it once.
        taken = tx.conn.execute(
            update(payment_methods)
            .where(
                payment_methods.c.id == card.id,
                payment_methods.c.expiry_notices == row.expiry_notices,
            )
            .values(expiry_notices=",".join(sorted(set(now_sent))))
        ).rowcount
        if taken != 1:
            continue
        data = {
            "payment_method_id": card.id,
            "brand": card.brand,
            "last4": card.last4,
            "exp_month": card.exp_month,
            "exp_year": card.exp_year,
        }
        if notice == "expired":
            emit(tx, card.agency_id, EventType.PAYMENT_METHOD_EXPIRED, data)
        else:
            emit(
                tx, card.agency_id, EventType.PAYMENT_METHOD_EXPIRING, {**data, "days": int(notice)}
            )
        emitted += 1
    return emitted


def _due(card: PaymentMethod, sent: list[str], now: datetime) -> str | None:
    if card.is_expired(now):
        return None if "expired" in sent else "expired"
    for days in sorted(NOTICE_DAYS):
        if card.is_expired(now + timedelta(days=days)) and str(days) not in sent:
            return str(days)
    return None


def forget_old_events(tx: Tx, *, keep: timedelta) -> None:
    old = select(events.c.id).where(events.c.created_at < tx.now - keep).scalar_subquery()
    tx.conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.event_id.in_(old)))
    tx.conn.execute(update(emails).where(emails.c.event_id.in_(old)).values(event_id=None))
    tx.conn.execute(delete(events).where(events.c.created_at < tx.now - keep))
