"""CSV downloads of the billing history and the ledger, for any member of the agency (they
only read). The same filters and the same file as the API's ``/v1/reloads.csv`` and
``/v1/transactions.csv``; bad filter input is an error page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from refill.errors import RefillError
from refill.portal.common import PortalRefused
from refill.portal.security import Signed
from refill.services import exports
from refill.services.history_filters import reload_filter, transfer_filter
from refill.webctx import Service

router = APIRouter(prefix="/portal", include_in_schema=False)

F = TypeVar("F")
From = Annotated[str | None, Query(alias="from")]
To = Annotated[str | None, Query(alias="to")]
Many = Annotated[list[str], Query(default_factory=list)]


def _filter(parse: Callable[[], F]) -> F:
    """The filter the form asked for, or the reason it cannot be, as a page."""
    try:
        return parse()
    except RefillError as exc:
        raise PortalRefused(exc.status, exc.message) from None


def _download(export: exports.Export) -> StreamingResponse:
    return StreamingResponse(export.chunks, headers=export.headers)


@router.get("/team/billing/history.csv")
def billing_history_csv(
    session: Signed,
    refill: Service,
    status: Many,
    since: From = None,
    until: To = None,
    trigger: str | None = None,
) -> StreamingResponse:
    matching = _filter(
        lambda: reload_filter(
            refill.db,
            agency_id=session.agency_id,
            since=since,
            until=until,
            trigger=trigger,
            statuses=status,
        )
    )
    return _download(
        exports.export_reloads(refill.db, agency_id=session.agency_id, matching=matching)
    )


@router.get("/team/billing/ledger.csv")
def ledger_csv(
    session: Signed,
    refill: Service,
    kind: Many,
    since: From = None,
    until: To = None,
    subteam_id: str | None = None,
) -> StreamingResponse:
    matching = _filter(
        lambda: transfer_filter(
            refill.db,
            agency_id=session.agency_id,
            since=since,
            until=until,
            kinds=kind,
            subteam_id=subteam_id,
        )
    )
    return _download(
        exports.export_transfers(refill.db, agency_id=session.agency_id, matching=matching)
    )
