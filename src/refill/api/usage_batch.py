"""POST /v1/usage/batch: up to 1,000 usage events in one request and one transaction."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from refill import metrics
from refill.api import schemas as s
from refill.api.deps import Anyone, Service, for_subteam
from refill.api.problems import problems
from refill.errors import RefillError
from refill.money import format_amount, parse_amount
from refill.services.usage_batch import (
    MAX_EVENTS,
    EventResult,
    EventStatus,
    UsageEvent,
    record_usage_batch,
    refused,
)

router = APIRouter(tags=["usage"], responses=problems(401, 403, 413, 422))


class UsageBatchCreate(s.Body):
    events: list[s.UsageCreate] = Field(
        min_length=1,
        max_length=MAX_EVENTS,
        description=f"1 to {MAX_EVENTS} usage events, applied in this order, each as "
        "POST /v1/usage would apply it. A batch that is not valid JSON or breaks this schema "
        "is refused whole (422) and changes nothing.",
    )


class UsageBatchResult(BaseModel):
    reference: str
    status: Literal["created", "duplicate", "refused"] = Field(
        description="created: recorded now; duplicate: the same usage was recorded before "
        "under this reference (also earlier in this batch); refused: nothing recorded."
    )
    code: str | None = Field(
        default=None, description="refused: the code POST /v1/usage would answer."
    )
    detail: str | None = Field(default=None, description="refused: why, in words.")
    transfer_id: str | None = Field(default=None, description="created or duplicate.")


class UsageBatchOut(BaseModel):
    results: list[UsageBatchResult] = Field(description="One per event, in their order.")
    balance: str = Field(description="The wallet's balance after the batch.")
    available: str = Field(description="balance - held, after the batch.")
    currency: str


@router.post("/v1/usage/batch", operation_id="record_usage_batch", responses=problems(400, 404))
def record_usage_batch_route(body: UsageBatchCreate, p: Anyone, refill: Service) -> UsageBatchOut:
    """Record many usage events at once: each is applied in order and on its own (one
    refused event undoes and blocks nothing), with the durable write paid once. The reload
    trigger is evaluated once, after the last event."""
    events: list[UsageEvent | EventResult] = []
    for event in body.events:
        try:
            for_subteam(p, event.subteam_id)
            amount = parse_amount(event.amount)
        except RefillError as exc:
            events.append(refused(event.reference, exc))
            continue
        events.append(
            UsageEvent(
                subteam_id=event.subteam_id,
                amount=amount,
                reference=event.reference,
                description=event.description,
                hold_id=event.hold_id,
                occurred_at=event.occurred_at,
            )
        )
    outcome = record_usage_batch(
        refill.db,
        agency_id=p.agency_id,
        events=events,
        backfill=refill.settings.backfill_window,
    )
    metrics.count_usage(
        "batch",
        created=sum(r.status is EventStatus.CREATED for r in outcome.results),
        duplicate=sum(r.status is EventStatus.DUPLICATE for r in outcome.results),
        refused_codes=[r.code for r in outcome.results if r.code is not None],
    )
    return UsageBatchOut(
        results=[
            UsageBatchResult(
                reference=r.reference,
                status=r.status.value,
                code=r.code,
                detail=None if r.error is None else r.error.message,
                transfer_id=None if r.transfer_id is None else f"txn_{r.transfer_id}",
            )
            for r in outcome.results
        ],
        balance=format_amount(outcome.balance, outcome.currency),
        available=format_amount(outcome.available, outcome.currency),
        currency=outcome.currency,
    )
