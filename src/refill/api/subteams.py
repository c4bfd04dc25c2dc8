"""/v1/subteams: the agency's subteams (create, list, rename, archive, restore), and keys
that act for one of them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field, StrictBool

from refill import services
from refill.api import schemas as s
from refill.api.deps import Cursor, Limit, Owner, Service
from refill.api.problems import problems
from refill.services import subteams as subteam_service

router = APIRouter(prefix="/v1/subteams", tags=["subteams"], responses=problems(401, 403, 413, 422))


class SubteamUpdate(s.Body):
    """Fields left out (or null) keep their value; an empty body changes nothing."""

    name: s.Text | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Unique in the agency whatever its case (archived subteams count).",
    )
    archived: StrictBool | None = Field(
        default=None,
        description="true archives: the subteam's keys are revoked, its usage and calls "
        "refused (subteam_archived). false restores it; revoked keys stay revoked.",
    )


@router.post("", status_code=201, operation_id="create_subteam", responses=problems(409, 422))
def create_subteam(body: s.SubteamCreate, p: Owner, refill: Service) -> s.SubteamOut:
    subteam = services.create_subteam(
        refill.db, agency_id=p.agency_id, name=body.name, actor=p.actor
    )
    return s.SubteamOut.of(subteam)


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
    page = services.list_subteams(
        refill.db,
        agency_id=p.agency_id,
        limit=limit,
        cursor=cursor,
        include_archived=include_archived,
    )
    return s.ListOf[s.SubteamOut](
        data=[s.SubteamOut.of(t) for t in page.data], next_cursor=page.next_cursor
    )


@router.get("/{subteam_id}", operation_id="get_subteam", responses=problems(404))
def get_subteam(subteam_id: str, p: Owner, refill: Service) -> s.SubteamOut:
    subteam = subteam_service.read_subteam(refill.db, agency_id=p.agency_id, subteam_id=subteam_id)
    return s.SubteamOut.of(subteam)


@router.patch("/{subteam_id}", operation_id="update_subteam", responses=problems(404, 409))
def update_subteam(
    subteam_id: str, p: Owner, refill: Service, body: SubteamUpdate | None = None
) -> s.SubteamOut:
    """Rename, archive or restore; each change is in the audit log."""
    given = body or SubteamUpdate()
    subteam = subteam_service.update_subteam(
        refill.db,
        agency_id=p.agency_id,
        subteam_id=subteam_id,
        change=subteam_service.SubteamChange(name=given.name, archived=given.archived),
        actor=p.actor,
    )
    return s.SubteamOut.of(subteam)


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
