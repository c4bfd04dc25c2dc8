"""Reloads: a manual top-up charged in front of the owner, a reload looked at or canceled (at
the gateway first), the history."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import select

from refill.db.database import Database
from refill.db.schema import (
    reload_attempts,
)
from refill.errors import (
    GatewayUnavailable,
)
from refill.gateway.base import PaymentGateway
from refill.reload import attempt as reload_attempt
from refill.reload import manual, settlement
from refill.reload.attempt import ReloadAttempt, attempt_from_row
from refill.reload.policy import ReloadPolicy
from refill.services.pages import Page, paginate


class AttemptProcessor(Protocol):
    """What add_credits needs from the worker: run one attempt to its outcome now."""

    def process(self, attempt_id: str) -> ReloadAttempt | None: ...


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
    db: Database, *, agency_id: str, limit: int = 50, cursor: str | None = None
) -> Page[ReloadAttempt]:
    stmt = select(reload_attempts).where(reload_attempts.c.agency_id == agency_id)
    return paginate(
        db,
        stmt,
        reload_attempts.c.id,
        attempt_from_row,
        limit=limit,
        cursor=cursor,
        newest_first=True,
    )
