"""The events of a reload attempt's life, written by the state machine in the transaction
of each transition: succeeded (with its receipt), failed, waiting for 3-D Secure, blocked,
suspended, resumed, and the owner's settings changes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select

from refill.cards import PaymentMethod
from refill.db.database import Tx
from refill.db.rows import record
from refill.db.schema import payment_methods
from refill.notify import receipts
from refill.notify.events import EventType, emit, money, when

# Where the owner acts on a reload (the billing page does the rest, signed in): never a
# client secret in an event, a webhook or an e-mail.
BILLING_PAGE = "/portal/team/billing"


class Attempt(Protocol):
    """What an event needs of a reload attempt (``reload.attempt.ReloadAttempt``)."""

    @property
    def id(self) -> str: ...
    @property
    def agency_id(self) -> str: ...
    @property
    def is_auto(self) -> bool: ...
    @property
    def amount(self) -> int: ...
    @property
    def currency(self) -> str: ...
    @property
    def payment_method_id(self) -> str | None: ...
    @property
    def retry_number(self) -> int: ...


def _facts(tx: Tx, attempt: Attempt, amount: int | None = None) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "reload_id": attempt.id,
        "amount": money(attempt.amount if amount is None else amount, attempt.currency),
        "currency": attempt.currency,
    }
    if attempt.payment_method_id is not None:
        facts["card"] = _card(card_of(tx, attempt.payment_method_id))
    return facts


def card_of(tx: Tx, payment_method_id: str) -> PaymentMethod:
    row = tx.conn.execute(
        select(payment_methods).where(payment_methods.c.id == payment_method_id)
    ).one()
    return record(PaymentMethod, row._mapping)


def _card(card: PaymentMethod) -> dict[str, str]:
    return {"id": card.id, "brand": card.brand, "last4": card.last4}


def succeeded(tx: Tx, attempt: Attempt, *, balance_after: int, late: bool = False) -> None:
    """``auto_reload.succeeded`` or ``topup.succeeded``, with the receipt it issues."""
    if attempt.payment_method_id is None:
        raise ValueError(f"reload {attempt.id} succeeded without a card")  # never: it charged one
    card = card_of(tx, attempt.payment_method_id)
    receipt = receipts.issue(
        tx,
        agency_id=attempt.agency_id,
        attempt_id=attempt.id,
        amount=attempt.amount,
        currency=attempt.currency,
        card=card,
        description="Auto-reload of credits" if attempt.is_auto else "Credits added",
    )
    emit(
        tx,
        attempt.agency_id,
        EventType.AUTO_RELOAD_SUCCEEDED if attempt.is_auto else EventType.TOPUP_SUCCEEDED,
        {
            **_facts(tx, attempt),
            "balance_after": money(balance_after, attempt.currency),
            "receipt_number": receipt.label,
            "late": late,
        },
    )


def failed(
    tx: Tx,
    attempt: Attempt,
    *,
    decline_code: str,
    decline_class: str,
    message: str | None,
    will_retry_at: datetime | None,
    next_card: str | None = None,
) -> None:
    """``auto_reload.failed`` or ``topup.failed``: which card declined, and for an
    auto-reload what happens next: the backup card charged now (``next_card``), a retry of
    the chain at ``will_retry_at``, or neither (the suspension follows)."""
    data = {
        **_facts(tx, attempt),
        "decline_code": decline_code,
        "decline_class": decline_class,
        "message": message,
    }
    if attempt.is_auto:
        data.update(
            retry_number=attempt.retry_number,
            will_retry_at=when(will_retry_at),
            next_card=None if next_card is None else _card(card_of(tx, next_card)),
        )
    event = EventType.AUTO_RELOAD_FAILED if attempt.is_auto else EventType.TOPUP_FAILED
    emit(tx, attempt.agency_id, event, data)


def requires_action(tx: Tx, attempt: Attempt) -> None:
    emit(
        tx,
        attempt.agency_id,
        EventType.AUTO_RELOAD_REQUIRES_ACTION,
        {**_facts(tx, attempt), "authenticate_url": f"{BILLING_PAGE}#reload-{attempt.id}"},
    )


def blocked(
    tx: Tx,
    attempt: Attempt,
    *,
    amount: int,
    rail: str,
    until: datetime | None,
    message: str | None,
) -> None:
    emit(
        tx,
        attempt.agency_id,
        EventType.AUTO_RELOAD_BLOCKED,
        {
            **_facts(tx, attempt, amount),
            "rail": rail,
            "until": when(until),
            "message": message,
        },
    )


def suspended(tx: Tx, *, agency_id: str, reason: str, payment_method_id: str | None) -> None:
    data: dict[str, Any] = {"reason": reason}
    if payment_method_id is not None:
        data["card"] = _card(card_of(tx, payment_method_id))
    emit(tx, agency_id, EventType.AUTO_RELOAD_SUSPENDED, data)


def settings_updated(
    tx: Tx, *, agency_id: str, actor: str, before: dict[str, Any], after: dict[str, Any]
) -> None:
    emit(
        tx,
        agency_id,
        EventType.SETTINGS_UPDATED,
        {"actor": actor, "before": before, "after": after},
    )
    if before.get("status") == "suspended" and after.get("status") == "active":
        emit(tx, agency_id, EventType.AUTO_RELOAD_RESUMED, {"actor": actor})
