"""/v1/webhook-endpoints: where Refill POSTs the agency's events, signed by the Standard
Webhooks specification; their deliveries, and retrying one by hand."""

from __future__ import annotations

from fastapi import APIRouter, Response

from refill.api import notification_schemas as n
from refill.api import schemas as s
from refill.api.deps import Cursor, Limit, Owner, Service
from refill.api.problems import problems
from refill.services import notifications

router = APIRouter(
    prefix="/v1/webhook-endpoints", tags=["webhooks"], responses=problems(401, 403, 413, 422)
)


@router.post("", status_code=201, operation_id="create_webhook_endpoint", responses=problems(422))
def create_endpoint(body: n.EndpointCreate, p: Owner, refill: Service) -> n.EndpointWithSecretOut:
    """Only http(s) URLs of public addresses (422 ``url_not_allowed`` otherwise). The
    ``secret`` is shown only in this answer."""
    endpoint, secret = notifications.create_endpoint(
        refill.db,
        refill.url_rules,
        refill.keyring,
        agency_id=p.agency_id,
        url=body.url,
        event_types=body.events,
        description=body.description,
        actor=p.actor,
    )
    return n.EndpointWithSecretOut.with_secret(endpoint, secret)


@router.get("", operation_id="list_webhook_endpoints")
def list_endpoints(p: Owner, refill: Service) -> s.ListOf[n.EndpointOut]:
    endpoints = notifications.list_endpoints(refill.db, agency_id=p.agency_id)
    return s.ListOf[n.EndpointOut](data=[n.EndpointOut.of(e) for e in endpoints], next_cursor=None)


@router.get("/{endpoint_id}", operation_id="get_webhook_endpoint", responses=problems(404))
def get_endpoint(endpoint_id: str, p: Owner, refill: Service) -> n.EndpointOut:
    return n.EndpointOut.of(
        notifications.get_endpoint(refill.db, agency_id=p.agency_id, endpoint_id=endpoint_id)
    )


@router.patch("/{endpoint_id}", operation_id="update_webhook_endpoint", responses=problems(404))
def update_endpoint(
    endpoint_id: str, body: n.EndpointUpdate, p: Owner, refill: Service
) -> n.EndpointOut:
    """Fields left out keep their value. Enabling a disabled endpoint makes the deliveries
    that waited for it due at once."""
    endpoint = notifications.update_endpoint(
        refill.db,
        refill.url_rules,
        agency_id=p.agency_id,
        endpoint_id=endpoint_id,
        url=body.url,
        event_types=body.events,
        enabled=body.enabled,
        description=body.description,
        actor=p.actor,
    )
    return n.EndpointOut.of(endpoint)


@router.delete(
    "/{endpoint_id}",
    status_code=204,
    operation_id="delete_webhook_endpoint",
    responses=problems(404),
)
def delete_endpoint(endpoint_id: str, p: Owner, refill: Service) -> Response:
    notifications.delete_endpoint(
        refill.db, agency_id=p.agency_id, endpoint_id=endpoint_id, actor=p.actor
    )
    return Response(status_code=204)


@router.post(
    "/{endpoint_id}/rotate-secret",
    operation_id="rotate_webhook_secret",
    responses=problems(404),
)
def rotate_secret(endpoint_id: str, p: Owner, refill: Service) -> n.EndpointWithSecretOut:
    """A new secret, shown only now; for 24 hours deliveries are signed with both."""
    endpoint, secret = notifications.rotate_secret(
        refill.db, refill.keyring, agency_id=p.agency_id, endpoint_id=endpoint_id, actor=p.actor
    )
    return n.EndpointWithSecretOut.with_secret(endpoint, secret)


@router.post(
    "/{endpoint_id}/test",
    status_code=202,
    operation_id="test_webhook_endpoint",
    responses=problems(404),
)
def send_test(endpoint_id: str, p: Owner, refill: Service) -> n.DeliveryOut:
    """Deliver a ``ping`` event to this endpoint now; follow it in its deliveries."""
    delivery = notifications.send_test(refill.db, agency_id=p.agency_id, endpoint_id=endpoint_id)
    return n.DeliveryOut.of(delivery)


@router.get(
    "/{endpoint_id}/deliveries",
    operation_id="list_webhook_deliveries",
    responses=problems(404, 422),
)
def list_deliveries(
    endpoint_id: str, p: Owner, refill: Service, limit: Limit = 50, cursor: Cursor = None
) -> s.ListOf[n.DeliveryOut]:
    page = notifications.list_deliveries(
        refill.db, agency_id=p.agency_id, endpoint_id=endpoint_id, limit=limit, cursor=cursor
    )
    return s.ListOf[n.DeliveryOut](
        data=[n.DeliveryOut.of(d) for d in page.data], next_cursor=page.next_cursor
    )


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/retry",
    status_code=202,
    operation_id="retry_webhook_delivery",
    responses=problems(404),
)
def retry_delivery(endpoint_id: str, delivery_id: str, p: Owner, refill: Service) -> n.DeliveryOut:
    """Deliver again now; the event keeps its ``webhook-id``."""
    delivery = notifications.retry_delivery(
        refill.db, agency_id=p.agency_id, endpoint_id=endpoint_id, delivery_id=delivery_id
    )
    return n.DeliveryOut.of(delivery)
