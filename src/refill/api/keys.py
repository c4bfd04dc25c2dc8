"""/v1/keys: the agency's API keys, never their secrets after creation."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter

from refill import services
from refill.api import schemas as s
from refill.api.deps import Cursor, Limit, Owner, Service
from refill.api.problems import problems

router = APIRouter(prefix="/v1/keys", tags=["keys"], responses=problems(401, 403, 413, 422))


@router.get("", operation_id="list_keys", responses=problems(422))
def list_keys(
    p: Owner, refill: Service, limit: Limit = 50, cursor: Cursor = None
) -> s.ListOf[s.ApiKeyOut]:
    page = services.list_keys(refill.db, agency_id=p.agency_id, limit=limit, cursor=cursor)
    return s.ListOf[s.ApiKeyOut](
        data=[s.ApiKeyOut.of(k) for k in page.data], next_cursor=page.next_cursor
    )


@router.post("", status_code=201, operation_id="create_key", responses=problems(404, 422))
def create_key(body: s.KeyCreate, p: Owner, refill: Service) -> s.KeyOut:
    key = services.create_key(
        refill.db, agency_id=p.agency_id, subteam_id=body.subteam_id, name=body.name, actor=p.actor
    )
    return s.KeyOut(id=key.id, api_key=key.secret)


@router.post("/{key_id}/revoke", operation_id="revoke_key", responses=problems(404, 409))
def revoke_key(key_id: str, p: Owner, refill: Service) -> s.ApiKeyOut:
    key = services.revoke_key(refill.db, agency_id=p.agency_id, key_id=key_id, actor=p.actor)
    return s.ApiKeyOut.of(key)


@router.post(
    "/{key_id}/roll", status_code=201, operation_id="roll_key", responses=problems(404, 409, 422)
)
def roll_key(
    key_id: str, p: Owner, refill: Service, body: s.KeyRoll | None = None
) -> s.RolledKeyOut:
    issued, old = services.roll_key(
        refill.db,
        agency_id=p.agency_id,
        key_id=key_id,
        expires_in=timedelta(seconds=body.expires_in_seconds if body else 0),
        actor=p.actor,
    )
    return s.RolledKeyOut(id=issued.id, api_key=issued.secret, previous=s.ApiKeyOut.of(old))
