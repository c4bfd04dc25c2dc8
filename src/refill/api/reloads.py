"""/v1/reloads: reload attempts, automatic and manual."""

from __future__ import annotations

from fastapi import APIRouter

from refill import services
from refill.api import notification_schemas as n
from refill.api import schemas as s
from refill.api.deps import Cursor, Limit, Owner, Service
from refill.api.problems import problems
from refill.services import receipts

router = APIRouter(prefix="/v1/reloads", tags=["reloads"], responses=problems(401, 403, 413, 422))


@router.get("", operation_id="list_reloads", responses=problems(422))
def list_reloads(
    p: Owner, refill: Service, limit: Limit = 50, cursor: Cursor = None
) -> s.ListOf[s.ReloadOut]:
    page = services.list_reloads(refill.db, agency_id=p.agency_id, limit=limit, cursor=cursor)
    return s.ListOf[s.ReloadOut](
        data=[s.ReloadOut.of(a) for a in page.data], next_cursor=page.next_cursor
    )


@router.get("/{reload_id}", operation_id="get_reload", responses=problems(404))
def get_reload(reload_id: str, p: Owner, refill: Service) -> s.ReloadOut:
    attempt = services.get_reload(refill.db, agency_id=p.agency_id, attempt_id=reload_id)
    return s.ReloadOut.of(attempt)


@router.get("/{reload_id}/receipt", operation_id="get_receipt", responses=problems(404))
def get_receipt(reload_id: str, p: Owner, refill: Service) -> n.ReceiptOut:
    """The receipt of a reload that succeeded (404 ``receipt_not_found`` otherwise), as it
    was issued: later changes to the card or the agency do not rewrite it."""
    return n.ReceiptOut.of(
        receipts.get_receipt(refill.db, agency_id=p.agency_id, reload_id=reload_id)
    )


@router.post("/{reload_id}/cancel", operation_id="cancel_reload", responses=problems(404, 409, 503))
def cancel_reload(reload_id: str, p: Owner, refill: Service) -> s.ReloadOut:
    """Cancel a reload that waits (pending, or for 3-D Secure: canceled at the gateway
    first; 503 ``cancel_unconfirmed`` when the gateway cannot confirm it)."""
    attempt = services.cancel_reload(
        refill.db, refill.gateway, refill.policy, agency_id=p.agency_id, attempt_id=reload_id
    )
    return s.ReloadOut.of(attempt)
