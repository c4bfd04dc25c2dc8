"""Auto-reload: settings and their validation, the trigger rule, and the attempt state machine.

This module is the only writer of ``reload_attempts.status`` and of the auto-reload status.

Attempt states::

    pending ──► charging ──► succeeded | failed | requires_action
       │                                             │
       └──► canceled | blocked            canceled ◄─┘ (owner cancels, or settings change)

An auto-reload attempt is *active* while pending, charging or requires_action; a partial
unique index allows one active auto-reload per wallet, on SQLite and PostgreSQL alike.
Every transition is a conditional ``UPDATE ... WHERE status IN (...)``, so running a step
twice, or from two processes, changes nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from refill import ledger
from refill.db.database import Tx
from refill.db.schema import (
    ACTIVE_AUTO_RELOAD,
    ACTIVE_AUTO_RELOAD_STATUSES,
    auto_reload_settings,
    payment_methods,
    reload_attempts,
)
from refill.errors import Conflict, InvalidSettings, NotFound
from refill.gateway.base import ChargeResult, ChargeStatus
from refill.ids import new_id, wallet_id_for
from refill.money import format_amount, is_whole_minor_units

_OPEN_STATUSES = ("pending", "charging", "requires_action")


@dataclass(frozen=True, slots=True)
class ReloadPolicy:
    """Operator-configured limits on what an owner may set (micro-units)."""

    min_reload_amount: int = 5_000_000  # 5.00
    max_reload_amount: int = 10_000_000_000  # 10,000.00


@dataclass(frozen=True, slots=True)
class AutoReloadSettings:
    enabled: bool
    threshold: int | None
    reload_amount: int | None
    payment_method_id: str | None
    status: str  # off | active | suspended
    suspended_reason: str | None = None


NO_SETTINGS = AutoReloadSettings(False, None, None, None, "off")

_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class SettingsChange:
    """What the owner sends; a field left ``UNSET`` keeps its saved value."""

    enabled: bool | None = None
    threshold: int | None = _UNSET
    reload_amount: int | None = _UNSET
    payment_method_id: str | None = _UNSET


UNSET = _UNSET


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
        return (self.exp_year, self.exp_month) < (now.year, now.month)


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
    created_at: datetime
    updated_at: datetime

    @property
    def is_open(self) -> bool:
        return self.status in _OPEN_STATUSES


def attempt_from_row(row: Any) -> ReloadAttempt:
    return ReloadAttempt(**{f: row[f] for f in ReloadAttempt.__slots__})


def payment_method_from_row(row: Any) -> PaymentMethod:
    return PaymentMethod(**{f: row[f] for f in PaymentMethod.__slots__})


def _dialect_insert(tx: Tx) -> Any:
    return postgresql.insert if tx.dialect == "postgresql" else sqlite.insert


# --- settings -----------------------------------------------------------------------------


def get_settings(tx: Tx, agency_id: str) -> AutoReloadSettings:
    row = tx.conn.execute(
        select(auto_reload_settings).where(
            auto_reload_settings.c.wallet_id == wallet_id_for(agency_id)
        )
    ).one_or_none()
    if row is None:
        return NO_SETTINGS
    m = row._mapping
    return AutoReloadSettings(
        enabled=m["enabled"],
        threshold=m["threshold"],
        reload_amount=m["reload_amount"],
        payment_method_id=m["payment_method_id"],
        status=m["status"],
        suspended_reason=m["suspended_reason"],
    )


def get_payment_method(tx: Tx, agency_id: str, payment_method_id: str) -> PaymentMethod:
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
    return payment_method_from_row(row._mapping)


def validate_settings(
    policy: ReloadPolicy,
    currency: str,
    settings: AutoReloadSettings,
    payment_method: PaymentMethod | None,
    now: datetime,
) -> None:
    """The rules an owner's settings must meet; raises InvalidSettings naming the field."""
    if settings.threshold is not None and settings.threshold < 0:
        raise InvalidSettings("threshold must be zero or more", field="threshold")
    amount = settings.reload_amount
    if amount is not None:
        if amount <= 0:
            raise InvalidSettings("reload_amount must be more than zero", field="reload_amount")
        if not is_whole_minor_units(amount, currency):
            raise InvalidSettings(
                f"reload_amount must be a whole number of {currency} minor units "
                "(cards are charged in whole cents)",
                field="reload_amount",
            )
        if not policy.min_reload_amount <= amount <= policy.max_reload_amount:
            raise InvalidSettings(
                f"reload_amount must be between {format_amount(policy.min_reload_amount, currency)}"
                f" and {format_amount(policy.max_reload_amount, currency)} {currency}",
                field="reload_amount",
            )
    if not settings.enabled:
        return
    if settings.threshold is None:
        raise InvalidSettings("set a threshold to enable auto-reload", field="threshold")
    if amount is None:
        raise InvalidSettings("set a reload_amount to enable auto-reload", field="reload_amount")
    if payment_method is None:
        raise InvalidSettings(
            "choose a saved payment method to enable auto-reload", field="payment_method_id"
        )
    if payment_method.is_expired(now):
        raise InvalidSettings(
            f"the {payment_method.brand} card ending {payment_method.last4} expired "
            f"{payment_method.exp_month:02d}/{payment_method.exp_year}; save a new card",
            field="payment_method_id",
        )


def save_settings(
    tx: Tx, policy: ReloadPolicy, *, agency_id: str, currency: str, change: SettingsChange
) -> AutoReloadSettings:
    """Validate and store the owner's settings; reload at once if already below threshold.

    Any change cancels an open ``requires_action`` attempt first (it was made under the old
    settings), and enabling or resuming clears a suspension.
    """
    balance = ledger.lock_wallet(tx, agency_id)
    current = get_settings(tx, agency_id)

    def pick(new: Any, old: Any) -> Any:
        return old if new is UNSET else new

    enabled = current.enabled if change.enabled is None else change.enabled
    merged = AutoReloadSettings(
        enabled=enabled,
        threshold=pick(change.threshold, current.threshold),
        reload_amount=pick(change.reload_amount, current.reload_amount),
        payment_method_id=pick(change.payment_method_id, current.payment_method_id),
        status="active" if enabled else "off",
    )
    payment_method = (
        get_payment_method(tx, agency_id, merged.payment_method_id)
        if merged.payment_method_id is not None
        else None
    )
    validate_settings(policy, currency, merged, payment_method, tx.now)

    _cancel_open_auto_attempts(tx, agency_id, ("requires_action",), "settings_changed")
    values = {
        "enabled": merged.enabled,
        "threshold": merged.threshold,
        "reload_amount": merged.reload_amount,
        "payment_method_id": merged.payment_method_id,
        "status": merged.status,
        "suspended_reason": None,
        "updated_at": tx.now,
    }
    stmt = _dialect_insert(tx)(auto_reload_settings).values(
        wallet_id=wallet_id_for(agency_id), **values
    )
    tx.conn.execute(stmt.on_conflict_do_update(index_elements=["wallet_id"], set_=values))
    ledger.set_reload_below(tx, agency_id, merged.threshold if merged.enabled else None)
    trigger_auto_reload(tx, agency_id=agency_id, balance=balance, currency=currency)
    return merged


def _suspend(tx: Tx, agency_id: str, reason: str) -> None:
    tx.conn.execute(
        update(auto_reload_settings)
        .where(
            auto_reload_settings.c.wallet_id == wallet_id_for(agency_id),
            auto_reload_settings.c.status == "active",
        )
        .values(status="suspended", suspended_reason=reason, updated_at=tx.now)
    )
    ledger.set_reload_below(tx, agency_id, None)


# --- trigger ------------------------------------------------------------------------------


def trigger_auto_reload(tx: Tx, *, agency_id: str, balance: int, currency: str) -> str | None:
    """Create a pending auto-reload attempt if the rule says so; return its id.

    Called inside the transaction that changed the balance (or the settings), after the
    wallet row is locked. The partial unique index is the final word: if another active
    attempt exists, the insert does nothing.
    """
    wallet_id = wallet_id_for(agency_id)
    active = tx.conn.execute(
        select(reload_attempts.c.id).where(
            reload_attempts.c.wallet_id == wallet_id,
            reload_attempts.c.trigger == "auto",
            reload_attempts.c.status.in_(ACTIVE_AUTO_RELOAD_STATUSES),
        )
    ).first()
    if active is not None:
        return None
    settings = get_settings(tx, agency_id)
    if (
        settings.status != "active"
        or settings.threshold is None
        or settings.reload_amount is None
        or settings.payment_method_id is None
        or balance >= settings.threshold
    ):
        return None
    attempt_id = new_id("rld")
    stmt = (
        _dialect_insert(tx)(reload_attempts)
        .values(
            id=attempt_id,
            agency_id=agency_id,
            wallet_id=wallet_id,
            trigger="auto",
            status="pending",
            amount=settings.reload_amount,
            currency=currency,
            payment_method_id=settings.payment_method_id,
            idempotency_key=f"refill-reload-{attempt_id}",
            created_at=tx.now,
            updated_at=tx.now,
        )
        .on_conflict_do_nothing(
            index_elements=["wallet_id"],
            index_where=ACTIVE_AUTO_RELOAD,
        )
        .returning(reload_attempts.c.id)
    )
    created = tx.conn.execute(stmt).scalar()
    if created is not None:
        tx.new_reload_attempts.append(created)
    return created


def create_manual_attempt(
    tx: Tx,
    *,
    agency_id: str,
    currency: str,
    amount: int,
    payment_method_id: str,
    request_key: str | None,
    policy: ReloadPolicy,
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
    payment_method = get_payment_method(tx, agency_id, payment_method_id)
    if payment_method.is_expired(tx.now):
        raise InvalidSettings(
            f"the card ending {payment_method.last4} has expired", field="payment_method_id"
        )
    attempt_id = new_id("rld")
    values = {
        "id": attempt_id,
        "agency_id": agency_id,
        "wallet_id": wallet_id_for(agency_id),
        "trigger": "manual",
        "status": "pending",
        "amount": amount,
        "currency": currency,
        "payment_method_id": payment_method_id,
        "idempotency_key": f"refill-reload-{attempt_id}",
        "request_key": request_key,
        "created_at": tx.now,
        "updated_at": tx.now,
    }
    tx.conn.execute(insert(reload_attempts).values(values))
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
    row = tx.conn.execute(
        select(reload_attempts).where(reload_attempts.c.id == attempt_id)
    ).one_or_none()
    return None if row is None else attempt_from_row(row._mapping)


def _transition(
    tx: Tx, attempt_id: str, *, allowed_from: tuple[str, ...], to: str, **values: Any
) -> bool:
    """Move an attempt to ``to`` if it is still in one of ``allowed_from``."""
    result = tx.conn.execute(
        update(reload_attempts)
        .where(reload_attempts.c.id == attempt_id, reload_attempts.c.status.in_(allowed_from))
        .values(status=to, updated_at=tx.now, **values)
    )
    return result.rowcount == 1


@dataclass(frozen=True, slots=True)
class ClaimedAttempt:
    attempt: ReloadAttempt
    token: str


def claim_attempt(tx: Tx, attempt_id: str) -> ClaimedAttempt | None:
    """pending → charging. None if someone else claimed it or it is no longer pending."""
    if not _transition(tx, attempt_id, allowed_from=("pending",), to="charging", claimed_at=tx.now):
        return None
    attempt = _load_attempt(tx, attempt_id)
    assert attempt is not None
    token = tx.conn.execute(
        select(payment_methods.c.token).where(payment_methods.c.id == attempt.payment_method_id)
    ).scalar_one()
    return ClaimedAttempt(attempt, token)


def reclaim_stale_attempt(tx: Tx, attempt_id: str, stale_before: datetime) -> ClaimedAttempt | None:
    """Take over a ``charging`` attempt whose processor vanished (crash, kill) to ask again.

    The charge is sent again with the same idempotency key, which the gateway answers with
    the first outcome instead of charging twice.
    """
    result = tx.conn.execute(
        update(reload_attempts)
        .where(
            reload_attempts.c.id == attempt_id,
            reload_attempts.c.status == "charging",
            reload_attempts.c.claimed_at < stale_before,
        )
        .values(claimed_at=tx.now, updated_at=tx.now)
    )
    if result.rowcount != 1:
        return None
    attempt = _load_attempt(tx, attempt_id)
    assert attempt is not None
    token = tx.conn.execute(
        select(payment_methods.c.token).where(payment_methods.c.id == attempt.payment_method_id)
    ).scalar_one()
    return ClaimedAttempt(attempt, token)


def record_charge_outcome(tx: Tx, attempt_id: str, result: ChargeResult) -> ReloadAttempt:
    """charging → succeeded | failed | requires_action; the credit rides on the same commit.

    Running it again for an attempt that already left ``charging`` changes nothing.
    """
    attempt = _load_attempt(tx, attempt_id)
    if attempt is None:
        raise NotFound(f"reload {attempt_id} not found", code="reload_not_found")
    if attempt.status not in ("charging", "requires_action"):
        return attempt
    if result.status is ChargeStatus.UNKNOWN:
        # Leave it charging: the reconciler asks the gateway again later.
        return attempt
    # Wallet before attempt, the lock order of every path that touches both.
    ledger.lock_wallet(tx, attempt.agency_id)
    if result.status is ChargeStatus.SUCCEEDED:
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
            attempt_id,
            allowed_from=("charging", "requires_action"),
            to="succeeded",
            gateway_payment_id=result.payment_id,
            failure_code=None,
            failure_message=None,
        ):
            # Another finalizer won between our read and write; roll back our credit.
            raise Conflict(f"reload {attempt_id} was finalized concurrently")
        if attempt.trigger == "auto":
            # A reload that still leaves the wallet below the threshold starts the next one.
            trigger_auto_reload(
                tx, agency_id=attempt.agency_id, balance=posted.balance, currency=posted.currency
            )
    elif result.status is ChargeStatus.REQUIRES_ACTION:
        _transition(
            tx,
            attempt_id,
            allowed_from=("charging",),
            to="requires_action",
            gateway_payment_id=result.payment_id,
            failure_code=result.failure_code,
            failure_message=result.failure_message,
        )
    else:
        changed = _transition(
            tx,
            attempt_id,
            allowed_from=("charging", "requires_action"),
            to="failed",
            gateway_payment_id=result.payment_id,
            failure_code=result.failure_code,
            failure_message=(result.failure_message or "")[:500] or None,
        )
        if changed and attempt.trigger == "auto":
            # Stop charging a card that declined: the owner must fix it or re-enable.
            _suspend(
                tx,
                attempt.agency_id,
                f"the card was declined ({result.failure_code or 'declined'})",
            )
    updated = _load_attempt(tx, attempt_id)
    assert updated is not None
    return updated


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


def _cancel_open_auto_attempts(
    tx: Tx, agency_id: str, statuses: tuple[str, ...], reason: str
) -> None:
    tx.conn.execute(
        update(reload_attempts)
        .where(
            reload_attempts.c.wallet_id == wallet_id_for(agency_id),
            reload_attempts.c.trigger == "auto",
            reload_attempts.c.status.in_(statuses),
        )
        .values(
            status="canceled",
            failure_code=reason,
            failure_message="Canceled because the auto-reload settings changed.",
            updated_at=tx.now,
        )
    )


def due_pending_attempts(tx: Tx, *, created_before: datetime, limit: int) -> list[str]:
    """Pending attempts left behind (crash, lost wake-up), oldest first, skipping locked rows."""
    stmt = (
        select(reload_attempts.c.id)
        .where(reload_attempts.c.status == "pending", reload_attempts.c.created_at < created_before)
        .order_by(reload_attempts.c.id)
        .limit(limit)
    )
    if tx.dialect == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(tx.conn.execute(stmt).scalars())


def stale_charging_attempts(tx: Tx, *, claimed_before: datetime, limit: int) -> list[str]:
    stmt = (
        select(reload_attempts.c.id)
        .where(
            reload_attempts.c.status == "charging", reload_attempts.c.claimed_at < claimed_before
        )
        .order_by(reload_attempts.c.id)
        .limit(limit)
    )
    if tx.dialect == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(tx.conn.execute(stmt).scalars())
