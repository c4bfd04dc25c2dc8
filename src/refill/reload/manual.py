"""Manual top-ups: an attempt of their own, made in front of the owner, exactly once per
``Idempotency-Key``; not limited by the one-active-auto-reload rule."""

from __future__ import annotations

from sqlalchemy import select, update

from refill import ledger
from refill.cards import get_payment_method
from refill.db.database import Tx, dialect_insert
from refill.db.schema import reload_attempts
from refill.errors import Conflict, InvalidSettings
from refill.ids import new_id, wallet_id_for
from refill.money import currency_info, format_amount, require_whole_minor_units
from refill.reload.attempt import ReloadAttempt, attempt_from_row, get_attempt
from refill.reload.states import AttemptStatus, Trigger, idempotency_key_for


class IdempotencyKeyInUse(Conflict):
    """The first request with this key is still being processed: try again shortly."""

    code = "idempotency_key_in_use"


def check_top_up_amount(amount: int, currency: str) -> None:
    bounds = currency_info(currency)
    if amount <= 0:
        raise InvalidSettings("amount must be more than zero", field="amount")
    require_whole_minor_units(amount, currency, "amount", error=InvalidSettings)
    if not bounds.min_reload <= amount <= bounds.max_reload:
        raise InvalidSettings(
            f"amount must be between {format_amount(bounds.min_reload, currency)} and "
            f"{format_amount(bounds.max_reload, currency)} {currency}",
            field="amount",
        )


def create_manual_attempt(
    tx: Tx,
    *,
    agency_id: str,
    currency: str,
    amount: int,
    payment_method_id: str,
    request_key: str | None,
) -> tuple[ReloadAttempt, bool]:
    """The top-up's attempt, and whether it was created now (False: the request key was
    used, and that first request has finished). The key is claimed by the insert itself
    (ON CONFLICT DO NOTHING on its unique index), so two requests with one key at once
    create one attempt; the second is told the first is still in flight."""
    check_top_up_amount(amount, currency)
    existing = None if request_key is None else _by_request_key(tx, agency_id, request_key)
    if existing is None:
        card = get_payment_method(tx, agency_id, payment_method_id)
        if card.is_expired(tx.now):
            raise InvalidSettings(
                f"the card ending {card.last4} has expired", field="payment_method_id"
            )
        attempt_id = new_id("rld")
        inserted = tx.conn.execute(
            dialect_insert(tx)(reload_attempts)
            .values(
                id=attempt_id,
                agency_id=agency_id,
                wallet_id=wallet_id_for(agency_id),
                trigger=Trigger.MANUAL,
                status=AttemptStatus.PENDING,
                amount=amount,
                currency=currency,
                payment_method_id=payment_method_id,
                idempotency_key=idempotency_key_for(attempt_id),
                request_key=request_key,
                created_at=tx.now,
                updated_at=tx.now,
            )
            .on_conflict_do_nothing(index_elements=["agency_id", "request_key"])
            .returning(reload_attempts.c.id)
        ).first()
        if inserted is not None:
            return get_attempt(tx, agency_id, attempt_id), True
        # Another request with the same key committed first (it waited on our insert).
        existing = None if request_key is None else _by_request_key(tx, agency_id, request_key)
        if existing is None:  # the key's first request was rolled back meanwhile
            raise IdempotencyKeyInUse(
                "the first request with this key is ending; retry", retry_after=1
            )
    if existing.amount != amount or existing.payment_method_id != payment_method_id:
        raise Conflict(
            "this Idempotency-Key was used for a different top-up",
            code="idempotency_key_conflict",
        )
    if existing.status in (AttemptStatus.PENDING, AttemptStatus.CHARGING):
        raise IdempotencyKeyInUse(
            "a request with this Idempotency-Key is still being processed; retry in a second",
            retry_after=1,
        )
    return existing, False


def _by_request_key(tx: Tx, agency_id: str, request_key: str) -> ReloadAttempt | None:
    row = tx.conn.execute(
        select(reload_attempts).where(
            reload_attempts.c.agency_id == agency_id,
            reload_attempts.c.request_key == request_key,
        )
    ).one_or_none()
    return None if row is None else attempt_from_row(row._mapping)


def bring_retry_forward(tx: Tx, agency_id: str) -> str:
    """The owner asks to retry now: the auto-reload retry waiting for its time becomes due
    (it is still checked at its claim: a wallet above its threshold cancels it)."""
    ledger.lock_wallet(tx, agency_id)
    waiting = tx.conn.execute(
        update(reload_attempts)
        .where(
            reload_attempts.c.wallet_id == wallet_id_for(agency_id),
            reload_attempts.c.trigger == Trigger.AUTO,
            reload_attempts.c.status == AttemptStatus.PENDING,
            reload_attempts.c.retry_number > 0,
            reload_attempts.c.not_before > tx.now,
        )
        .values(not_before=tx.now, updated_at=tx.now)
        .returning(reload_attempts.c.id)
    ).first()
    if waiting is None:
        raise Conflict("no declined auto-reload is waiting for a retry", code="no_retry_waiting")
    return str(waiting.id)
