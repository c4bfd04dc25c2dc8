"""/v1/payment-methods: saved cards (the gateway's token, brand, last four, expiry)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from refill import services
from refill.api import schemas as s
from refill.api.deps import Cursor, Limit, Owner, Service
from refill.api.problems import problems

router = APIRouter(
    prefix="/v1/payment-methods",
    tags=["payment methods"],
    responses=problems(401, 403, 413, 422),
)


@router.post(
    "",
    status_code=201,
    operation_id="save_payment_method",
    responses=problems(422, 503),
)
def save_payment_method(
    body: s.PaymentMethodCreate, p: Owner, refill: Service, response: Response
) -> s.PaymentMethodOut:
    card, created = services.save_payment_method(
        refill.db, refill.gateway, agency_id=p.agency_id, token=body.token, actor=p.actor
    )
    if not created:
        response.status_code = 200
    return s.PaymentMethodOut.of(card, refill.db.clock.now())


@router.get("", operation_id="list_payment_methods", responses=problems(422))
def list_payment_methods(
    p: Owner, refill: Service, limit: Limit = 50, cursor: Cursor = None
) -> s.ListOf[s.PaymentMethodOut]:
    now = refill.db.clock.now()
    page = services.list_payment_methods(
        refill.db, agency_id=p.agency_id, limit=limit, cursor=cursor
    )
    return s.ListOf[s.PaymentMethodOut](
        data=[s.PaymentMethodOut.of(card, now) for card in page.data],
        next_cursor=page.next_cursor,
    )


@router.delete(
    "/{payment_method_id}",
    status_code=204,
    operation_id="remove_payment_method",
    responses=problems(404, 409),
)
def remove_payment_method(payment_method_id: str, p: Owner, refill: Service) -> Response:
    services.remove_payment_method(
        refill.db,
        agency_id=p.agency_id,
        payment_method_id=payment_method_id,
        actor=p.actor,
        gateway=refill.gateway,
    )
    return Response(status_code=204)
