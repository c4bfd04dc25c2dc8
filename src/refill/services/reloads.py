"""Reloads: a manual top-up charged in front of the owner, a reload looked at or canceled (at
the gateway first), the history."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sqlalchemy import select

from refill.db.database import Database
from refill.db.schema import (
    reload_attempts,
)
from refill.errors import (
    Conflict,
    GatewayUnavailable,
    NotFound,
)
from refill.gateway.base import PaymentGateway
from refill.reload import attempt as reload_attempt
from refill.reload import manual, settlement
from refill.reload.attempt import ReloadAttempt, attempt_from_row
from refill.reload.policy import ReloadPolicy
from refill.reload.states import AttemptStatus
from refill.services.history_filters import ReloadFilter
from refill.services.pages import Page, paginate


class AttemptProcessor(Protocol):
    """What add_credits needs from the worker: run one attempt to its outcome now."""

    def process(self, attempt_id: str) -> ReloadAttempt | None: ...

    def refresh_waiting(self, attempt_id: str) -> ReloadAttempt: ...


@runtime_checkable
class SimulatedBank(Protocol):
    """The sandbox's stand-in for a bank's 3-D Secure page."""

    def authenticate(self, payment_id: str, *, approved: bool) -> None: ...


def add_credits(
    db: Database,
    processor: AttemptProcessor,
    *,
    agency_id: str,
    currency: str,
    amount: int,
    payment_method_id: str,
    request_key: str | None,
) -> tuple[ReloadAttempt, bool]:
    """Charge a saved payment method now and credit the wallet (a manual top-up).

    The charge runs in the request, outside any transaction, so the owner sees the outcome.
    A repeat with the same Idempotency-Key returns the first attempt without charging again
    once the first request has finished (``IdempotencyKeyInUse`` while it runs).
    """
    attempt, created = db.write(
        lambda tx: manual.create_manual_attempt(
            tx,
            agency_id=agency_id,
            currency=currency,
            amount=amount,
            payment_method_id=payment_method_id,
            request_key=request_key,
        )
    )
    if created:
        processor.process(attempt.id)
        attempt = db.read(lambda tx: reload_attempt.get_attempt(tx, agency_id, attempt.id))
    return attempt, created


def retry_now(db: Database, processor: AttemptProcessor, *, agency_id: str) -> ReloadAttempt:
    """Run the waiting retry of a declined auto-reload now, in front of the owner (409
    ``no_retry_waiting`` when none waits)."""
    attempt_id = db.write(lambda tx: manual.bring_retry_forward(tx, agency_id))
    processor.process(attempt_id)
    return db.read(lambda tx: reload_attempt.get_attempt(tx, agency_id, attempt_id))


def finish_authentication(
    db: Database, processor: AttemptProcessor, *, agency_id: str, attempt_id: str
) -> ReloadAttempt:
    """The owner came back from authenticating a payment: ask the gateway what became of
    it and record that now, rather than wait for a webhook that may never come."""
    db.read(lambda tx: reload_attempt.get_attempt(tx, agency_id, attempt_id))
    return processor.refresh_waiting(attempt_id)


def answer_simulated_bank(
    db: Database,
    gateway: PaymentGateway,
    processor: AttemptProcessor,
    *,
    agency_id: str,
    attempt_id: str,
    approved: bool,
) -> ReloadAttempt:
    """The sandbox's bank page: the owner approves or declines the waiting payment, and
    it is settled the way a real authentication is (``finish_authentication``)."""
    if not isinstance(gateway, SimulatedBank):
        raise NotFound("there is no simulated bank with this gateway", code="not_found")
    attempt = db.read(lambda tx: reload_attempt.get_attempt(tx, agency_id, attempt_id))
    if attempt.status is not AttemptStatus.REQUIRES_ACTION or attempt.gateway_payment_id is None:
        raise Conflict(
            "this payment is not waiting for authentication",
            code="not_waiting_for_authentication",
        )
    gateway.authenticate(attempt.gateway_payment_id, approved=approved)
    return processor.refresh_waiting(attempt_id)


def get_reload(db: Database, *, agency_id: str, attempt_id: str) -> ReloadAttempt:
    return db.read(lambda tx: reload_attempt.get_attempt(tx, agency_id, attempt_id))


def cancel_reload(
    db: Database,
    gateway: PaymentGateway,
    policy: ReloadPolicy,
    *,
    agency_id: str,
    attempt_id: str,
    reason: str = "canceled_by_owner",
) -> ReloadAttempt:
    """Cancel an attempt that waits (pending, or for the owner's 3-D Secure).

    One waiting at the gateway is canceled there first, outside any transaction: marked
    ``cancel_requested_at`` (still active), the gateway asked, then recorded canceled, or
    succeeded and credited if it was paid meanwhile. When the gateway cannot confirm,
    ``GatewayUnavailable`` (503) and the attempt stays as it was.
    """
    claimed = db.write(
        lambda tx: settlement.request_cancel(
            tx, agency_id=agency_id, attempt_id=attempt_id, reason=reason
        )
    )
    if claimed is not None:
        result = gateway.cancel_charge(
            reload_attempt.charge_request(claimed), claimed.attempt.gateway_payment_id
        )
        settled = db.write(
            lambda tx: settlement.record_cancel_outcome(
                tx, policy, attempt_id=attempt_id, result=result, reason=reason
            )
        )
        if settled is None:
            raise GatewayUnavailable(
                "the payment gateway could not confirm that the payment was canceled; "
                "nothing was changed, try again",
                code="cancel_unconfirmed",
            )
    return db.read(lambda tx: reload_attempt.get_attempt(tx, agency_id, attempt_id))


def list_reloads(
    db: Database,
    *,
    agency_id: str,
    limit: int = 50,
    cursor: str | None = None,
    matching: ReloadFilter | None = None,
) -> Page[ReloadAttempt]:
    """Newest first; a cursor continues the list of the filter it came from (pass the same
    filter again with it)."""
    conditions = matching.conditions() if matching is not None else []
    stmt = select(reload_attempts).where(reload_attempts.c.agency_id == agency_id, *conditions)
    return paginate(
        db,
        stmt,
        reload_attempts.c.id,
        attempt_from_row,
        limit=limit,
        cursor=cursor,
        newest_first=True,
    )
