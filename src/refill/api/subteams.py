"""/v1/subteams: the agency's subteams (create, list, rename, pause, limit, archive, restore),
their usage over time, and keys that act for one of them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, StrictBool

from refill import services
from refill.api import schemas as s
from refill.api.deps import Cursor, Limit, Owner, Service
from refill.api.problems import problems
from refill.errors import ValidationFailed, refuse_all
from refill.money import format_amount, parse_amount
from refill.reload.settings import UNSET
from refill.services import subteam_usage
from refill.services import subteams as subteam_service

router = APIRouter(prefix="/v1/subteams", tags=["subteams"], responses=problems(401, 403, 413, 422))


class SubteamUpdate(s.Body):
    """Fields left out keep their value; an empty body changes nothing. A limit of null
    removes it."""

    name: s.Text | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Unique in the agency whatever its case (archived subteams count).",
    )
    archived: StrictBool | None = Field(
        default=None,
        description="true archives: the subteam's keys are revoked, its live calls' holds "
        "released, its usage and calls refused (subteam_archived). false restores it; revoked "
        "keys stay revoked.",
    )
    paused: StrictBool | None = Field(
        default=None,
        description="true pauses: new calls are answered allowed: false (subteam_paused) and "
        "usage is refused with 403 subteam_paused; a call already holding credits still "
        "settles. false resumes.",
    )
    daily_spend_limit: s.Text | None = s.amount_field(
        default=None,
        title="Most the subteam may spend per day in the agency's time zone (null: none)",
    )
    monthly_spend_limit: s.Text | None = s.amount_field(
        default=None,
        title="Most the subteam may spend per calendar month, agency time zone (null: none)",
    )


def _change(given: SubteamUpdate) -> subteam_service.SubteamChange:
    limits: dict[str, Any] = {}
    wrong: list[ValidationFailed] = []
    for name in ("daily_spend_limit", "monthly_spend_limit"):
        if name not in given.model_fields_set:
            limits[name] = UNSET
            continue
        text = getattr(given, name)
        try:
            limits[name] = None if text is None else parse_amount(text, field=name)
            subteam_service.check_limit(limits[name], name)
        except ValidationFailed as exc:
            wrong.append(exc)
    if wrong:
        refuse_all(wrong)
    return subteam_service.SubteamChange(
        name=given.name, archived=given.archived, paused=given.paused, **limits
    )


@router.post("", status_code=201, operation_id="create_subteam", responses=problems(409, 422))
def create_subteam(body: s.SubteamCreate, p: Owner, refill: Service) -> s.SubteamOut:
    subteam = services.create_subteam(
        refill.db, agency_id=p.agency_id, name=body.name, actor=p.actor
    )
    return s.SubteamOut.of(subteam, p.currency)


@router.get("", operation_id="list_subteams", responses=problems(422))
def list_subteams(
    p: Owner,
    refill: Service,
    limit: Limit = 50,
    cursor: Cursor = None,
    include_archived: Annotated[
        bool, Query(description="Archived subteams too (left out by default).")
    ] = False,
) -> s.ListOf[s.SubteamOut]:
    """Oldest first, each with its pause, limits, spend today and this month (agency time
    zone) and the credits its live calls hold."""
    page = services.list_subteams(
        refill.db,
        agency_id=p.agency_id,
        limit=limit,
        cursor=cursor,
        include_archived=include_archived,
    )
    return s.ListOf[s.SubteamOut](
        data=[s.SubteamOut.of(t, p.currency) for t in page.data], next_cursor=page.next_cursor
    )


@router.get("/{subteam_id}", operation_id="get_subteam", responses=problems(404))
def get_subteam(subteam_id: str, p: Owner, refill: Service) -> s.SubteamOut:
    subteam = subteam_service.read_subteam(refill.db, agency_id=p.agency_id, subteam_id=subteam_id)
    return s.SubteamOut.of(subteam, p.currency)


@router.patch("/{subteam_id}", operation_id="update_subteam", responses=problems(404, 409))
def update_subteam(
    subteam_id: str, p: Owner, refill: Service, body: SubteamUpdate | None = None
) -> s.SubteamOut:
    """Rename, pause or resume, set or remove spend limits, archive or restore; each change
    is in the audit log."""
    subteam = subteam_service.update_subteam(
        refill.db,
        agency_id=p.agency_id,
        subteam_id=subteam_id,
        change=_change(body or SubteamUpdate()),
        actor=p.actor,
    )
    return s.SubteamOut.of(subteam, p.currency)


class UsagePointOut(BaseModel):
    start: datetime = Field(description="The local hour's or day's start (UTC).")
    spent: str
    events: int = Field(description="Usage events (calls) recorded in it.")


class UsageSeriesOut(BaseModel):
    subteam_id: str
    granularity: str
    timezone: str = Field(description="The agency's: hours and days are counted in it.")
    currency: str
    start: datetime
    end: datetime
    data: list[UsagePointOut]


@router.get("/{subteam_id}/usage", operation_id="get_subteam_usage", responses=problems(404, 422))
def get_subteam_usage(
    subteam_id: str,
    p: Owner,
    refill: Service,
    since: Annotated[
        str | None,
        Query(alias="from", description="ISO date or date-time (default: 24 h or 30 days ago)."),
    ] = None,
    until: Annotated[
        str | None, Query(alias="to", description="ISO date or date-time (default: now).")
    ] = None,
    granularity: Annotated[str, Query(description="hour (at most 31 days) or day (366).")] = "day",
) -> UsageSeriesOut:
    """What the subteam spent and how many usage events, per hour or per day of the
    agency's time zone (every bucket of the range, empty ones included)."""
    series = subteam_usage.usage_series(
        refill.db,
        agency_id=p.agency_id,
        subteam_id=subteam_id,
        since=since,
        until=until,
        granularity=granularity,
    )
    return UsageSeriesOut(
        subteam_id=series.subteam_id,
        granularity=series.granularity.value,
        timezone=series.timezone,
        currency=p.currency,
        start=series.start,
        end=series.end,
        data=[
            UsagePointOut(
                start=point.start, spent=format_amount(point.spent, p.currency), events=point.events
            )
            for point in series.points
        ],
    )


@router.post(
    "/{subteam_id}/keys",
    status_code=201,
    operation_id="create_subteam_key",
    responses=problems(404, 422),
)
def create_subteam_key(
    subteam_id: str, p: Owner, refill: Service, body: s.SubteamKeyCreate | None = None
) -> s.KeyOut:
    key = services.create_subteam_key(
        refill.db,
        agency_id=p.agency_id,
        subteam_id=subteam_id,
        name=body.name if body else None,
        actor=p.actor,
    )
    return s.KeyOut(id=key.id, api_key=key.secret)
