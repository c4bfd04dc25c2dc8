"""Reload attempts: the trigger rule, the safety rails and the state machine.

This module is the only writer of ``reload_attempts.status``.

Attempt states::

    pending ──► charging ──► succeeded | failed | requires_action
       │                                             │
       ├──► canceled (no longer needed, settings)     ├──► succeeded | failed (gateway says)
       └──► blocked (a safety rail, nothing charged)  └──► canceled (owner, settings change)

An auto-reload attempt is *active* while pending, charging or requires_action; a partial
unique index allows one active auto-reload per wallet, on SQLite and PostgreSQL alike. A soft
decline schedules the next attempt (pending, with a not-before time), which is then the
wallet's active one. Every transition is a conditional ``UPDATE ... WHERE status IN (...)``,
so running a step twice, or from two processes, changes nothing the second time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, insert, or_, select, update

from refill import audit, ledger
from refill.db.database import SqlTx, Tx, bind_time, prepared
from refill.db.schema import (
    ACTIVE_AUTO_RELOAD,
    agencies,
    payment_methods,
    reload_attempts,
)
from refill.errors import Conflict, InvalidSettings, NotFound
from refill.gateway.base import ChargeResult, ChargeStatus
from refill.ids import new_id, wallet_id_for
from refill.money import format_amount, is_whole_minor_units
from refill.reload import settings as reload_settings
from refill.reload.policy import DeclineClass, ReloadPolicy, local_day, local_month
from refill.reload.settings import AutoReloadSettings, SettingsChange

# Attempts that spend (or may spend) money: what the daily limit and monthly cap count.
SPENDING_STATUSES = ("pending", "charging", "requires_action", "succeeded")


@dataclass(frozen=True, slots=True)
class ReloadAttempt:
    id: str
    agency_id: str
    trigger: str
    status: str
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


def attempt_from_row(row: Any) -> ReloadAttempt:
    values = {f: row[f] for f in ReloadAttempt.__slots__}
    values["next_action"] = json.loads(row["next_action"]) if row["next_action"] else None
    return ReloadAttempt(**values)


# --- the trigger rule and the rails -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    """What the trigger rule says for a wallet right now."""

    action: str  # none | reload | blocked
    amount: int = 0
    rail: str | None = None
    until: datetime | None = None
    message: str | None = None


NOTHING = Decision("none")


# Statements of the reload path, built once: constructing them per call cost more than
# running them, and these transactions hold SQLite's write lock while they run.
_AGENCY_ZONE = select(agencies.c.timezone).where(agencies.c.id == bindparam("agency_id"))
_SPENT_SINCE = select(func.count(), func.coalesce(func.sum(reload_attempts.c.amount), 0)).where(
    reload_attempts.c.wallet_id == bindparam("wallet_id"),
    reload_attempts.c.trigger == "auto",
    reload_attempts.c.status.in_(SPENDING_STATUSES),
    reload_attempts.c.created_at >= bindparam("since"),
    reload_attempts.c.id != bindparam("exclude"),
)
_ATTEMPT_BY_ID = select(reload_attempts).where(reload_attempts.c.id == bindparam("attempt_id"))
_CARD_TO_CHARGE = (
    select(payment_methods.c.token, agencies.c.stripe_customer_id)
    .join(agencies, agencies.c.id == payment_methods.c.agency_id)
    .where(payment_methods.c.id == bindparam("pm_id"))
)


def _agency_zone(tx: Tx, agency_id: str) -> ZoneInfo:
    name = tx.conn.execute(_AGENCY_ZONE, {"agency_id": agency_id}).scalar()
    return ZoneInfo(name or "UTC")


def _spent_since(tx: Tx, wallet_id: str, since: datetime, exclude: str | None) -> tuple[int, int]:
    """Count and sum of auto-reloads that spend money, created since ``since``."""
    count, total = tx.conn.execute(
        _SPENT_SINCE, {"wallet_id": wallet_id, "since": since, "exclude": exclude or ""}
    ).one()
    return int(count), int(total)


def evaluate_trigger(
    tx: Tx,
    policy: ReloadPolicy,
    *,
    agency_id: str,
    settings: AutoReloadSettings,
    balance: int,
    currency: str,
    exclude_attempt_id: str | None = None,
) -> Decision:
    """Should this wallet reload now, for how much, or which rail stops it?"""
    if (
        settings.status != "active"
        or settings.threshold is None
        or settings.payment_method_id is None
        or balance >= settings.threshold
        or settings.blocked_at(tx.now)
    ):
        return NOTHING
    if settings.mode == "target" and settings.target_balance is not None:
        amount = policy.target_charge(settings.target_balance, balance, currency)
    elif settings.reload_amount is not None:
        amount = settings.reload_amount
    else:
        return NOTHING
    zone = _agency_zone(tx, agency_id)
    wallet_id = wallet_id_for(agency_id)
    day_start, day_end = local_day(tx.now, zone)
    today, _ = _spent_since(tx, wallet_id, day_start, exclude_attempt_id)
    if today >= settings.daily_limit:
        return Decision(
            "blocked",
            amount,
            "daily_limit",
            day_end,
            f"{today} auto-reloads today reached the daily limit of {settings.daily_limit}",
        )
    if settings.monthly_cap is not None:
        month_start, month_end = local_month(tx.now, zone)
        _, spent = _spent_since(tx, wallet_id, month_start, exclude_attempt_id)
        if spent + amount > settings.monthly_cap:
            return Decision(
                "blocked",
                amount,
                "monthly_cap",
                month_end,
                f"reloading {format_amount(amount, currency)} would pass this month's cap of "
                f"{format_amount(settings.monthly_cap, currency)} {currency} "
                f"({format_amount(spent, currency)} already reloaded)",
            )
    return Decision("reload", amount)


_ENQUEUE = prepared(
    "INSERT INTO reload_attempts (id, agency_id, wallet_id, trigger, status, amount, "
    "currency, payment_method_id, idempotency_key, created_at, updated_at) "
    "SELECT {p}, {p}, s.wallet_id, 'auto', 'pending', COALESCE(s.reload_amount, {p}), "
    "{p}, s.payment_method_id, {p}, {p}, {p} "
    "FROM auto_reload_settings s "
    "WHERE s.wallet_id = {p} AND s.status = 'active' AND s.payment_method_id IS NOT NULL "
    "AND s.threshold > {p} AND (s.blocked_until IS NULL OR s.blocked_until <= {p}) "
    # The partial unique index decides: a second active auto-reload is never written.
    "ON CONFLICT (wallet_id) WHERE " + ACTIVE_AUTO_RELOAD.text + " DO NOTHING "
    "RETURNING id"
)


def trigger_auto_reload(
    tx: SqlTx, policy: ReloadPolicy, *, agency_id: str, balance: int, currency: str
) -> str | None:
    """Enqueue a pending auto-reload if the wallet is below an active threshold; its id.

    Called inside the transaction that changed the balance (or the settings), after the
    wallet row is locked: one statement, so the debit that crosses the threshold starts the
    reload in its own commit. Nothing is enqueued while a rail's block holds, and the
    partial unique index keeps it to one active auto-reload per wallet. Whether and how
    much to charge is decided when the attempt is claimed (``claim_attempt``), where the
    rails and the amount are evaluated under the same wallet lock.
    """
    attempt_id = new_id("rld")
    now = bind_time(tx.dialect, tx.now)
    row = tx.execute_raw(
        _ENQUEUE[tx.dialect],
        (
            attempt_id,
            agency_id,
            policy.min_reload_amount,
            currency,
            f"refill-reload-{attempt_id}",
            now,
            now,
            wallet_id_for(agency_id),
            balance,
            now,
        ),
    )
    if row is None:
        return None
    tx.new_reload_attempts.append(attempt_id)
    return attempt_id


def change_settings(
    tx: Tx,
    policy: ReloadPolicy,
    *,
    agency_id: str,
    currency: str,
    change: SettingsChange,
    actor: str,
) -> AutoReloadSettings:
    """Validate and store the owner's settings; reload at once if already below threshold.

    Any change cancels a waiting retry or an open ``requires_action`` attempt first (they
    were made under the old settings) and lifts a rail's block, then evaluates the trigger.
    """
    balance = ledger.lock_wallet(tx, agency_id)
    current = reload_settings.get_settings(tx, agency_id, policy=policy)
    merged = reload_settings.merge_change(current, change)
    payment_method = (
        reload_settings.get_payment_method(tx, agency_id, merged.payment_method_id)
        if merged.payment_method_id is not None
        else None
    )
    reload_settings.validate_settings(policy, currency, merged, payment_method, tx.now)
    _cancel_waiting_auto_attempts(tx, agency_id)
    reload_settings.write_settings(tx, agency_id, merged)
    audit.record(
        tx,
        agency_id=agency_id,
        actor=actor,
        action="auto_reload.updated",
        target_id=wallet_id_for(agency_id),
        before=reload_settings.snapshot(current, currency),
        after=reload_settings.snapshot(merged, currency),
    )
    trigger_auto_reload(tx, policy, agency_id=agency_id, balance=balance, currency=currency)
    return merged


def reevaluate_after_block(tx: Tx, policy: ReloadPolicy, agency_id: str) -> str | None:
    """A rail has lifted: clear the block and run the trigger rule again."""
    balance = ledger.lock_wallet(tx, agency_id)
    settings = reload_settings.get_settings(tx, agency_id)
    if settings.blocked_until is None or settings.blocked_until > tx.now:
        return None
    reload_settings.set_block(tx, agency_id, None, None)
    currency = tx.conn.execute(
        select(agencies.c.currency).where(agencies.c.id == agency_id)
    ).scalar_one()
    return trigger_auto_reload(tx, policy, agency_id=agency_id, balance=balance, currency=currency)


# --- manual top-ups -----------------------------------------------------------------------


def create_manual_attempt(
    tx: Tx,
    policy: ReloadPolicy,
    *,
    agency_id: str,
    currency: str,
    amount: int,
    payment_method_id: str,
    request_key: str | None,
) -> tuple[ReloadAttempt, bool]:
    """A manual top-up: its own attempt, not limited by the one-active-auto-reload rule.

    Returns the attempt and whether it was created now (False: the request key was used).
    """
    if request_key is not None:
        existing = tx.conn.execute(
            select(reload_attempts).where(
                reload_attempts.c.agency_id == agency_id,
                reload_attempts.c.request_key == request_key,
            )
        ).one_or_none()
        if existing is not None:
            attempt = attempt_from_row(existing._mapping)
            if attempt.amount != amount or attempt.payment_method_id != payment_method_id:
                raise Conflict(
                    "this Idempotency-Key was used for a different top-up",
                    code="idempotency_key_conflict",
                )
            return attempt, False
    if amount <= 0:
        raise InvalidSettings("amount must be more than zero", field="amount")
    if not is_whole_minor_units(amount, currency):
        raise InvalidSettings(
            f"amount must be a whole number of {currency} minor units (cards are charged in "
            "whole cents)",
            field="amount",
        )
    if not policy.min_reload_amount <= amount <= policy.max_reload_amount:
        raise InvalidSettings(
            f"amount must be between {format_amount(policy.min_reload_amount, currency)} and "
            f"{format_amount(policy.max_reload_amount, currency)} {currency}",
            field="amount",
        )
    payment_method = reload_settings.get_payment_method(tx, agency_id, payment_method_id)
    if payment_method.is_expired(tx.now):
        raise InvalidSettings(
            f"the card ending {payment_method.last4} has expired", field="payment_method_id"
        )
    attempt_id = new_id("rld")
    tx.conn.execute(
        insert(reload_attempts).values(
            id=attempt_id,
            agency_id=agency_id,
            wallet_id=wallet_id_for(agency_id),
            trigger="manual",
            status="pending",
            amount=amount,
            currency=currency,
            payment_method_id=payment_method_id,
            idempotency_key=f"refill-reload-{attempt_id}",
            request_key=request_key,
            created_at=tx.now,
            updated_at=tx.now,
        )
    )
    return get_attempt(tx, agency_id, attempt_id), True


# --- state machine ------------------------------------------------------------------------


def get_attempt(tx: Tx, agency_id: str, attempt_id: str) -> ReloadAttempt:
    row = tx.conn.execute(
        select(reload_attempts).where(
            reload_attempts.c.id == attempt_id, reload_attempts.c.agency_id == agency_id
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"reload {attempt_id} not found", code="reload_not_found")
    return attempt_from_row(row._mapping)


def _load_attempt(tx: Tx, attempt_id: str) -> ReloadAttempt | None:
    row = tx.conn.execute(_ATTEMPT_BY_ID, {"attempt_id": attempt_id}).one_or_none()
    return None if row is None else attempt_from_row(row._mapping)


def _transition(
    tx: Tx, attempt_id: str, *, allowed_from: tuple[str, ...], to: str, **values: Any
) -> ReloadAttempt | None:
    """Move an attempt to ``to`` if it is still in one of ``allowed_from``; the new row."""
    row = tx.conn.execute(
        update(reload_attempts)
        .where(reload_attempts.c.id == attempt_id, reload_attempts.c.status.in_(allowed_from))
        .values(status=to, updated_at=tx.now, **values)
        .returning(*reload_attempts.c)
    ).one_or_none()
    return None if row is None else attempt_from_row(row._mapping)


@dataclass(frozen=True, slots=True)
class ClaimedAttempt:
    attempt: ReloadAttempt
    token: str
    # The agency's customer at the gateway, where it has one (Stripe).
    customer: str | None = None


def _claimed(tx: Tx, attempt: ReloadAttempt) -> ClaimedAttempt:
    card = tx.conn.execute(_CARD_TO_CHARGE, {"pm_id": attempt.payment_method_id}).one()
    return ClaimedAttempt(attempt, card.token, card.stripe_customer_id)


def claim_attempt(tx: Tx, policy: ReloadPolicy, attempt_id: str) -> ClaimedAttempt | None:
    """pending → charging, once it is due. None if someone else has it or it is not needed.

    An auto-reload re-checks the trigger under the wallet lock first: a retry that comes due
    after the owner topped up by hand is canceled instead of charged, one that a rail now
    stops is blocked, and the amount and card follow the current settings.
    """
    attempt = _load_attempt(tx, attempt_id)
    if attempt is None or attempt.status != "pending":
        return None
    if attempt.not_before is not None and attempt.not_before > tx.now:
        return None
    if attempt.trigger == "auto":
        balance = ledger.lock_wallet(tx, attempt.agency_id)
        settings = reload_settings.get_settings(tx, attempt.agency_id)
        decision = evaluate_trigger(
            tx,
            policy,
            agency_id=attempt.agency_id,
            settings=settings,
            balance=balance,
            currency=attempt.currency,
            exclude_attempt_id=attempt.id,
        )
        if decision.action == "none":
            _transition(
                tx,
                attempt_id,
                allowed_from=("pending",),
                to="canceled",
                failure_code="no_longer_needed",
                failure_message="Not charged: the wallet is no longer below the threshold "
                "or auto-reload is not active.",
            )
            return None
        if decision.action == "blocked":
            _transition(
                tx,
                attempt_id,
                allowed_from=("pending",),
                to="blocked",
                failure_code=decision.rail,
                failure_message=decision.message,
                blocked_until=decision.until,
            )
            reload_settings.set_block(tx, attempt.agency_id, decision.rail, decision.until)
            return None
        changed = _transition(
            tx,
            attempt_id,
            allowed_from=("pending",),
            to="charging",
            claimed_at=tx.now,
            amount=decision.amount,
            payment_method_id=settings.payment_method_id,
        )
    else:
        changed = _transition(
            tx, attempt_id, allowed_from=("pending",), to="charging", claimed_at=tx.now
        )
    return _claimed(tx, changed) if changed else None


def reclaim_stale_attempt(tx: Tx, attempt_id: str, stale_before: datetime) -> ClaimedAttempt | None:
    """Take over a ``charging`` attempt whose processor vanished (crash, kill, timeout).

    The reconciler then asks the gateway what became of the charge, and sends it again
    with the same idempotency key only if the gateway has no record of it.
    """
    row = tx.conn.execute(
        update(reload_attempts)
        .where(
            reload_attempts.c.id == attempt_id,
            reload_attempts.c.status == "charging",
            reload_attempts.c.claimed_at < stale_before,
        )
        .values(claimed_at=tx.now, updated_at=tx.now)
        .returning(*reload_attempts.c)
    ).one_or_none()
    return None if row is None else _claimed(tx, attempt_from_row(row._mapping))


def record_charge_outcome(
    tx: Tx, policy: ReloadPolicy, attempt_id: str, result: ChargeResult
) -> ReloadAttempt:
    """charging → succeeded | failed | requires_action; the credit rides on the same commit.

    Running it again for an attempt that already left ``charging`` changes nothing.
    """
    attempt = _load_attempt(tx, attempt_id)
    if attempt is None:
        raise NotFound(f"reload {attempt_id} not found", code="reload_not_found")
    if _already_settled(attempt, result):
        return attempt
    if result.status is ChargeStatus.UNKNOWN:
        # Stays charging: the reconciler asks the gateway later, by id when we learnt it.
        if result.payment_id and attempt.gateway_payment_id is None:
            tx.conn.execute(
                update(reload_attempts)
                .where(reload_attempts.c.id == attempt_id)
                .values(gateway_payment_id=result.payment_id, updated_at=tx.now)
            )
        return attempt
    # Wallet before attempt: the lock order of every path that touches both. Read the
    # attempt again under the lock: a webhook and the worker may settle it at once.
    ledger.lock_wallet(tx, attempt.agency_id)
    attempt = _load_attempt(tx, attempt_id)
    assert attempt is not None
    if _already_settled(attempt, result):
        return attempt
    if result.status is ChargeStatus.SUCCEEDED:
        _record_success(tx, policy, attempt, result)
    elif result.status is ChargeStatus.REQUIRES_ACTION:
        _transition(
            tx,
            attempt_id,
            allowed_from=("charging",),
            to="requires_action",
            gateway_payment_id=result.payment_id,
            failure_code=result.failure_code,
            failure_message=_clip(result.failure_message),
            next_action=json.dumps(result.next_action) if result.next_action else None,
        )
    else:
        _record_decline(tx, policy, attempt, result)
    updated = _load_attempt(tx, attempt_id)
    assert updated is not None
    return updated


def _already_settled(attempt: ReloadAttempt, result: ChargeResult) -> bool:
    """True when recording ``result`` would change nothing: the attempt has its outcome, or
    already waits for the owner's authentication that ``result`` asks for again."""
    if attempt.status == "requires_action":
        return result.status is ChargeStatus.REQUIRES_ACTION
    return attempt.status != "charging"


def _clip(message: str | None) -> str | None:
    return message[:500] if message else None


def _record_success(
    tx: Tx, policy: ReloadPolicy, attempt: ReloadAttempt, result: ChargeResult
) -> None:
    posted = ledger.credit_wallet(
        tx,
        agency_id=attempt.agency_id,
        source=ledger.SystemAccount.CARD_FUNDING,
        amount=attempt.amount,
        kind=(
            ledger.TransferKind.AUTO_RELOAD
            if attempt.trigger == "auto"
            else ledger.TransferKind.MANUAL_RELOAD
        ),
        reference=attempt.id,
        metadata={"gateway_payment_id": result.payment_id} if result.payment_id else None,
    )
    if not _transition(
        tx,
        attempt.id,
        allowed_from=("charging", "requires_action"),
        to="succeeded",
        gateway_payment_id=result.payment_id,
        failure_code=None,
        failure_message=None,
        next_action=None,
    ):
        # Another finalizer won between our read and write; roll back our credit.
        raise Conflict(f"reload {attempt.id} was finalized concurrently")
    if attempt.trigger == "auto":
        # A reload that still leaves the wallet below the threshold starts the next one.
        trigger_auto_reload(
            tx,
            policy,
            agency_id=attempt.agency_id,
            balance=posted.balance,
            currency=posted.currency,
        )


def _record_decline(
    tx: Tx, policy: ReloadPolicy, attempt: ReloadAttempt, result: ChargeResult
) -> None:
    if not _transition(
        tx,
        attempt.id,
        allowed_from=("charging", "requires_action"),
        to="failed",
        gateway_payment_id=result.payment_id,
        failure_code=result.failure_code or "declined",
        failure_message=_clip(result.failure_message),
        next_action=None,
    ):
        return
    if attempt.trigger != "auto":
        return  # a manual top-up fails in front of the owner; nothing to schedule
    code = result.failure_code or "declined"
    if policy.classify(code) is DeclineClass.HARD:
        reload_settings.suspend(
            tx,
            attempt.agency_id,
            attempt.currency,
            f"the card was declined ({code}) and will not work again; choose another card",
        )
        return
    delay = policy.retry_delay(attempt.retry_number)
    if delay is None:
        reload_settings.suspend(
            tx,
            attempt.agency_id,
            attempt.currency,
            f"the card was declined {attempt.retry_number + 1} times in a row (last: {code})",
        )
        return
    retry_id = new_id("rld")
    tx.conn.execute(
        insert(reload_attempts).values(
            id=retry_id,
            agency_id=attempt.agency_id,
            wallet_id=wallet_id_for(attempt.agency_id),
            trigger="auto",
            status="pending",
            amount=attempt.amount,
            currency=attempt.currency,
            payment_method_id=attempt.payment_method_id,
            idempotency_key=f"refill-reload-{retry_id}",
            not_before=tx.now + delay,
            previous_attempt_id=attempt.id,
            retry_number=attempt.retry_number + 1,
            created_at=tx.now,
            updated_at=tx.now,
        )
    )


def cancel_attempt(tx: Tx, *, agency_id: str, attempt_id: str) -> ReloadAttempt:
    """The owner cancels an attempt that waits for them (requires_action) or has not started."""
    attempt = get_attempt(tx, agency_id, attempt_id)
    if attempt.status == "canceled":
        return attempt
    if attempt.status not in ("requires_action", "pending"):
        raise Conflict(
            f"reload {attempt_id} is {attempt.status} and can no longer be canceled",
            code="reload_not_cancelable",
        )
    ledger.lock_wallet(tx, agency_id)
    _transition(
        tx,
        attempt_id,
        allowed_from=("requires_action", "pending"),
        to="canceled",
        failure_code="canceled_by_owner",
        failure_message="Canceled by the owner.",
    )
    return get_attempt(tx, agency_id, attempt_id)


def _cancel_waiting_auto_attempts(tx: Tx, agency_id: str) -> None:
    """Settings changed: retries waiting for their time and attempts waiting for the owner
    were made under the old settings."""
    tx.conn.execute(
        update(reload_attempts)
        .where(
            reload_attempts.c.wallet_id == wallet_id_for(agency_id),
            reload_attempts.c.trigger == "auto",
            or_(
                reload_attempts.c.status == "requires_action",
                (reload_attempts.c.status == "pending") & reload_attempts.c.not_before.is_not(None),
            ),
        )
        .values(
            status="canceled",
            failure_code="settings_changed",
            failure_message="Canceled because the auto-reload settings changed.",
            updated_at=tx.now,
        )
    )


# --- what the worker looks for ------------------------------------------------------------


def _skip_locked(tx: Tx, stmt: Any) -> Any:
    return stmt.with_for_update(skip_locked=True) if tx.dialect == "postgresql" else stmt


def due_pending_attempts(tx: Tx, *, created_before: datetime, limit: int) -> list[str]:
    """Pending attempts whose time has come: retries due now, and fresh ones left behind
    (crash, lost wake-up) for longer than the instant path needs. Oldest first."""
    stmt = (
        select(reload_attempts.c.id)
        .where(
            reload_attempts.c.status == "pending",
            or_(
                reload_attempts.c.not_before <= tx.now,
                reload_attempts.c.not_before.is_(None)
                & (reload_attempts.c.created_at < created_before),
            ),
        )
        .order_by(reload_attempts.c.id)
        .limit(limit)
    )
    return list(tx.conn.execute(_skip_locked(tx, stmt)).scalars())


def stale_charging_attempts(tx: Tx, *, claimed_before: datetime, limit: int) -> list[str]:
    stmt = (
        select(reload_attempts.c.id)
        .where(
            reload_attempts.c.status == "charging", reload_attempts.c.claimed_at < claimed_before
        )
        .order_by(reload_attempts.c.id)
        .limit(limit)
    )
    return list(tx.conn.execute(_skip_locked(tx, stmt)).scalars())


def stuck_attempts(tx: Tx, *, charging_since: datetime) -> list[ReloadAttempt]:
    """Charges still unresolved after a long time: an operator should look at them."""
    rows = tx.conn.execute(
        select(reload_attempts)
        .where(
            reload_attempts.c.status == "charging", reload_attempts.c.created_at < charging_since
        )
        .order_by(reload_attempts.c.id)
    )
    return [attempt_from_row(r._mapping) for r in rows]
