"""/v1/usage and /v1/calls/authorize: the hot path, for owner and subteam keys."""

from __future__ import annotations

from fastapi import APIRouter, Response

from refill import metrics, services
from refill.api import schemas as s
from refill.api.deps import Anyone, Service, for_subteam
from refill.api.problems import problems
from refill.errors import RefillError
from refill.money import format_amount, parse_amount

router = APIRouter(tags=["usage"], responses=problems(401, 403, 413, 422))


@router.post(
    "/v1/usage",
    status_code=201,
    operation_id="record_usage",
    responses={
        **problems(402, 404, 409, 422),
        200: {"model": s.TransferOut, "description": "The same reference, replayed."},
    },
)
def record_usage(
    body: s.UsageCreate, p: Anyone, refill: Service, response: Response
) -> s.TransferOut:
    """Debit the parent wallet for a subteam's usage, exactly once per reference."""
    try:
        for_subteam(p, body.subteam_id)
        # Applied with what else is queued for the wallet, when coalescing is on.
        transfer, created = refill.usage.record(
            agency_id=p.agency_id,
            subteam_id=body.subteam_id,
            amount=parse_amount(body.amount),
            reference=body.reference,
            description=body.description,
            hold_id=body.hold_id,
            occurred_at=body.occurred_at,
        )
    except RefillError as exc:
        metrics.count_usage("single", refused_codes=(exc.code,))
        raise
    metrics.count_usage("single", created=int(created), duplicate=int(not created))
    if not created:
        response.status_code = 200
    return s.TransferOut.of(transfer, p.currency)


@router.post(
    "/v1/calls/authorize",
    operation_id="authorize_call",
    responses=problems(404, 422),
    # hold_id and hold_expires_at only when a hold was placed.
    response_model_exclude_none=True,
)
def authorize_call(body: s.AuthorizeRequest, p: Anyone, refill: Service) -> s.AuthorizationOut:
    """Can this subteam take a call now? Without expected_cost: while available credits
    are above the agency's min_call_balance. With it: while they cover it. Never while the
    subteam is paused or at a spend limit. With hold, the cost is held for the call."""
    for_subteam(p, body.subteam_id)
    expected = None
    if body.expected_cost is not None:
        expected = parse_amount(body.expected_cost, field="expected_cost")
    result = services.authorize_call(
        refill.db,
        agency_id=p.agency_id,
        subteam_id=body.subteam_id,
        expected_cost=expected,
        hold=body.hold,
        hold_expires_in_seconds=body.hold_expires_in_seconds,
    )
    return s.AuthorizationOut(
        allowed=result.allowed,
        reason=result.reason,
        available=format_amount(result.available, result.currency),
        currency=result.currency,
        hold_id=None if result.hold is None else result.hold.id,
        hold_expires_at=None if result.hold is None else result.hold.expires_at,
    )
