"""POST /v1/wallet/auto-reload/preview: a backtest of proposed settings on the wallet's own
recent usage, before saving them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field, StrictInt

from refill.api import schemas as s
from refill.api.deps import Owner, Service
from refill.api.problems import problems
from refill.money import format_amount
from refill.reload.replay import Replay
from refill.reload.settings import change_from_text
from refill.services import preview as previews

router = APIRouter(prefix="/v1/wallet", tags=["wallet"], responses=problems(401, 403, 413, 422))


class PreviewRequest(s.Body):
    """Left-out fields take the saved settings' values; checked as saving them would be."""

    mode: Literal["fixed", "target"] | None = None
    threshold: s.Text | None = s.amount_field(default=None)
    reload_amount: s.Text | None = s.amount_field(default=None)
    target_balance: s.Text | None = s.amount_field(default=None)
    monthly_cap: s.Text | None = s.amount_field(default=None)
    daily_limit: StrictInt | None = Field(default=None, ge=1, le=50)
    days: StrictInt | None = Field(
        default=None, ge=1, le=previews.MAX_DAYS, description="How far back (default 30)."
    )


class ReplayPointOut(BaseModel):
    at: datetime
    balance: str


class ReplayBlockOut(BaseModel):
    rail: str = Field(description="daily_limit or monthly_cap")
    at: datetime = Field(description="When the rail first stopped a reload.")
    until: datetime


class OutcomeOut(BaseModel):
    reloads: int
    charged: str
    lowest_balance: str
    hours_without_credits: float
    refused_calls: int = Field(description="Recorded usage the replayed wallet could not cover.")
    blocked_by_rail: ReplayBlockOut | None
    series: list[ReplayPointOut] = Field(description="The balance every hour, and at the end.")

    @classmethod
    def of(cls, r: Replay, currency: str) -> OutcomeOut:
        block = r.blocked_by_rail
        return cls(
            reloads=len(r.reloads),
            charged=format_amount(r.charged, currency),
            lowest_balance=format_amount(r.lowest_balance, currency),
            hours_without_credits=r.hours_without_credits,
            refused_calls=r.refused_calls,
            blocked_by_rail=None
            if block is None
            else ReplayBlockOut(rail=block.rail, at=block.at, until=block.until),
            series=[
                ReplayPointOut(at=at, balance=format_amount(b, currency)) for at, b in r.series
            ],
        )


class PreviewOut(OutcomeOut):
    days: int
    start: datetime
    end: datetime
    opening_balance: str = Field(
        description="The wallet's balance at `start`, where both replays begin (`start` is "
        "when the wallet opened if it is younger than `days`)."
    )
    note: str
    as_was: OutcomeOut = Field(
        description="The same days with the settings that were in effect then (from the "
        "audit log): what really happened."
    )


@router.post(
    "/auto-reload/preview", operation_id="preview_auto_reload", responses=problems(404, 422)
)
def preview_auto_reload(body: PreviewRequest, p: Owner, refill: Service) -> PreviewOut:
    """Replay the last `days` of the wallet's usage against these settings, as if they had
    been in effect (and on) from the start, beside what the settings of the time did.
    Changes nothing."""
    given = {name: getattr(body, name) for name in body.model_fields_set if name != "days"}
    result = previews.preview(
        refill.db,
        refill.policy,
        agency_id=p.agency_id,
        currency=p.currency,
        change=change_from_text(given),
        days=body.days,
    )
    outcome = OutcomeOut.of(result.proposed, p.currency)
    return PreviewOut(
        **outcome.model_dump(),
        days=result.days,
        start=result.start,
        end=result.end,
        opening_balance=format_amount(result.opening_balance, p.currency),
        note=result.note,
        as_was=OutcomeOut.of(result.as_was, p.currency),
    )
