"""/v1/subteams: the agency's subteams, and keys that act for one of them."""

from __future__ import annotations

from fastapi import APIRouter

from refill import services
from refill.api import schemas as s
from refill.api.deps import Cursor, Limit, Owner, Service
from refill.api.problems import problems

router = APIRouter(prefix="/v1/subteams", tags=["subteams"], responses=problems(401, 403, 413, 422))


@router.post("", status_code=201, operation_id="create_subteam", responses=problems(409, 422))
def create_subteam(body: s.SubteamCreate, p: Owner, refill: Service) -> s.SubteamOut:
    subteam = services.create_subteam(refill.db, agency_id=p.agency_id, name=body.name)
    return s.SubteamOut.of(subteam)


@router.get("", operation_id="list_subteams", responses=problems(422))
def list_subteams(
    p: Owner, refill: Service, limit: Limit = 50, cursor: Cursor = None
) -> s.ListOf[s.SubteamOut]:
    page = services.list_subteams(refill.db, agency_id=p.agency_id, limit=limit, cursor=cursor)
    return s.ListOf[s.SubteamOut](
        data=[s.SubteamOut.of(t) for t in page.data], next_cursor=page.next_cursor
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
