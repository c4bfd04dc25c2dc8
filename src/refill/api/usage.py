"""/v1/usage and /v1/calls/authorize: the hot path, for owner and subteam keys."""

from __future__ import annotations

from fastapi import APIRouter, Response

from refill import services
from refill.api import schemas as s
from refill.api.deps import Anyone, Service, for_subteam
from refill.api.problems import problems
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
    for_subteam(p, body.subteam_id)
    transfer, created = services.record_usage(
        refill.db,
        agency_id=p.agency_id,
        subteam_id=body.subteam_id,
        amount=parse_amount(body.amount),
        reference=body.reference,
        description=body.description,
    )
    if not created:
        response.status_code = 200
    return s.TransferOut.of(transfer, p.currency)


@router.post("/v1/calls/authorize", operation_id="authorize_call", responses=problems(404, 422))
def authorize_call(body: s.AuthorizeRequest, p: Anyone, refill: Service) -> s.AuthorizationOut:
    """Can this subteam take a call now? No credits, no calls."""
    for_subteam(p, body.subteam_id)
    result = services.authorize_call(refill.db, agency_id=p.agency_id, subteam_id=body.subteam_id)
    return s.AuthorizationOut(
        allowed=result.allowed,
        reason=result.reason,
        available=format_amount(result.available, result.currency),
        currency=result.currency,
    )
