"""The reload attempt's state machine: the only writer of ``reload_attempts.status``.

::

    pending ──► charging ──► succeeded | failed | requires_action
       │                                             │
       ├──► canceled (no longer needed, settings)     ├──► succeeded | failed (gateway says)
       └──► blocked (a safety rail, nothing charged)  └──► canceled (at the gateway first)

    canceled | failed ──► succeeded   only when the gateway reports the money taken
                                      (``settlement.record_late_success``)

An auto-reload attempt is *active* while pending, charging or requires_action; a partial
unique index allows one active auto-reload per wallet, on SQLite and PostgreSQL alike. A
soft decline schedules the next attempt (pending, with a not-before time), which is then
the wallet's active one. Every transition is a conditional ``UPDATE ... WHERE status IN
(...)`` (``transition``), so running a step twice, or from two processes, changes nothing
the second time. Lock order: the wallet row first, then the attempt. The settlements that
happen outside the charge path (a cancel at the gateway, money reported late, an
operator's verdict) are in ``settlement`` and write through ``transition`` too.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, update

from refill import ledger, metrics
from refill.db.database import Tx
from refill.db.schema import reload_attempts
from refill.errors import Conflict, NotFound
from refill.gateway.base import ChargeResult, ChargeStatus
from refill.ids import wallet_id_for
from refill.notify import reloads as notices
from refill.reload import chain, settings_store
from refill.reload import settings as reload_settings
from refill.reload.attempt import (
    ClaimedAttempt,
    ReloadAttempt,
    attempt_from_row,
    claimed,
    load_attempt,
    must_load,
)
from refill.reload.policy import ReloadPolicy
from refill.reload.states import AttemptStatus, DecisionAction, Trigger
from refill.reload.trigger import Decision, count_rails, decide, trigger_auto_reload

S = AttemptStatus
log = logging.getLogger("refill.reload")
# How long a claim holds without renewal; the claimer renews it every fifth of that.
DEFAULT_LEASE = timedelta(seconds=10)


def transition(
    tx: Tx, attempt_id: str, *, allowed_from: tuple[S, ...], to: S, **values: Any
) -> ReloadAttempt | None:
    """Move an attempt to ``to`` if it is still in one of ``allowed_from``; the new row.
    Every outcome an attempt reaches passes here, and is counted once the transaction
    commits (``metrics.ReloadOutcome``)."""
    row = tx.conn.execute(
        update(reload_attempts)
        .where(reload_attempts.c.id == attempt_id, reload_attempts.c.status.in_(allowed_from))
        .values(status=to, updated_at=tx.now, **values)
        .returning(*reload_attempts.c)
    ).one_or_none()
    if row is None:
        return None
    moved = attempt_from_row(row._mapping)
    tx.announce(metrics.ReloadOutcome(moved.trigger, moved.status, tx.now - moved.created_at))
    return moved


# --- claiming: pending → charging ----------------------------------------------------------


def claim_attempt(
    tx: Tx, policy: ReloadPolicy, attempt_id: str, *, lease: timedelta = DEFAULT_LEASE
) -> ClaimedAttempt | None:
    """pending → charging, once it is due. None if someone else has it or it is not needed.

    The claimer holds a lease on the attempt (``lease_until``) and keeps renewing it while
    its gateway call runs (``renew_leases``); a lease that runs out means the claimer died.

    An auto-reload is decided again under the wallet lock first (``trigger.decide``): a
    retry that comes due after the owner topped up by hand is canceled instead of charged,
    one that a rail now stops is blocked, and the amount and card follow the settings.
    """
    attempt = load_attempt(tx, attempt_id)
    if attempt is None or attempt.status is not S.PENDING:
        return None
    if attempt.not_before is not None and attempt.not_before > tx.now:
        return None
    claim: dict[str, Any] = {
        "claimed_at": tx.now,
        "lease_until": tx.now + lease,
        "first_sent_at": tx.now,
    }
    if attempt.is_auto:
        available = ledger.lock_wallet(tx, attempt.agency_id)
        settings = reload_settings.get_settings(tx, attempt.agency_id)
        decision = decide(
            policy,
            settings,
            available=available,
            currency=attempt.currency,
            active_attempt=False,  # this attempt is the wallet's active one
            rails=count_rails(tx, attempt.agency_id, exclude_attempt_id=attempt.id),
            now=tx.now,
        )
        if decision.action is DecisionAction.NONE:
            transition(
                tx,
                attempt_id,
                allowed_from=(S.PENDING,),
                to=S.CANCELED,
                failure_code="no_longer_needed",
                failure_message="Not charged: the wallet is no longer below the threshold "
                "or auto-reload is not active.",
            )
            return None
        if decision.action is DecisionAction.BLOCKED:
            _block(tx, attempt, decision)
            return None
        card = chain.card_to_charge(settings, attempt)
        if card is None:  # every card is skipped: the settings are suspended meanwhile
            transition(
                tx,
                attempt_id,
                allowed_from=(S.PENDING,),
                to=S.CANCELED,
                failure_code="no_chargeable_card",
                failure_message="Not charged: every card of auto-reload was declined before.",
            )
            return None
        claim.update(amount=decision.amount, payment_method_id=card)
    changed = transition(tx, attempt_id, allowed_from=(S.PENDING,), to=S.CHARGING, **claim)
    return claimed(tx, changed) if changed else None


def _block(tx: Tx, attempt: ReloadAttempt, decision: Decision) -> None:
    """A rail stops the attempt at its claim: blocked (nothing charged) until it lifts."""
    transition(
        tx,
        attempt.id,
        allowed_from=(S.PENDING,),
        to=S.BLOCKED,
        failure_code=decision.rail,
        failure_message=decision.message,
        blocked_until=decision.until,
    )
    settings_store.set_block(tx, attempt.agency_id, decision.rail, decision.until)
    log.warning(
        "auto-reload of agency %s blocked by its %s until %s: %s",
        attempt.agency_id,
        decision.rail,
        decision.until.isoformat() if decision.until else "further notice",
        decision.message,
    )
    notices.blocked(
        tx,
        attempt,
        amount=decision.amount,
        rail=str(decision.rail),
        until=decision.until,
        message=decision.message,
    )


def renew_leases(tx: Tx, attempt_ids: list[str], *, lease: timedelta) -> None:
    """The claimer is alive: its charges in flight keep their leases."""
    tx.conn.execute(
        update(reload_attempts)
        .where(reload_attempts.c.id.in_(attempt_ids), reload_attempts.c.status == S.CHARGING)
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
            reload_attempts.c.status == S.CHARGING,
            or_(reload_attempts.c.lease_until.is_(None), reload_attempts.c.lease_until <= tx.now),
        )
        .values(claimed_at=tx.now, lease_until=tx.now + lease, updated_at=tx.now)
        .returning(*reload_attempts.c)
    ).one_or_none()
    return None if row is None else claimed(tx, attempt_from_row(row._mapping))


# --- recording what the gateway said --------------------------------------------------------


def record_charge_outcome(
    tx: Tx, policy: ReloadPolicy, attempt_id: str, result: ChargeResult
) -> ReloadAttempt:
    """charging → succeeded | failed | requires_action | canceled; a credit rides on the
    same commit. Running it again for an attempt that has its outcome changes nothing."""
    attempt = load_attempt(tx, attempt_id)
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
    # Read the attempt again under the wallet lock: a webhook and the worker may settle it
    # at once.
    ledger.lock_wallet(tx, attempt.agency_id)
    attempt = must_load(tx, attempt_id)
    if _already_settled(attempt, result):
        return attempt
    if result.status is ChargeStatus.SUCCEEDED:
        _record_success(tx, attempt, result)
    elif result.status is ChargeStatus.CANCELED:
        transition(
            tx,
            attempt_id,
            allowed_from=(S.CHARGING, S.REQUIRES_ACTION),
            to=S.CANCELED,
            gateway_payment_id=result.payment_id or attempt.gateway_payment_id,
            failure_code="canceled",
            failure_message=_clip(result.failure_message) or "The payment was canceled.",
            next_action=None,
        )
    elif result.status is ChargeStatus.REQUIRES_ACTION:
        if transition(
            tx,
            attempt_id,
            allowed_from=(S.CHARGING,),
            to=S.REQUIRES_ACTION,
            gateway_payment_id=result.payment_id,
            failure_code=result.failure_code,
            failure_message=_clip(result.failure_message),
            next_action=json.dumps(result.next_action) if result.next_action else None,
        ):
            notices.requires_action(tx, attempt)
    else:
        _record_decline(tx, policy, attempt, result)
    return must_load(tx, attempt_id)


def _already_settled(attempt: ReloadAttempt, result: ChargeResult) -> bool:
    """True when recording ``result`` would change nothing: the attempt has its outcome, or
    already waits for the owner's authentication that ``result`` asks for again."""
    if attempt.status is S.REQUIRES_ACTION:
        return result.status is ChargeStatus.REQUIRES_ACTION
    return attempt.status is not S.CHARGING


def _clip(message: str | None) -> str | None:
    return message[:500] if message else None


def credit_kind(attempt: ReloadAttempt) -> ledger.TransferKind:
    return ledger.TransferKind.AUTO_RELOAD if attempt.is_auto else ledger.TransferKind.MANUAL_RELOAD


def _record_success(tx: Tx, attempt: ReloadAttempt, result: ChargeResult) -> None:
    posted = ledger.credit_wallet(
        tx,
        agency_id=attempt.agency_id,
        source=ledger.SystemAccount.CARD_FUNDING,
        amount=attempt.amount,
        kind=credit_kind(attempt),
        reference=attempt.id,
        metadata={"gateway_payment_id": result.payment_id} if result.payment_id else None,
    )
    if not transition(
        tx,
        attempt.id,
        allowed_from=(S.CHARGING, S.REQUIRES_ACTION),
        to=S.SUCCEEDED,
        gateway_payment_id=result.payment_id,
        failure_code=None,
        failure_message=None,
        next_action=None,
    ):
        # Another finalizer won between our read and write; roll back our credit.
        raise Conflict(f"reload {attempt.id} was finalized concurrently")
    notices.succeeded(tx, attempt, balance_after=posted.balance)
    if attempt.is_auto:
        # A reload that still leaves the wallet below the threshold starts the next one.
        trigger_auto_reload(
            tx, agency_id=attempt.agency_id, available=posted.available, currency=posted.currency
        )


def _record_decline(
    tx: Tx, policy: ReloadPolicy, attempt: ReloadAttempt, result: ChargeResult
) -> None:
    code = result.failure_code or "declined"
    if not transition(
        tx,
        attempt.id,
        allowed_from=(S.CHARGING, S.REQUIRES_ACTION),
        to=S.FAILED,
        gateway_payment_id=result.payment_id,
        failure_code=code,
        failure_message=_clip(result.failure_message),
        next_action=None,
    ):
        return
    decline_class = policy.classify(code)
    if attempt.is_auto:  # the next card, the chain's retry, or a suspension
        chain.after_auto_decline(
            tx,
            policy,
            attempt,
            code=code,
            decline_class=decline_class,
            message=_clip(result.failure_message),
        )
        return
    # A manual top-up fails in front of the owner; nothing to schedule.
    notices.failed(
        tx,
        attempt,
        decline_code=code,
        decline_class=decline_class.value,
        message=_clip(result.failure_message),
        will_retry_at=None,
    )


# --- canceling ----------------------------------------------------------------------------

CANCEL_REASONS = {
    "canceled_by_owner": "Canceled by the owner.",
    "settings_changed": "Canceled because the auto-reload settings changed.",
}


def cancel_waiting_retries(tx: Tx, agency_id: str) -> None:
    """Settings changed: retries waiting for their time were made under the old settings.
    They never reached the gateway, so they are canceled here; an attempt waiting for the
    owner's authentication is canceled at the gateway first (``request_cancel``)."""
    canceled = tx.conn.execute(
        update(reload_attempts)
        .where(
            reload_attempts.c.wallet_id == wallet_id_for(agency_id),
            reload_attempts.c.trigger == Trigger.AUTO,
            reload_attempts.c.status == S.PENDING,
            reload_attempts.c.not_before.is_not(None),
        )
        .values(
            status=S.CANCELED,
            failure_code="settings_changed",
            failure_message=CANCEL_REASONS["settings_changed"],
            updated_at=tx.now,
        )
    )
    if canceled.rowcount:
        tx.announce(metrics.ReloadOutcome(Trigger.AUTO, S.CANCELED, count=canceled.rowcount))
