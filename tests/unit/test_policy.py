"""Fast tier: the pure failure policy and rail windows (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refill.money import currency_info
from refill.reload.policy import DeclineClass, ReloadPolicy, local_day, local_month

POLICY = ReloadPolicy()


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("insufficient_funds", DeclineClass.SOFT),
        ("processing_error", DeclineClass.SOFT),
        ("try_again_later", DeclineClass.SOFT),
        ("card_declined", DeclineClass.SOFT),
        ("some_new_code", DeclineClass.SOFT),
        (None, DeclineClass.SOFT),
        ("expired_card", DeclineClass.HARD),
        ("lost_card", DeclineClass.HARD),
        ("stolen_card", DeclineClass.HARD),
        ("incorrect_number", DeclineClass.HARD),
        ("invalid_account", DeclineClass.HARD),
        ("do_not_honor", DeclineClass.HARD),
    ],
    ids=lambda v: str(v),
)
def test_decline_codes_are_classified_soft_or_hard(
    code: str | None, expected: DeclineClass
) -> None:
    assert POLICY.classify(code) is expected


def test_retry_delays_follow_the_schedule_then_stop() -> None:
    delays = [POLICY.retry_delay(n) for n in range(4)]
    assert delays == [timedelta(hours=1), timedelta(hours=6), timedelta(hours=24), None]


@given(
    target=st.integers(min_value=0, max_value=10**12),
    balance=st.integers(min_value=0, max_value=10**12),
)
def test_target_charge_is_whole_cents_within_bounds_and_reaches_the_target(
    target: int, balance: int
) -> None:
    charge = POLICY.target_charge(target, balance, "USD")
    bounds = currency_info("USD")
    assert charge % 10_000 == 0
    assert bounds.min_reload <= charge <= bounds.max_reload
    if charge < bounds.max_reload:
        assert balance + charge >= target


@pytest.mark.parametrize(
    ("now", "zone", "start", "end"),
    [
        (
            datetime(2026, 3, 10, 3, 0, tzinfo=UTC),
            "America/New_York",
            datetime(2026, 3, 9, 4, 0, tzinfo=UTC),
            datetime(2026, 3, 10, 4, 0, tzinfo=UTC),
        ),
        # The day clocks spring forward in New York has 23 hours.
        (
            datetime(2026, 3, 8, 12, 0, tzinfo=UTC),
            "America/New_York",
            datetime(2026, 3, 8, 5, 0, tzinfo=UTC),
            datetime(2026, 3, 9, 4, 0, tzinfo=UTC),
        ),
        (
            datetime(2026, 6, 1, 23, 30, tzinfo=UTC),
            "Asia/Tokyo",
            datetime(2026, 6, 1, 15, 0, tzinfo=UTC),
            datetime(2026, 6, 2, 15, 0, tzinfo=UTC),
        ),
    ],
    ids=["before-local-midnight", "dst-spring-forward", "ahead-of-utc"],
)
def test_the_daily_limit_counts_in_the_agencys_local_day(
    now: datetime, zone: str, start: datetime, end: datetime
) -> None:
    assert local_day(now, ZoneInfo(zone)) == (start, end)


@pytest.mark.parametrize(
    ("now", "zone", "start", "end"),
    [
        (
            datetime(2026, 12, 31, 23, 0, tzinfo=UTC),
            "UTC",
            datetime(2026, 12, 1, tzinfo=UTC),
            datetime(2027, 1, 1, tzinfo=UTC),
        ),
        (
            datetime(2026, 12, 31, 23, 0, tzinfo=UTC),
            "Europe/Paris",
            datetime(2026, 12, 31, 23, 0, tzinfo=UTC),
            datetime(2027, 1, 31, 23, 0, tzinfo=UTC),
        ),
    ],
    ids=["december-utc", "new-year-already-in-paris"],
)
def test_the_monthly_cap_counts_in_the_agencys_calendar_month(
    now: datetime, zone: str, start: datetime, end: datetime
) -> None:
    assert local_month(now, ZoneInfo(zone)) == (start, end)
