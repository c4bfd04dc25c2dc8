"""/v1/agency, /v1/audit-log and /v1/transactions: the agency, its history and ledger."""

from __future__ import annotations

from fastapi import APIRouter

from refill import services
from refill.api import notification_schemas as n
from refill.api import schemas as s
from refill.api.deps import Cursor, Limit, Owner, Service
from refill.api.problems import problems

router = APIRouter(tags=["agency"], responses=problems(401, 403, 413, 422))


@router.get("/v1/agency", operation_id="get_agency")
def get_agency(p: Owner, refill: Service) -> n.AgencyOut:
    return n.AgencyOut.of(services.get_agency(refill.db, p.agency_id))


@router.patch("/v1/agency", operation_id="update_agency", responses=problems(422))
def update_agency(body: n.AgencyUpdate, p: Owner, refill: Service) -> n.AgencyOut:
    """Fields left out keep their value. Billing details print on receipts issued from now
    on; those already issued keep what they said."""
    agency = services.update_agency(
        refill.db,
        agency_id=p.agency_id,
        change=services.AgencyChange(
            timezone=body.timezone,
            billing_emails=body.billing_emails,
            billing_address=body.billing_address,
            tax_id=body.tax_id,
        ),
        actor=p.actor,
    )
    return n.AgencyOut.of(agency)


@router.get("/v1/audit-log", operation_id="list_audit_log", responses=problems(422))
def list_audit_log(
    p: Owner, refill: Service, limit: Limit = 50, cursor: Cursor = None
) -> s.ListOf[s.AuditOut]:
    page = services.list_audit_log(refill.db, agency_id=p.agency_id, limit=limit, cursor=cursor)
    return s.ListOf[s.AuditOut](
        data=[s.AuditOut.of(e) for e in page.data], next_cursor=page.next_cursor
    )


@router.get("/v1/transactions", operation_id="list_transactions", responses=problems(422))
def list_transactions(
    p: Owner, refill: Service, limit: Limit = 50, cursor: Cursor = None
) -> s.ListOf[s.TransferOut]:
    page = services.list_transfers(refill.db, agency_id=p.agency_id, limit=limit, cursor=cursor)
    return s.ListOf[s.TransferOut](
        data=[s.TransferOut.of(t, p.currency) for t in page.data], next_cursor=page.next_cursor
    )
