"""A reload attempt as a record: what the state machine reads and hands to the gateway."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select

from refill.db.database import Tx
from refill.db.rows import record
from refill.db.schema import agencies, payment_methods, reload_attempts
from refill.errors import NotFound
from refill.gateway.base import ChargeRequest
from refill.money import to_minor_units
from refill.reload.states import AttemptStatus, Trigger


@dataclass(frozen=True, slots=True)
class ReloadAttempt:
    id: str
    agency_id: str
    trigger: Trigger
    status: AttemptStatus
    amount: int
    currency: str
    payment_method_id: str
    idempotency_key: str
    gateway_payment_id: str | None
    failure_code: str | None
    failure_message: str | None
    not_before: datetime | None
    previous_attempt_id: str | None
    retry_number: int
    next_action: dict[str, str] | None
    blocked_until: datetime | None
    created_at: datetime
    updated_at: datetime
    cancel_requested_at: datetime | None = None
    first_sent_at: datetime | None = None

    @property
    def is_auto(self) -> bool:
        return self.trigger is Trigger.AUTO


def attempt_from_row(row: Any) -> ReloadAttempt:
    return record(
        ReloadAttempt,
        row,
        trigger=Trigger(row["trigger"]),
        status=AttemptStatus(row["status"]),
        next_action=json.loads(row["next_action"]) if row["next_action"] else None,
    )


@dataclass(frozen=True, slots=True)
class ClaimedAttempt:
    """An attempt its claimer may charge, with what the charge needs of the card."""

    attempt: ReloadAttempt
    token: str
    # The agency's customer at the gateway, where it has one (Stripe).
    customer: str | None = None


def charge_request(claimed: ClaimedAttempt) -> ChargeRequest:
    """What the gateway is sent for this attempt, the same every time it is sent."""
    attempt = claimed.attempt
    return ChargeRequest(
        token=claimed.token,
        amount_minor=to_minor_units(attempt.amount, attempt.currency),
        currency=attempt.currency,
        idempotency_key=attempt.idempotency_key,
        reference=attempt.id,
        agency_id=attempt.agency_id,
        trigger=attempt.trigger.value,
        customer=claimed.customer,
    )


_ATTEMPT_BY_ID = select(reload_attempts).where(reload_attempts.c.id == bindparam("attempt_id"))
_CARD_TO_CHARGE = (
    select(payment_methods.c.token, agencies.c.gateway_customer_id)
    .join(agencies, agencies.c.id == payment_methods.c.agency_id)
    .where(payment_methods.c.id == bindparam("pm_id"))
)


def load_attempt(tx: Tx, attempt_id: str) -> ReloadAttempt | None:
    row = tx.conn.execute(_ATTEMPT_BY_ID, {"attempt_id": attempt_id}).one_or_none()
    return None if row is None else attempt_from_row(row._mapping)


def must_load(tx: Tx, attempt_id: str) -> ReloadAttempt:
    """An attempt the caller knows exists (it read it in this transaction)."""
    attempt = load_attempt(tx, attempt_id)
    if attempt is None:
        raise NotFound(f"reload {attempt_id} not found", code="reload_not_found")
    return attempt


def get_attempt(tx: Tx, agency_id: str, attempt_id: str) -> ReloadAttempt:
    """This agency's attempt, or ``reload_not_found`` (never another agency's)."""
    attempt = load_attempt(tx, attempt_id)
    if attempt is None or attempt.agency_id != agency_id:
        raise NotFound(f"reload {attempt_id} not found", code="reload_not_found")
    return attempt


def claimed(tx: Tx, attempt: ReloadAttempt) -> ClaimedAttempt:
    card = tx.conn.execute(_CARD_TO_CHARGE, {"pm_id": attempt.payment_method_id}).one()
    return ClaimedAttempt(attempt, card.token, card.gateway_customer_id)
