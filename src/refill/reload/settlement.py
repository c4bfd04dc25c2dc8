"""Settling attempts outside the charge path, through ``machine.transition``: a cancel made
at the gateway first, money the gateway reports taken after Refill gave up on an attempt,
and an operator's verdict on a charge Refill cannot resolve."""

from __future__ import annotations

from sqlalchemy import update

from refill import audit, ledger
from refill.db.database import Tx
from refill.db.schema import reload_attempts
from refill.errors import Conflict, NotFound
from refill.gateway.base import ChargeResult, ChargeStatus
from refill.money import format_amount
from refill.notify import reloads as notices
from refill.reload.attempt import (
    ClaimedAttempt,
    ReloadAttempt,
    claimed,
    get_attempt,
    load_attempt,
    must_load,
)
from refill.reload.machine import CANCEL_REASONS, credit_kind, record_charge_outcome, transition
from refill.reload.policy import ReloadPolicy
from refill.reload.states import AttemptStatus

S = AttemptStatus
GAVE_UP = (S.CANCELED, S.FAILED)


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
    if attempt.status is S.CANCELED:
        return None
    if attempt.status is S.PENDING:
        transition(
            tx,
            attempt_id,
            allowed_from=(S.PENDING,),
            to=S.CANCELED,
            failure_code=reason,
            failure_message=CANCEL_REASONS[reason],
        )
        return None
    if attempt.status is not S.REQUIRES_ACTION:
        raise Conflict(
            f"reload {attempt_id} is {attempt.status} and can no longer be canceled",
            code="reload_not_cancelable",
        )
    tx.conn.execute(
        update(reload_attempts)
        .where(reload_attempts.c.id == attempt_id, reload_attempts.c.cancel_requested_at.is_(None))
        .values(cancel_requested_at=tx.now, updated_at=tx.now)
    )
    return claimed(tx, attempt)


def record_cancel_outcome(
    tx: Tx,
    policy: ReloadPolicy,
    *,
    attempt_id: str,
    result: ChargeResult,
    reason: str = "canceled_by_owner",
) -> ReloadAttempt | None:
    """Second step: what the gateway said. Paid first → succeeded and credited; no longer
    payable → canceled (never retried); no answer → the attempt stays as it was (the
    cancel request is withdrawn) and None says the cancel was not confirmed."""
    if result.status is ChargeStatus.SUCCEEDED:
        settled = record_charge_outcome(tx, policy, attempt_id, result)
        if settled.status in GAVE_UP:  # settled otherwise meanwhile
            return record_late_success(tx, attempt_id, result, actor="system") or settled
        return settled
    attempt = must_load(tx, attempt_id)
    ledger.lock_wallet(tx, attempt.agency_id)
    if result.status is ChargeStatus.UNKNOWN:
        tx.conn.execute(
            update(reload_attempts)
            .where(
                reload_attempts.c.id == attempt_id,
                reload_attempts.c.status == S.REQUIRES_ACTION,
            )
            .values(cancel_requested_at=None, updated_at=tx.now)
        )
        return None
    transition(
        tx,
        attempt_id,
        allowed_from=(S.REQUIRES_ACTION,),
        to=S.CANCELED,
        failure_code=reason,
        failure_message=CANCEL_REASONS[reason],
        next_action=None,
    )
    return load_attempt(tx, attempt_id)


def record_late_success(
    tx: Tx, attempt_id: str, result: ChargeResult, *, actor: str
) -> ReloadAttempt | None:
    """The gateway reports money taken for an attempt Refill had given up on (canceled or
    failed): → succeeded, credited exactly once, with an audit entry saying why. The
    caller has checked that the payment names this attempt and that its amount and
    currency match. None when the attempt is in no such state."""
    attempt = must_load(tx, attempt_id)
    ledger.lock_wallet(tx, attempt.agency_id)
    attempt = must_load(tx, attempt_id)
    if attempt.status not in GAVE_UP:
        return None
    was = attempt.status
    posted = ledger.credit_wallet(
        tx,
        agency_id=attempt.agency_id,
        source=ledger.SystemAccount.CARD_FUNDING,
        amount=attempt.amount,
        kind=credit_kind(attempt),
        reference=attempt.id,
        metadata={"gateway_payment_id": result.payment_id, "late": True},
    )
    notices.succeeded(tx, attempt, balance_after=posted.balance, late=True)
    transition(
        tx,
        attempt.id,
        allowed_from=(was,),
        to=S.SUCCEEDED,
        gateway_payment_id=result.payment_id or attempt.gateway_payment_id,
        next_action=None,
    )
    audit.record(
        tx,
        agency_id=attempt.agency_id,
        actor=actor,
        action="reload.late_success",
        target_id=attempt.id,
        before={"status": was.value, "failure_code": attempt.failure_code},
        after={
            "status": "succeeded",
            "credited": format_amount(attempt.amount, attempt.currency),
            "balance_after": format_amount(posted.balance, attempt.currency),
            "reason": f"the payment gateway reported the payment {result.payment_id} as "
            f"succeeded after the reload was {was}: the money was taken, so it is credited",
        },
    )
    return load_attempt(tx, attempt_id)


def settle_by_operator(
    tx: Tx, policy: ReloadPolicy, *, attempt_id: str, paid: bool, reason: str, actor: str
) -> ReloadAttempt:
    """An operator checked at the gateway what became of a charge Refill cannot resolve:
    paid → succeeded and credited once; not paid → canceled (never retried)."""
    attempt = load_attempt(tx, attempt_id)
    if attempt is None:
        raise NotFound(f"reload {attempt_id} not found", code="reload_not_found")
    if attempt.status not in (S.CHARGING, S.REQUIRES_ACTION):
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
        before={"status": attempt.status.value},
        after={"paid": paid, "reason": reason},
    )
    updated = must_load(tx, attempt_id)
    return updated
