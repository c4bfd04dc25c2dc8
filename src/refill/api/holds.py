"""/v1/holds: the credits live calls hold (placed by POST /v1/calls/authorize with hold)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from refill.api import schemas as s
from refill.api.deps import Anyone, Cursor, Limit, Service
from refill.api.problems import problems
from refill.money import format_amount
from refill.services import holds as hold_service

router = APIRouter(prefix="/v1/holds", tags=["usage"], responses=problems(401, 403, 422))


class HoldOut(BaseModel):
    id: str
    subteam_id: str
    amount: str
    currency: str
    status: str = Field(description="active, settled, released or expired.")
    created_at: datetime
    expires_at: datetime
    closed_at: datetime | None = Field(description="When it was settled, released or expired.")
    transfer_id: str | None = Field(description="The usage that settled it.")

    @classmethod
    def of(cls, h: hold_service.Hold, currency: str) -> HoldOut:
        return cls(
            id=h.id,
            subteam_id=h.subteam_id,
            amount=format_amount(h.amount, currency),
            currency=currency,
            status=h.status,
            created_at=h.created_at,
            expires_at=h.expires_at,
            closed_at=h.closed_at,
            transfer_id=None if h.transfer_id is None else f"txn_{h.transfer_id}",
        )


@router.get("", operation_id="list_holds")
def list_holds(
    p: Anyone, refill: Service, limit: Limit = 50, cursor: Cursor = None
) -> s.ListOf[HoldOut]:
    """Active holds, newest first (a subteam key sees its own subteam's). A hold past its
    expiry is released by the worker within seconds."""
    page = hold_service.list_holds(
        refill.db, agency_id=p.agency_id, subteam_id=p.subteam_id, limit=limit, cursor=cursor
    )
    return s.ListOf[HoldOut](
        data=[HoldOut.of(h, p.currency) for h in page.data], next_cursor=page.next_cursor
    )


@router.delete("/{hold_id}", operation_id="release_hold", responses=problems(404))
def release_hold(hold_id: str, p: Anyone, refill: Service) -> HoldOut:
    """Give a live call's held credits back (the call did not happen). A hold that has
    already ended is answered as it is, unchanged."""
    hold = hold_service.release_hold(
        refill.db, agency_id=p.agency_id, hold_id=hold_id, subteam_id=p.subteam_id
    )
    return HoldOut.of(hold, p.currency)
