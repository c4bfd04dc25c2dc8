"""/v1/events: what happened to the agency's wallet, newest first (kept 90 days)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from refill.api import notification_schemas as n
from refill.api import schemas as s
from refill.api.deps import Cursor, Limit, Owner, Service
from refill.api.problems import problems
from refill.errors import ValidationFailed
from refill.notify.events import EventType
from refill.services import notifications

router = APIRouter(prefix="/v1/events", tags=["events"], responses=problems(401, 403, 413, 422))

TypeFilter = Annotated[
    str | None, Query(max_length=64, description=f"Only this type: {n.EVENT_TYPES}.")
]


@router.get("", operation_id="list_events", responses=problems(422))
def list_events(
    p: Owner, refill: Service, type: TypeFilter = None, limit: Limit = 50, cursor: Cursor = None
) -> s.ListOf[n.EventOut]:
    if type is not None and type not in {t.value for t in EventType}:
        raise ValidationFailed(
            f"unknown event type {type!r}", code="unknown_event_type", field="type"
        )
    page = notifications.list_events(
        refill.db, agency_id=p.agency_id, type_=type, limit=limit, cursor=cursor
    )
    return s.ListOf[n.EventOut](
        data=[n.EventOut.of(e) for e in page.data], next_cursor=page.next_cursor
    )


@router.get("/{event_id}", operation_id="get_event", responses=problems(404))
def get_event(event_id: str, p: Owner, refill: Service) -> n.EventOut:
    return n.EventOut.of(
        notifications.get_event(refill.db, agency_id=p.agency_id, event_id=event_id)
    )
