"""/v1/reloads: reload attempts, automatic and manual."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from refill import services
from refill.api import notification_schemas as n
from refill.api import schemas as s
from refill.api.agency import CURSOR_NOTE, CsvResponse, From, To, csv_download, csv_responses
from refill.api.deps import Cursor, Limit, Owner, Service
from refill.api.problems import problems
from refill.reload.states import AttemptStatus, Trigger
from refill.services import exports, receipts
from refill.services.history_filters import reload_filter

router = APIRouter(prefix="/v1/reloads", tags=["reloads"], responses=problems(401, 403, 413, 422))


TriggerFilter = Annotated[
    str | None,
    Query(
        alias="trigger",
        description="Only automatic or only manual reloads; both when absent.",
        json_schema_extra={"enum": [t.value for t in Trigger]},
    ),
]
Statuses = Annotated[
    list[str],
    Query(
        alias="status",
        default_factory=list,
        description="Only these statuses (repeat the parameter for several); all when absent.",
        json_schema_extra={"items": {"type": "string", "enum": [a.value for a in AttemptStatus]}},
    ),
]


@router.get(
    "",
    operation_id="list_reloads",
    responses=problems(422),
    description="The billing history: every reload attempt, newest first." + CURSOR_NOTE,
)
def list_reloads(
    p: Owner,
    refill: Service,
    status: Statuses,
    since: From = None,
    until: To = None,
    trigger: TriggerFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> s.ListOf[s.ReloadOut]:
    matching = reload_filter(
        refill.db,
        agency_id=p.agency_id,
        since=since,
        until=until,
        trigger=trigger,
        statuses=status,
    )
    page = services.list_reloads(
        refill.db, agency_id=p.agency_id, limit=limit, cursor=cursor, matching=matching
    )
    return s.ListOf[s.ReloadOut](
        data=[s.ReloadOut.of(a) for a in page.data], next_cursor=page.next_cursor
    )


@router.get(
    ".csv",
    operation_id="export_reloads",
    response_class=CsvResponse,
    responses=csv_responses("The reload attempts that match"),
)
def export_reloads(
    p: Owner,
    refill: Service,
    status: Statuses,
    since: From = None,
    until: To = None,
    trigger: TriggerFilter = None,
) -> CsvResponse:
    """Every reload attempt that matches the filters (no pagination), newest first: id,
    created_at (UTC), created_at_local (the agency's time zone), trigger, status, amount,
    currency, card (brand and last four), failure_code, failure_message, receipt_number
    (R-000001, for a reload that succeeded). A text cell that starts like a spreadsheet
    formula (= + - @, tab, carriage return) starts with a quote (')."""
    matching = reload_filter(
        refill.db,
        agency_id=p.agency_id,
        since=since,
        until=until,
        trigger=trigger,
        statuses=status,
    )
    return csv_download(exports.export_reloads(refill.db, agency_id=p.agency_id, matching=matching))


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
