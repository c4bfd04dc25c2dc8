"""Receipts: every charge that succeeded gets one, numbered per agency without gaps
(``R-000001``…), and freezes what it says when it is issued (the agency's name and billing
details, the amount, the card, the date in the agency's time zone)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select, update

from refill.cards import PaymentMethod
from refill.db.database import Tx
from refill.db.rows import record
from refill.db.schema import agencies, receipts
from refill.errors import NotFound
from refill.ids import new_id


@dataclass(frozen=True, slots=True)
class Receipt:
    id: str
    agency_id: str
    number: int
    attempt_id: str
    issued_at: datetime
    local_date: str
    timezone: str
    agency_name: str
    billing_address: str | None
    tax_id: str | None
    description: str
    amount: int
    currency: str
    card_brand: str
    card_last4: str

    @property
    def label(self) -> str:
        return f"R-{self.number:06d}"


def issue(
    tx: Tx,
    *,
    agency_id: str,
    attempt_id: str,
    amount: int,
    currency: str,
    card: PaymentMethod,
    description: str,
) -> Receipt:
    """The next number of the agency, taken in the transaction that records the success
    (which holds the wallet's lock: two successes never share or skip a number)."""
    row = tx.conn.execute(
        update(agencies)
        .where(agencies.c.id == agency_id)
        .values(receipt_counter=agencies.c.receipt_counter + 1)
        .returning(
            agencies.c.receipt_counter,
            agencies.c.name,
            agencies.c.billing_address,
            agencies.c.tax_id,
            agencies.c.timezone,
        )
    ).one()
    values: dict[str, Any] = {
        "id": new_id("rcp"),
        "agency_id": agency_id,
        "number": int(row.receipt_counter),
        "attempt_id": attempt_id,
        "issued_at": tx.now,
        "local_date": tx.now.astimezone(ZoneInfo(row.timezone)).date().isoformat(),
        "timezone": row.timezone,
        "agency_name": row.name,
        "billing_address": row.billing_address,
        "tax_id": row.tax_id,
        "description": description,
        "amount": amount,
        "currency": currency,
        "card_brand": card.brand,
        "card_last4": card.last4,
    }
    tx.conn.execute(insert(receipts).values(**values))
    return Receipt(**values)


def receipt_for(tx: Tx, agency_id: str, attempt_id: str) -> Receipt:
    row = tx.conn.execute(
        select(receipts).where(
            receipts.c.agency_id == agency_id, receipts.c.attempt_id == attempt_id
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"reload {attempt_id} has no receipt", code="receipt_not_found")
    return record(Receipt, row._mapping)
