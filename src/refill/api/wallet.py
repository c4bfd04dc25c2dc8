"""/v1/wallet: the balance, the auto-reload settings, and credits added by hand."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response

from refill import services
from refill.api import notification_schemas as n
from refill.api import schemas as s
from refill.api.deps import Owner, Service
from refill.api.problems import problems
from refill.api.wallet_schemas import WalletOut
from refill.errors import PaymentFailed
from refill.money import parse_amount
from refill.reload.settings import change_from_text
from refill.reload.states import ACTIVE_STATUSES, AttemptStatus

router = APIRouter(prefix="/v1/wallet", tags=["wallet"], responses=problems(401, 403, 413, 422))


@router.get("", operation_id="get_wallet")
def get_wallet(p: Owner, refill: Service) -> WalletOut:
    return WalletOut.of(services.get_wallet(refill.db, refill.policy, agency_id=p.agency_id))


@router.put(
    "/auto-reload",
    operation_id="update_auto_reload",
    responses=problems(404, 422, 503),
)
def update_auto_reload(body: s.AutoReloadUpdate, p: Owner, refill: Service) -> WalletOut:
    """Fields left out keep their saved value; null clears an optional one. Settings equal
    to the saved ones change nothing. Below the threshold, a reload starts at once."""
    change = change_from_text({name: getattr(body, name) for name in body.model_fields_set})
    wallet = services.update_auto_reload(
        refill.db,
        refill.gateway,
        refill.policy,
        agency_id=p.agency_id,
        currency=p.currency,
        change=change,
        actor=p.actor,
    )
    return WalletOut.of(wallet)


@router.post(
    "/auto-reload/retry",
    operation_id="retry_auto_reload_now",
    responses={
        **problems(409),
        202: {"model": s.ReloadOut, "description": "Sent, but not settled yet."},
    },
)
def retry_now(p: Owner, refill: Service, response: Response) -> s.ReloadOut:
    """Try the declined auto-reload that waits for its retry now, instead of at
    ``next_retry_at`` (409 ``no_retry_waiting`` when none waits). A wallet that is no
    longer below its threshold cancels it instead of charging. 200 with the outcome
    (succeeded, failed again, canceled), 202 while it is not settled (3-D Secure, a lost
    answer)."""
    attempt = services.retry_now(refill.db, refill.processor, agency_id=p.agency_id)
    if attempt.status in ACTIVE_STATUSES:
        response.status_code = 202
    return s.ReloadOut.of(attempt)


@router.get("/alerts", operation_id="get_wallet_alerts")
def get_alerts(p: Owner, refill: Service) -> n.AlertsOut:
    agency = services.get_agency(refill.db, p.agency_id)
    return n.AlertsOut(
        low_balance_alert=s.fmt(agency.low_balance_alert, agency.currency),
        currency=agency.currency,
    )


@router.put("/alerts", operation_id="update_wallet_alerts", responses=problems(422))
def update_alerts(body: n.AlertsUpdate, p: Owner, refill: Service) -> n.AlertsOut:
    """The balance below which the owner is e-mailed (``wallet.low_balance``), whether
    auto-reload is on or off; null: the auto-reload threshold while it is off or suspended."""
    alert = None
    if body.low_balance_alert is not None:
        alert = parse_amount(body.low_balance_alert, field="low_balance_alert")
    agency = services.set_low_balance_alert(
        refill.db, agency_id=p.agency_id, alert=alert, actor=p.actor
    )
    return n.AlertsOut(
        low_balance_alert=s.fmt(agency.low_balance_alert, agency.currency),
        currency=agency.currency,
    )


@router.post(
    "/credits",
    status_code=201,
    operation_id="add_credits",
    responses={
        **problems(402, 404, 409, 422, 503),
        202: {"model": s.ReloadOut, "description": "Waiting for 3-D Secure, or still charging."},
        200: {"model": s.ReloadOut, "description": "The same Idempotency-Key, replayed."},
    },
)
def add_credits(
    body: s.CreditsCreate,
    p: Owner,
    refill: Service,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> s.ReloadOut:
    """Charge a saved card now and credit the wallet. With an ``Idempotency-Key`` a retry is
    safe: 409 ``idempotency_key_in_use`` while the first runs, its result after."""
    attempt, created = services.add_credits(
        refill.db,
        refill.processor,
        agency_id=p.agency_id,
        currency=p.currency,
        amount=parse_amount(body.amount),
        payment_method_id=body.payment_method_id,
        request_key=idempotency_key,
    )
    out = s.ReloadOut.of(attempt)
    if attempt.status is AttemptStatus.FAILED:
        raise PaymentFailed(
            f"the card was declined: {attempt.failure_message or attempt.failure_code}",
            reload=out.model_dump(mode="json"),
            decline_code=attempt.failure_code,
        )
    if attempt.status is not AttemptStatus.SUCCEEDED:
        response.status_code = 202  # requires_action, or still charging
    elif not created:
        response.status_code = 200
    return out
