"""/v1/wallet/forecast and /v1/wallet/auto-reload/recommendation: the wallet's burn rate and
runway, and auto-reload settings fitted to its own usage (``services.forecast``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from refill.api import schemas as s
from refill.api.deps import Owner, Service
from refill.api.problems import problems
from refill.reload.states import Mode
from refill.services import forecast as forecasting
from refill.services import recommendation as recommending

router = APIRouter(prefix="/v1/wallet", tags=["wallet"], responses=problems(401, 403, 413, 422))


class ForecastOut(BaseModel):
    basis_days: float = Field(
        description="Days of usage history the figures are based on (fractional): from the "
        "start of the hour of the wallet's first usage, or 30 days back, whichever is later; "
        "at least an hour once there is usage, 0 before."
    )
    burn_rate_per_day: str | None = Field(
        description="Average spend per day over the basis; null without usage in it."
    )
    burn_rate_by_hour_of_week: list[str | None] = Field(
        min_length=forecasting.HOURS_OF_WEEK,
        max_length=forecasting.HOURS_OF_WEEK,
        description="168 values, Monday 00:00-01:00 in the agency's time zone first: the "
        "average spent in that hour of the week, over its complete occurrences in the basis; "
        "null where it never occurred whole in the basis, or without usage.",
    )
    runway_hours: float | None = Field(
        description="Hours the available credits (balance - held) last at the average rate; "
        "0 when nothing is available, null without usage in the basis."
    )
    runs_out_at: datetime | None = Field(
        description="Now plus the runway; null without usage (or more than a century ahead)."
    )
    currency: str
    timezone: str = Field(description="The agency's time zone the hours of the week are in.")

    @classmethod
    def of(cls, f: forecasting.Forecast, currency: str) -> ForecastOut:
        return cls(
            basis_days=round(f.basis_days, 4),
            burn_rate_per_day=s.fmt(f.burn_rate_per_day, currency),
            burn_rate_by_hour_of_week=[s.fmt(v, currency) for v in f.burn_rate_by_hour_of_week],
            runway_hours=None if f.runway_hours is None else round(f.runway_hours, 2),
            runs_out_at=f.runs_out_at,
            currency=currency,
            timezone=f.timezone,
        )


class RecommendationOut(BaseModel):
    mode: Literal["fixed", "target"] = Field(
        description="fixed: every reload adds reload_amount, so each covers about cover_days."
    )
    threshold: str | None = Field(
        description="Covers the most the wallet spent in any window_hours; null without usage."
    )
    reload_amount: str | None = Field(
        description="cover_days of typical usage (fixed mode); null without usage."
    )
    target_balance: str | None = Field(description="Target mode only; null in fixed mode.")
    cover_days: int = Field(description="Days of typical usage a reload is to cover.")
    window_hours: int = Field(
        description="How long a reload can take: the charge, and after a soft decline its "
        "first retry, in whole hours."
    )
    currency: str
    reasoning: list[str] = Field(description="Short sentences with the figures behind it.")

    @classmethod
    def of(cls, r: recommending.Recommendation, currency: str) -> RecommendationOut:
        return cls(
            mode="target" if r.mode is Mode.TARGET else "fixed",
            threshold=s.fmt(r.threshold, currency),
            reload_amount=s.fmt(r.reload_amount, currency),
            target_balance=s.fmt(r.target_balance, currency),
            cover_days=r.cover_days,
            window_hours=r.window_hours,
            currency=currency,
            reasoning=list(r.reasoning),
        )


@router.get("/forecast", operation_id="get_forecast")
def get_forecast(p: Owner, refill: Service) -> ForecastOut:
    """The wallet's burn rate (per day, and per hour of the week so busy hours show) from its
    own last 30 days, and how long its available credits last at that rate. With little
    history ``basis_days`` says how much was seen; a figure is null without usage."""
    forecast = forecasting.wallet_forecast(refill.db, agency_id=p.agency_id)
    return ForecastOut.of(forecast, p.currency)


CoverDays = Annotated[
    int,
    Query(
        description="Days of typical usage a reload should cover, 1 to 90 (422 "
        "invalid_cover_days otherwise).",
        json_schema_extra={"minimum": 1, "maximum": recommending.MAX_COVER_DAYS},
    ),
]


@router.get("/auto-reload/recommendation", operation_id="get_auto_reload_recommendation")
def get_auto_reload_recommendation(
    p: Owner, refill: Service, cover_days: CoverDays = recommending.DEFAULT_COVER_DAYS
) -> RecommendationOut:
    """Auto-reload settings fitted to the wallet's last 30 days: a threshold that covers the
    most it spent in any window as long as a reload can take (a retry after a soft decline
    included), and a reload amount that covers ``cover_days`` of typical usage, both within
    the currency's bounds. Without usage yet: 200 with null amounts, and the reasoning says
    so. Nothing is changed; send the figures to PUT /v1/wallet/auto-reload to use them."""
    recommendation = recommending.recommend_auto_reload(
        refill.db, refill.policy, agency_id=p.agency_id, cover_days=cover_days
    )
    return RecommendationOut.of(recommendation, p.currency)
