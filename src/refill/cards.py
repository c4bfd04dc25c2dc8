"""Saved cards as Refill keeps them: the gateway's token and what an owner recognizes a card
by (brand, last four digits, expiry). Never a card number."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from refill.db.database import Tx
from refill.db.rows import record
from refill.db.schema import payment_methods
from refill.errors import NotFound


@dataclass(frozen=True, slots=True)
class PaymentMethod:
    id: str
    agency_id: str
    gateway: str
    token: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    created_at: datetime

    def is_expired(self, now: datetime) -> bool:
        """A card works to the end of its expiry month."""
        return (self.exp_year, self.exp_month) < (now.year, now.month)

    @property
    def label(self) -> str:
        return f"{self.brand.title()} ending {self.last4}"


def get_payment_method(tx: Tx, agency_id: str, payment_method_id: str) -> PaymentMethod:
    """A saved (not removed) card of this agency, or ``payment_method_not_found``."""
    row = tx.conn.execute(
        select(payment_methods).where(
            payment_methods.c.id == payment_method_id,
            payment_methods.c.agency_id == agency_id,
            payment_methods.c.removed_at.is_(None),
        )
    ).one_or_none()
    if row is None:
        raise NotFound(
            f"payment method {payment_method_id} not found", code="payment_method_not_found"
        )
    return record(PaymentMethod, row._mapping)
