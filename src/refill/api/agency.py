"""/v1/agency, /v1/audit-log and /v1/transactions: the agency, its history and ledger."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from refill import services
from refill.api import notification_schemas as n
from refill.api import schemas as s
from refill.api.deps import Cursor, Limit, Owner, Service
from refill.api.problems import problems
from refill.ledger import TransferKind
from refill.money import parse_amount
from refill.services import exports
from refill.services.history_filters import MAX_MOMENT_LENGTH, transfer_filter

router = APIRouter(tags=["agency"], responses=problems(401, 403, 413, 422))

_MOMENT = (
    "ISO 8601 date (midnight in the agency's time zone) or date-time (in the agency's time "
    "zone when it has no offset)"
)
# Checked by the service (422 invalid_date), declared here for generated clients.
From = Annotated[
    str | None,
    Query(
        alias="from",
        description=f"Created at or after: {_MOMENT}.",
        json_schema_extra={"maxLength": MAX_MOMENT_LENGTH, "examples": ["2026-01-01"]},
    ),
]
To = Annotated[
    str | None,
    Query(
        alias="to",
        description=f"Created before (exclusive): {_MOMENT}.",
        json_schema_extra={"maxLength": MAX_MOMENT_LENGTH, "examples": ["2026-02-01"]},
    ),
]
Kinds = Annotated[
    list[str],
    Query(
        alias="kind",
        default_factory=list,
        description="Only these kinds (repeat the parameter for several); all when absent.",
        json_schema_extra={"items": {"type": "string", "enum": [k.value for k in TransferKind]}},
    ),
]
SubteamFilter = Annotated[
    str | None,
    Query(description="Only the usage of this subteam (404 subteam_not_found if not yours)."),
]
CURSOR_NOTE = (
    " Filters combine; with a cursor, pass the same filters again: the cursor is a "
    "position in the list they select."
)


class CsvResponse(StreamingResponse):
    # What OpenAPI names; the response itself says text/csv; charset=utf-8 (Export.headers).
    media_type = "text/csv"


def csv_responses(what: str) -> dict[int | str, dict[str, Any]]:
    """The CSV answer an export declares, with its problems."""
    ok = {
        "description": f"{what} as CSV (UTF-8, a header row, CRLF line ends), streamed.",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
    return {200: ok, **problems(404, 422)}


def csv_download(export: exports.Export) -> CsvResponse:
    return CsvResponse(export.chunks, headers=export.headers)


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
            min_call_balance=None
            if body.min_call_balance is None
            else parse_amount(body.min_call_balance, field="min_call_balance"),
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


@router.get(
    "/v1/transactions",
    operation_id="list_transactions",
    responses=problems(404, 422),
    description="The wallet's ledger, newest first." + CURSOR_NOTE,
)
def list_transactions(
    p: Owner,
    refill: Service,
    kind: Kinds,
    since: From = None,
    until: To = None,
    subteam_id: SubteamFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> s.ListOf[s.TransferOut]:
    matching = transfer_filter(
        refill.db,
        agency_id=p.agency_id,
        since=since,
        until=until,
        kinds=kind,
        subteam_id=subteam_id,
    )
    page = services.list_transfers(
        refill.db, agency_id=p.agency_id, limit=limit, cursor=cursor, matching=matching
    )
    return s.ListOf[s.TransferOut](
        data=[s.TransferOut.of(t, p.currency) for t in page.data], next_cursor=page.next_cursor
    )


@router.get(
    "/v1/transactions.csv",
    operation_id="export_transactions",
    response_class=CsvResponse,
    responses=csv_responses("The transfers that match"),
)
def export_transactions(
    p: Owner,
    refill: Service,
    kind: Kinds,
    since: From = None,
    until: To = None,
    subteam_id: SubteamFilter = None,
) -> CsvResponse:
    """Every transfer that matches the filters (no pagination), newest first: id,
    created_at (UTC), created_at_local (the agency's time zone), kind, amount (signed: a
    debit of the wallet is negative), currency, balance_after, subteam (its name),
    reference, description. A text cell that starts like a spreadsheet formula (= + - @,
    tab, carriage return) starts with a quote (')."""
    matching = transfer_filter(
        refill.db,
        agency_id=p.agency_id,
        since=since,
        until=until,
        kinds=kind,
        subteam_id=subteam_id,
    )
    return csv_download(
        exports.export_transfers(refill.db, agency_id=p.agency_id, matching=matching)
    )
