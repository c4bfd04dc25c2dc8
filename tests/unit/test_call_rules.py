"""The call and spend rules, pure: whether a subteam may take a call, when a spend limit
refuses, and which local day and month a moment counts in."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refill.services.holds import decide_call
from refill.services.spend import Period, SubteamRules, limit_refusal, room_left

pytestmark = pytest.mark.unit

NOON = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
PERIOD = Period.at(NOON, ZoneInfo("UTC"))


def rules(
    *,
    paused: bool = False,
    daily: int | None = None,
    monthly: int | None = None,
    held: int = 0,
    spent_day: int = 0,
    spent_month: int = 0,
    day: str = PERIOD.day,
    month: str = PERIOD.month,
) -> SubteamRules:
    return SubteamRules(False, paused, daily, monthly, held, day, spent_day, month, spent_month)


@pytest.mark.parametrize(
    ("available", "floor", "cost", "reason"),
    [
        pytest.param(60_000, 0, None, None, id="any-credit-above-a-zero-floor"),
        pytest.param(0, 0, None, "no_credits", id="nothing-left"),
        pytest.param(60_000, 100_000, None, "no_credits", id="below-the-agency-floor"),
        pytest.param(100_000, 100_000, None, "no_credits", id="at-the-floor"),
        pytest.param(60_000, 0, 60_000, None, id="cost-exactly-covered"),
        pytest.param(60_000, 0, 60_001, "no_credits", id="cost-not-covered"),
        pytest.param(60_000, 100_000, 50_000, None, id="a-cost-replaces-the-floor"),
        pytest.param(0, 0, 0, "no_credits", id="free-call-with-nothing-left"),
    ],
)
def test_a_call_is_allowed_by_available_credits_the_floor_and_its_cost(
    available: int, floor: int, cost: int | None, reason: str | None
) -> None:
    assert (
        decide_call(rules(), PERIOD, available=available, call_floor=floor, expected_cost=cost)
        == reason
    )


def test_a_paused_subteam_is_refused_before_anything_else() -> None:
    reason = decide_call(
        rules(paused=True, daily=1), PERIOD, available=0, call_floor=0, expected_cost=5
    )
    assert reason == "subteam_paused"


@given(
    limit=st.integers(1, 10**9),
    spent=st.integers(0, 10**9),
    held=st.integers(0, 10**9),
    cost=st.integers(0, 10**9),
)
def test_the_limit_admits_a_call_exactly_when_spent_held_and_cost_fit_under_it(
    limit: int, spent: int, held: int, cost: int
) -> None:
    subteam = rules(daily=limit, spent_day=spent, held=held)
    reason = decide_call(subteam, PERIOD, available=10**12, call_floor=0, expected_cost=cost)
    fits = spent + held + cost <= limit and spent + held < limit
    assert (reason is None) is fits
    refusal = limit_refusal("sub", subteam, PERIOD, amount=cost, currency="USD")
    assert (refusal is None) is (spent + held + cost <= limit)


def test_the_tighter_of_the_two_limits_is_the_room_left() -> None:
    subteam = rules(daily=10, monthly=100, spent_day=4, spent_month=95, held=1)
    assert room_left(subteam, PERIOD) == 4
    assert room_left(rules(), PERIOD) is None


def test_counters_of_another_day_or_month_count_zero() -> None:
    stale = rules(daily=10, monthly=10, spent_day=10, spent_month=10, day="2026-12-02")
    assert stale.spent_in(PERIOD) == (0, 10)
    last_month = rules(daily=10, spent_day=10, spent_month=10, day="2026-11-30", month="2026-11")
    assert last_month.spent_in(PERIOD) == (0, 0)


def test_a_limit_refusal_names_the_limit_and_when_it_resets_in_utc() -> None:
    subteam = rules(daily=10_000_000, spent_day=9_000_000, held=500_000)
    refusal = limit_refusal("sub_1", subteam, PERIOD, amount=600_000, currency="USD")
    assert refusal is not None
    assert refusal.extra == {
        "limit": "daily",
        "spend_limit": "10.00",
        "spent": "9.00",
        "held": "0.50",
        "resets_at": "2026-12-04T00:00:00Z",
    }


@pytest.mark.parametrize(
    ("moment", "zone", "day", "month", "day_ends"),
    [
        pytest.param(
            datetime(2026, 12, 3, 18, 29, tzinfo=UTC),
            "Asia/Kolkata",
            "2026-12-03",
            "2026-12",
            datetime(2026, 12, 3, 18, 30, tzinfo=UTC),
            id="kolkata-before-midnight",
        ),
        pytest.param(
            datetime(2026, 12, 31, 18, 30, tzinfo=UTC),
            "Asia/Kolkata",
            "2027-01-01",
            "2027-01",
            datetime(2027, 1, 1, 18, 30, tzinfo=UTC),
            id="kolkata-new-year",
        ),
        pytest.param(
            datetime(2026, 3, 8, 12, 0, tzinfo=UTC),
            "America/New_York",
            "2026-03-08",
            "2026-03",
            datetime(2026, 3, 9, 4, 0, tzinfo=UTC),
            id="new-york-23-hour-day",
        ),
    ],
)
def test_the_period_is_the_agencys_local_day_and_month(
    moment: datetime, zone: str, day: str, month: str, day_ends: datetime
) -> None:
    period = Period.at(moment, ZoneInfo(zone))
    assert (period.day, period.month) == (day, month)
    assert period.day_ends == day_ends
    assert period.day_starts <= moment < period.day_ends
    assert period.month_starts <= moment < period.month_ends
