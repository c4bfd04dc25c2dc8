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
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, insert, or_, select, update

from refill import audit, ledger
from refill.db.database import SqlTx, Tx, bind_time, dialect_insert, prepared
from refill.db.schema import (
    ACTIVE_AUTO_RELOAD,
    agencies,
    payment_methods,
    reload_attempts,
)
from refill.errors import Conflict, InvalidSettings, NotFound
from refill.gateway.base import ChargeRequest, ChargeResult, ChargeStatus
from refill.ids import new_id, wallet_id_for
from refill.money import (
    currency_info,
    format_amount,
    require_whole_minor_units,
    to_minor_units,
)
from refill.reload import settings as reload_settings
from refill.reload.policy import DeclineClass, ReloadPolicy, local_day, local_month
from refill.reload.settings import AutoReloadSettings, SettingsChange

# Attempts that spend (or may spend) money: what the daily limit and monthly cap count.
SPENDING_STATUSES = ("pending", "charging", "requires_action", "succeeded")
# How long a claim holds without renewal; the claimer renews it every fifth of that.
DEFAULT_LEASE = timedelta(seconds=10)


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
    cancel_requested_at: datetime | None = None
    first_sent_at: datetime | None = None


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
            currency_info(currency).min_reload,
            currency,
            idempotency_key_for(attempt_id),
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


# What an owner's change can alter; a change that leaves all of them (and the status they
# lead to) as saved is no change at all.
_SETTINGS_COMPARED = (
    "enabled",
    "status",
    "threshold",
    "reload_amount",
    "payment_method_id",
    "mode",
    "target_balance",
    "monthly_cap",
    "daily_limit",
)


@dataclass(frozen=True, slots=True)
class SettingsPlan:
    current: AutoReloadSettings
    merged: AutoReloadSettings

    @property
    def unchanged(self) -> bool:
        return all(
            getattr(self.current, name) == getattr(self.merged, name) for name in _SETTINGS_COMPARED
        )


def plan_settings_change(
    tx: Tx, policy: ReloadPolicy, *, agency_id: str, currency: str, change: SettingsChange
) -> SettingsPlan:
    """The settings ``change`` leads to, validated; writes nothing (InvalidSettings)."""
    current = reload_settings.get_settings(tx, agency_id, policy=policy)
    merged = reload_settings.merge_change(current, change)
    payment_method = (
        reload_settings.get_payment_method(tx, agency_id, merged.payment_method_id)
        if merged.payment_method_id is not None
        else None
    )
    reload_settings.validate_settings(
        policy, currency, merged, payment_method, tx.now, previous=current
    )
    return SettingsPlan(current, merged)


def change_settings(
    tx: Tx,
    policy: ReloadPolicy,
    *,
    agency_id: str,
    currency: str,
    change: SettingsChange,
    actor: str,
) -> SettingsPlan:
    """Validate and store the owner's settings; reload at once if already below threshold.

    A change that changes nothing writes nothing. Any other change cancels a waiting retry
    (made under the old settings) and lifts a rail's block, then evaluates the trigger. An
    attempt waiting for 3-D Secure must have been canceled at the gateway before (see
    ``request_cancel``): it is never canceled here, in the database only.
    """
    balance = ledger.lock_wallet(tx, agency_id)
    plan = plan_settings_change(tx, policy, agency_id=agency_id, currency=currency, change=change)
    if plan.unchanged:
        return plan
    _cancel_waiting_retries(tx, agency_id)
    reload_settings.write_settings(tx, agency_id, plan.merged)
    audit.record(
        tx,
        agency_id=agency_id,
        actor=actor,
        action="auto_reload.updated",
        target_id=wallet_id_for(agency_id),
        before=reload_settings.snapshot(plan.current, currency),
        after=reload_settings.snapshot(plan.merged, currency),
    )
    trigger_auto_reload(tx, policy, agency_id=agency_id, balance=balance, currency=currency)
    return plan


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


class IdempotencyKeyInUse(Conflict):
    """The first request with this key is still being processed: try again shortly."""

    code = "idempotency_key_in_use"


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

    Returns the attempt and whether it was created now (False: the request key was used,
    and that first request has finished). The key is claimed by the insert itself (ON
    CONFLICT DO NOTHING on its unique index), so two requests with one key at once create
    one attempt; the second is told the first is still in flight.
    """
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
    existing = None if request_key is None else _by_request_key(tx, agency_id, request_key)
    if existing is None:
        payment_method = reload_settings.get_payment_method(tx, agency_id, payment_method_id)
        if payment_method.is_expired(tx.now):
            raise InvalidSettings(
                f"the card ending {payment_method.last4} has expired", field="payment_method_id"
            )
        attempt_id = new_id("rld")
        inserted = tx.conn.execute(
            dialect_insert(tx)(reload_attempts)
            .values(
                id=attempt_id,
                agency_id=agency_id,
                wallet_id=wallet_id_for(agency_id),
                trigger="manual",
                status="pending",
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
        assert request_key is not None
        existing = _by_request_key(tx, agency_id, request_key)
        assert existing is not None
    if existing.amount != amount or existing.payment_method_id != payment_method_id:
        raise Conflict(
            "this Idempotency-Key was used for a different top-up",
            code="idempotency_key_conflict",
        )
    if existing.status in ("pending", "charging"):
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


def idempotency_key_for(attempt_id: str) -> str:
    """What the gateway is sent with every charge of this attempt: from our own id, so a
    re-send is the same request (never from the time or a random number)."""
    return f"refill-reload-{attempt_id}"


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


def charge_request(claimed: ClaimedAttempt) -> ChargeRequest:
    """What the gateway is sent for this attempt, the same every time it is sent."""
    attempt = claimed.attempt
    return ChargeRequest(
        token=claimed.token,
        amount_minor=to_minor_units(attempt.amount, attempt.currency),
        currency=attempt.currency,
        idempotency_key=attempt.idempotency_key,
        metadata={
            "refill_agency_id": attempt.agency_id,
            "refill_wallet_id": wallet_id_for(attempt.agency_id),
            "refill_reload_id": attempt.id,
            "refill_trigger": attempt.trigger,
        },
        customer=claimed.customer,
    )


def _claimed(tx: Tx, attempt: ReloadAttempt) -> ClaimedAttempt:
    card = tx.conn.execute(_CARD_TO_CHARGE, {"pm_id": attempt.payment_method_id}).one()
    return ClaimedAttempt(attempt, card.token, card.stripe_customer_id)


def claim_attempt(
    tx: Tx, policy: ReloadPolicy, attempt_id: str, *, lease: timedelta = DEFAULT_LEASE
) -> ClaimedAttempt | None:
    """pending → charging, once it is due. None if someone else has it or it is not needed.

    The claimer holds a lease on the attempt (``lease_until``) and keeps renewing it while
    its gateway call runs (``renew_leases``); a lease that runs out means the claimer died.

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
            lease_until=tx.now + lease,
            first_sent_at=tx.now,
            amount=decision.amount,
            payment_method_id=settings.payment_method_id,
        )
    else:
        changed = _transition(
            tx,
            attempt_id,
            allowed_from=("pending",),
            to="charging",
            claimed_at=tx.now,
            lease_until=tx.now + lease,
            first_sent_at=tx.now,
        )
    return _claimed(tx, changed) if changed else None


def renew_leases(tx: Tx, attempt_ids: list[str], *, lease: timedelta) -> None:
    """The claimer is alive: its charges in flight keep their leases."""
    tx.conn.execute(
        update(reload_attempts)
        .where(reload_attempts.c.id.in_(attempt_ids), reload_attempts.c.status == "charging")
        .values(lease_until=tx.now + lease)
    )


def reclaim_stale_attempt(
    tx: Tx, attempt_id: str, *, lease: timedelta = DEFAULT_LEASE
) -> ClaimedAttempt | None:
    """Take over a ``charging`` attempt whose claimer's lease ran out (crash, kill).

    The reconciler then asks the gateway what became of the charge, and sends it again
    with the same idempotency key only while the gateway still remembers that key.
    """
    row = tx.conn.execute(
        update(reload_attempts)
        .where(
            reload_attempts.c.id == attempt_id,
            reload_attempts.c.status == "charging",
            or_(reload_attempts.c.lease_until.is_(None), reload_attempts.c.lease_until <= tx.now),
        )
        .values(claimed_at=tx.now, lease_until=tx.now + lease, updated_at=tx.now)
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
    elif result.status is ChargeStatus.CANCELED:
        _transition(
            tx,
            attempt_id,
            allowed_from=("charging", "requires_action"),
            to="canceled",
            gateway_payment_id=result.payment_id or attempt.gateway_payment_id,
            failure_code="canceled",
            failure_message=_clip(result.failure_message) or "The payment was canceled.",
            next_action=None,
        )
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
        kind=_credit_kind(attempt),
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
            idempotency_key=idempotency_key_for(retry_id),
            not_before=tx.now + delay,
            previous_attempt_id=attempt.id,
            retry_number=attempt.retry_number + 1,
            created_at=tx.now,
            updated_at=tx.now,
        )
    )


CANCEL_REASONS = {
    "canceled_by_owner": "Canceled by the owner.",
    "settings_changed": "Canceled because the auto-reload settings changed.",
}


def request_cancel(
    tx: Tx, *, agency_id: str, attempt_id: str, reason: str = "canceled_by_owner"
) -> ClaimedAttempt | None:
    """First step of a cancel. An attempt that never reached the gateway (pending) is
    canceled now; one that waits for the owner's authentication (requires_action) is only
    marked ``cancel_requested_at``: it stays active (nothing new starts for the wallet)
    until the gateway confirms the payment can no longer be made. Returns what the
    gateway must be asked to cancel, or None when nothing is left to ask.
    """
    ledger.lock_wallet(tx, agency_id)
    attempt = get_attempt(tx, agency_id, attempt_id)
    if attempt.status == "canceled":
        return None
    if attempt.status == "pending":
        _transition(
            tx,
            attempt_id,
            allowed_from=("pending",),
            to="canceled",
            failure_code=reason,
            failure_message=CANCEL_REASONS[reason],
        )
        return None
    if attempt.status != "requires_action":
        raise Conflict(
            f"reload {attempt_id} is {attempt.status} and can no longer be canceled",
            code="reload_not_cancelable",
        )
    tx.conn.execute(
        update(reload_attempts)
        .where(reload_attempts.c.id == attempt_id, reload_attempts.c.cancel_requested_at.is_(None))
        .values(cancel_requested_at=tx.now, updated_at=tx.now)
    )
    return _claimed(tx, attempt)


def record_cancel_outcome(
    tx: Tx,
    policy: ReloadPolicy,
    *,
    attempt_id: str,
    result: ChargeResult,
    reason: str = "canceled_by_owner",
) -> ReloadAttempt | None:
    """Second step: what the gateway said. Paid first → succeeded and credited; no longer
    payable → canceled; no answer → the attempt stays as it was (the cancel request is
    withdrawn) and None says the cancel was not confirmed."""
    if result.status is ChargeStatus.SUCCEEDED:
        settled = record_charge_outcome(tx, policy, attempt_id, result)
        if settled.status in ("canceled", "failed"):  # settled otherwise meanwhile
            return record_late_success(tx, policy, attempt_id, result, actor="system") or settled
        return settled
    attempt = _load_attempt(tx, attempt_id)
    assert attempt is not None
    ledger.lock_wallet(tx, attempt.agency_id)
    if result.status is ChargeStatus.UNKNOWN:
        tx.conn.execute(
            update(reload_attempts)
            .where(
                reload_attempts.c.id == attempt_id, reload_attempts.c.status == "requires_action"
            )
            .values(cancel_requested_at=None, updated_at=tx.now)
        )
        return None
    # Canceled, or no longer payable for another reason (authentication failed): the
    # owner's cancel stands, and no retry is scheduled.
    _transition(
        tx,
        attempt_id,
        allowed_from=("requires_action",),
        to="canceled",
        failure_code=reason,
        failure_message=CANCEL_REASONS[reason],
        next_action=None,
    )
    updated = _load_attempt(tx, attempt_id)
    assert updated is not None
    return updated


def record_late_success(
    tx: Tx, policy: ReloadPolicy, attempt_id: str, result: ChargeResult, *, actor: str
) -> ReloadAttempt | None:
    """The gateway reports money taken for an attempt Refill had given up on (canceled or
    failed): canceled → succeeded or failed → succeeded, credited exactly once, with an
    audit entry saying why. The caller has checked that the payment names this attempt and
    that its amount and currency match. None when the attempt is in no such state."""
    attempt = _load_attempt(tx, attempt_id)
    assert attempt is not None
    ledger.lock_wallet(tx, attempt.agency_id)
    attempt = _load_attempt(tx, attempt_id)
    assert attempt is not None
    if attempt.status not in ("canceled", "failed"):
        return None
    was = attempt.status
    posted = ledger.credit_wallet(
        tx,
        agency_id=attempt.agency_id,
        source=ledger.SystemAccount.CARD_FUNDING,
        amount=attempt.amount,
        kind=_credit_kind(attempt),
        reference=attempt.id,
        metadata={"gateway_payment_id": result.payment_id, "late": True},
    )
    _transition(
        tx,
        attempt.id,
        allowed_from=(was,),
        to="succeeded",
        gateway_payment_id=result.payment_id or attempt.gateway_payment_id,
        next_action=None,
    )
    audit.record(
        tx,
        agency_id=attempt.agency_id,
        actor=actor,
        action="reload.late_success",
        target_id=attempt.id,
        before={"status": was, "failure_code": attempt.failure_code},
        after={
            "status": "succeeded",
            "credited": format_amount(attempt.amount, attempt.currency),
            "balance_after": format_amount(posted.balance, attempt.currency),
            "reason": f"the payment gateway reported the payment {result.payment_id} as "
            f"succeeded after the reload was {was}: the money was taken, so it is credited",
        },
    )
    return _load_attempt(tx, attempt_id)


def settle_by_operator(
    tx: Tx, policy: ReloadPolicy, *, attempt_id: str, paid: bool, reason: str, actor: str
) -> ReloadAttempt:
    """An operator checked at the gateway what became of a charge Refill cannot resolve:
    paid → succeeded and credited once; not paid → canceled (never retried)."""
    attempt = _load_attempt(tx, attempt_id)
    if attempt is None:
        raise NotFound(f"reload {attempt_id} not found", code="reload_not_found")
    if attempt.status not in ("charging", "requires_action"):
        raise Conflict(
            f"reload {attempt_id} is {attempt.status}: it has its outcome already",
            code="reload_settled",
        )
    result = ChargeResult(
        ChargeStatus.SUCCEEDED if paid else ChargeStatus.CANCELED,
        attempt.gateway_payment_id,
        failure_message=None if paid else f"Settled by an operator: not paid ({reason}).",
    )
    record_charge_outcome(tx, policy, attempt_id, result)
    audit.record(
        tx,
        agency_id=attempt.agency_id,
        actor=actor,
        action="reload.settled_by_operator",
        target_id=attempt_id,
        before={"status": attempt.status},
        after={"paid": paid, "reason": reason},
    )
    updated = _load_attempt(tx, attempt_id)
    assert updated is not None
    return updated


def _credit_kind(attempt: ReloadAttempt) -> ledger.TransferKind:
    return (
        ledger.TransferKind.AUTO_RELOAD
        if attempt.trigger == "auto"
        else ledger.TransferKind.MANUAL_RELOAD
    )


def attempts_waiting_for_owner(tx: Tx, agency_id: str) -> list[str]:
    """Auto-reloads waiting for 3-D Secure: a settings change cancels them first."""
    rows = tx.conn.execute(
        select(reload_attempts.c.id).where(
            reload_attempts.c.wallet_id == wallet_id_for(agency_id),
            reload_attempts.c.trigger == "auto",
            reload_attempts.c.status == "requires_action",
        )
    )
    return [r[0] for r in rows]


def _cancel_waiting_retries(tx: Tx, agency_id: str) -> None:
    """Settings changed: retries waiting for their time were made under the old settings.
    (They never reached the gateway, so they are canceled here; an attempt waiting for
    the owner's authentication is canceled at the gateway first, by the caller.)"""
    tx.conn.execute(
        update(reload_attempts)
        .where(
            reload_attempts.c.wallet_id == wallet_id_for(agency_id),
            reload_attempts.c.trigger == "auto",
            reload_attempts.c.status == "pending",
            reload_attempts.c.not_before.is_not(None),
        )
        .values(
            status="canceled",
            failure_code="settings_changed",
            failure_message=CANCEL_REASONS["settings_changed"],
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


def stale_charging_attempts(tx: Tx, *, limit: int) -> list[str]:
    """Charges whose claimer's lease ran out: the claimer died mid-charge."""
    stmt = (
        select(reload_attempts.c.id)
        .where(
            reload_attempts.c.status == "charging",
            or_(reload_attempts.c.lease_until.is_(None), reload_attempts.c.lease_until <= tx.now),
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
