"""Fast tier: the forecast and recommendation arithmetic (``services.forecast``) against
hand-computed cases, its invariants, and the page's sentences (``_runway.html``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refill.errors import ValidationFailed
from refill.money import currency_info, display_amount, is_whole_minor_units, minor_unit_micros
from refill.portal.common import templates
from refill.reload.policy import ReloadPolicy
from refill.reload.settings import NO_SETTINGS
from refill.reload.states import Mode
from refill.services.forecast import Forecast, UsageBasis, basis_start, forecast, usage_basis
from refill.services.recommendation import (
    busiest_window,
    recommend,
    reload_cover_days,
    reload_window_hours,
)

END = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)  # a Thursday
H = timedelta(hours=1)
D = timedelta(days=1)
NY = ZoneInfo("America/New_York")
UTC_ZONE = ZoneInfo("UTC")
POLICY = ReloadPolicy()
DOLLAR = 1_000_000
CENT = 10_000


def hourly_points(first: datetime, hours: int, amount: int) -> list[tuple[datetime, int]]:
    return [(first + i * H, amount) for i in range(hours)]


def basis_from(
    points: list[tuple[datetime, int]], *, end: datetime = END, zone: ZoneInfo = UTC_ZONE
) -> UsageBasis:
    """The basis as the reader builds it: from the first point's hour (or 30 days back)."""
    first = min((moment for moment, _ in points), default=None)
    return usage_basis(points, start=basis_start(end, first, zone), end=end, zone=zone)


def basis_of_hours(hourly: list[int], zone: ZoneInfo = UTC_ZONE) -> UsageBasis:
    """A basis of whole hours ending at END, one figure per hour."""
    start = END - len(hourly) * H
    return UsageBasis(start, END, zone, start, tuple(hourly))


def recommend_usd(basis: UsageBasis, cover_days: int = 7) -> Any:
    return recommend(basis, currency="USD", cover_days=cover_days, policy=POLICY)


# --- hand-computed cases ----------------------------------------------------------------


def test_flat_usage_of_one_dollar_an_hour_burns_24_a_day_and_48_dollars_last_48_hours() -> None:
    basis = basis_from(hourly_points(END - 30 * D, 720, DOLLAR))

    result = forecast(basis, available=48 * DOLLAR)

    assert result.basis_days == 30
    assert result.burn_rate_per_day == 24 * DOLLAR
    assert result.burn_rate_by_hour_of_week == (DOLLAR,) * 168
    assert result.runway_hours == 48
    assert result.runs_out_at == END + 48 * H


def test_flat_usage_recommends_the_busiest_two_hours_and_seven_days_of_usage() -> None:
    basis = basis_from(hourly_points(END - 30 * D, 720, DOLLAR))

    advice = recommend_usd(basis)

    assert advice.mode is Mode.FIXED
    assert advice.window_hours == 2  # the charge, a 1-hour retry delay, its charge
    assert advice.threshold == 2 * DOLLAR
    assert advice.reload_amount == 168 * DOLLAR
    assert advice.target_balance is None
    assert "A reload can take up to 2 hours" in advice.reasoning[1]
    assert advice.reasoning[-1] == (
        "A fixed reload of 168.00 USD covers about 7 days of typical usage."
    )


def peak_basis() -> UsageBasis:
    """1.00 an hour for 30 days, and 10.00 more every Monday 09:00 in New York (four
    Mondays: 9, 16, 23 and 30 November 2026, 14:00 UTC)."""
    flat = hourly_points(END - 30 * D, 720, DOLLAR)
    peaks = [(datetime(2026, 11, day, 9, 30, tzinfo=NY), 10 * DOLLAR) for day in (9, 16, 23, 30)]
    return basis_from(flat + peaks, zone=NY)


def test_a_weekly_peak_shows_in_its_hour_of_the_week_in_the_agency_time_zone() -> None:
    result = forecast(peak_basis(), available=0)

    monday_nine = 0 * 24 + 9
    assert result.burn_rate_by_hour_of_week[monday_nine] == 11 * DOLLAR  # (4 * 1 + 4 * 10) / 4
    others = [v for i, v in enumerate(result.burn_rate_by_hour_of_week) if i != monday_nine]
    assert others == [DOLLAR] * 167  # 14:00 UTC on Monday is not the busy hour in New York
    assert result.burn_rate_per_day == 25_333_333  # 760.00 / 30, rounded to the micro-unit
    assert result.timezone == "America/New_York"


def test_a_weekly_peak_sets_the_threshold_to_the_peak_and_the_hour_next_to_it() -> None:
    advice = recommend_usd(peak_basis())

    assert advice.threshold == 12 * DOLLAR  # Monday 08:00 (1.00) + 09:00 (11.00)
    assert advice.reload_amount == 177_340_000  # 7 * 25.333333 = 177.333331, rounded up
    assert "from Mon 2026-11-09 08:00, America/New_York" in advice.reasoning[2]


def test_a_wallet_one_day_old_is_based_on_that_day_only() -> None:
    first = END - D + timedelta(minutes=20)  # Wednesday 09:20: its hour is the basis's start
    basis = basis_from(hourly_points(first, 24, 2 * DOLLAR))

    result = forecast(basis, available=12 * DOLLAR)

    assert result.since == END - D
    assert result.basis_days == 1
    assert result.burn_rate_per_day == 48 * DOLLAR
    seen = {i: v for i, v in enumerate(result.burn_rate_by_hour_of_week) if v is not None}
    wednesday_nine, thursday_nine = 2 * 24 + 9, 3 * 24 + 9
    assert seen == dict.fromkeys(range(wednesday_nine, thursday_nine), 2 * DOLLAR)
    assert result.runway_hours == 6
    assert result.runs_out_at == END + 6 * H


def test_an_empty_wallet_has_no_basis_and_every_figure_is_null() -> None:
    basis = basis_from([])

    result = forecast(basis, available=25 * DOLLAR)
    advice = recommend_usd(basis)

    assert result == Forecast(None, 0.0, None, (None,) * 168, 25 * DOLLAR, None, None, "UTC")
    assert (advice.threshold, advice.reload_amount, advice.mode) == (None, None, Mode.FIXED)
    assert advice.reasoning[0].startswith("The wallet has no usage in the last 30 days")


def test_a_wallet_without_usage_in_30_days_saw_30_days_and_still_has_null_figures() -> None:
    start = basis_start(END, END - 60 * D, UTC_ZONE)
    basis = usage_basis([], start=start, end=END, zone=UTC_ZONE)

    result = forecast(basis, available=DOLLAR)

    assert result.basis_days == 30
    assert result.burn_rate_per_day is None
    assert result.burn_rate_by_hour_of_week == (None,) * 168
    assert (result.runway_hours, result.runs_out_at) == (None, None)
    assert recommend_usd(basis).threshold is None


def test_a_first_call_a_moment_ago_is_based_on_at_least_an_hour() -> None:
    basis = basis_from([(END, 50 * CENT)])

    result = forecast(basis, available=6 * DOLLAR)

    assert result.basis_days == pytest.approx(1 / 24)
    assert result.burn_rate_per_day == 12 * DOLLAR  # 0.50 in an hour, not in a second
    assert result.runway_hours == 12


def test_the_unfinished_current_hour_counts_in_the_rate_but_not_in_the_hour_of_week() -> None:
    now = END + timedelta(minutes=30)
    points = [*hourly_points(END - D, 24, DOLLAR), (END + timedelta(minutes=10), 5 * DOLLAR)]

    result = forecast(basis_from(points, end=now), available=0)

    assert result.basis_days == pytest.approx(24.5 / 24)
    assert result.burn_rate_per_day == 28_408_163  # 29.00 over 24.5 hours, per day
    thursday_nine = 3 * 24 + 9
    assert result.burn_rate_by_hour_of_week[thursday_nine] is None
    assert result.burn_rate_by_hour_of_week[thursday_nine - 1] == DOLLAR


def test_nothing_available_runs_out_now() -> None:
    result = forecast(basis_from(hourly_points(END - D, 24, DOLLAR)), available=0)

    assert (result.runway_hours, result.runs_out_at) == (0, END)


def test_a_spike_sets_the_threshold_to_the_most_spent_in_any_two_hours() -> None:
    hourly = [10 * CENT] * 720
    hourly[300:303] = [4 * DOLLAR, 6 * DOLLAR, 5 * DOLLAR]  # 10.00, 11.00 in two hours

    advice = recommend_usd(basis_of_hours(hourly))

    assert advice.threshold == 11 * DOLLAR
    assert advice.reload_amount == 20_230_000  # 86.70 / 30 = 2.89 a day, times 7


@pytest.mark.parametrize(
    ("hourly", "threshold", "reload"),
    [
        pytest.param([CENT] * 720, 2 * CENT, 5 * DOLLAR, id="raised-to-the-minimum-reload"),
        pytest.param(
            [100 * DOLLAR] * 720, 200 * DOLLAR, 10_000 * DOLLAR, id="capped-at-the-maximum-reload"
        ),
        pytest.param(
            [CENT] * 100 + [300 * DOLLAR] + [CENT] * 619,
            300_010_000,
            300_020_000,
            id="reload-raised-above-the-threshold",
        ),
        pytest.param(
            [0] * 50 + [20_000 * DOLLAR] + [0] * 669,
            9_999_990_000,
            10_000 * DOLLAR,
            id="threshold-over-the-maximum-lowered-below-the-maximum-reload",
        ),
        pytest.param(
            [1_000_001] * 720, 2_010_000, 168_010_000, id="sub-cent-figures-rounded-up-to-cents"
        ),
    ],
)
def test_recommendations_are_fitted_to_the_rails(
    hourly: list[int], threshold: int, reload: int
) -> None:
    advice = recommend_usd(basis_of_hours(hourly))

    assert (advice.threshold, advice.reload_amount) == (threshold, reload)


def test_a_yen_wallet_is_recommended_whole_yen_within_its_own_rails() -> None:
    advice = recommend(
        basis_of_hours([1_500_000] * 720), currency="JPY", cover_days=7, policy=POLICY
    )

    assert advice.threshold == 3 * DOLLAR  # 3 yen in two hours
    assert advice.reload_amount == currency_info("JPY").min_reload  # 252 yen, raised to 500
    assert "The reload is raised to the minimum reload of 500 JPY." in advice.reasoning


def test_the_reasoning_spells_amounts_as_the_api_does_or_as_the_page_does() -> None:
    basis = basis_of_hours([100 * DOLLAR] * 720)

    api = recommend_usd(basis)
    page = recommend(basis, currency="USD", cover_days=7, policy=POLICY, spell=display_amount)

    assert "The reload is capped at the maximum reload of 10000.00 USD." in api.reasoning
    assert "The reload is capped at the maximum reload of $10,000.00." in page.reasoning
    assert "$2,400.00 a day on average" in page.reasoning[0]


@pytest.mark.parametrize(
    ("hours", "said"),
    [
        pytest.param(1, "Over the last hour the wallet spent", id="an-hour"),
        pytest.param(5, "Over the last 5 hours the wallet spent", id="hours"),
        pytest.param(24, "Over the last day the wallet spent", id="a-day"),
        pytest.param(720, "Over the last 30 days the wallet spent", id="days"),
    ],
)
def test_the_reasoning_names_the_basis_as_people_say_it(hours: int, said: str) -> None:
    advice = recommend_usd(basis_of_hours([DOLLAR] * hours))

    assert advice.reasoning[0].startswith(said)


@pytest.mark.parametrize(
    ("cover_days", "reload"),
    [
        pytest.param(1, 24 * DOLLAR, id="one-day"),
        pytest.param(30, 720 * DOLLAR, id="thirty-days"),
        pytest.param(90, 2_160 * DOLLAR, id="ninety-days"),
    ],
)
def test_the_reload_covers_cover_days_of_typical_usage(cover_days: int, reload: int) -> None:
    advice = recommend_usd(basis_of_hours([DOLLAR] * 720), cover_days)

    assert advice.reload_amount == reload


@pytest.mark.parametrize("cover_days", [0, 91, -7], ids=["zero", "ninety-one", "negative"])
def test_cover_days_outside_1_to_90_are_refused(cover_days: int) -> None:
    with pytest.raises(ValidationFailed) as refused:
        recommend_usd(basis_of_hours([DOLLAR] * 24), cover_days)

    assert refused.value.code == "invalid_cover_days"
    assert refused.value.extra["field"] == "cover_days"


@pytest.mark.parametrize(
    ("hourly", "hours", "expected"),
    [
        pytest.param([1, 5, 2, 8, 1], 1, (8, 3), id="one-hour"),
        pytest.param([1, 5, 2, 8, 1], 2, (10, 2), id="two-hours"),
        pytest.param([1, 5, 2, 8, 1], 3, (15, 1), id="three-hours"),
        pytest.param([4, 1, 4, 1], 2, (5, 0), id="ties-keep-the-earliest"),
        pytest.param([1, 5, 2], 10, (8, 0), id="fewer-hours-than-the-window"),
    ],
)
def test_the_busiest_window_is_the_largest_sliding_sum(
    hourly: list[int], hours: int, expected: tuple[int, int]
) -> None:
    assert busiest_window(hourly, hours) == expected


@pytest.mark.parametrize(
    ("delays", "hours"),
    [
        pytest.param(ReloadPolicy().retry_delays, 2, id="default-one-hour-retry"),
        pytest.param((timedelta(hours=6),), 7, id="six-hour-retry"),
        pytest.param((), 1, id="no-retries"),
    ],
)
def test_a_reload_takes_the_charge_and_the_first_retry_in_whole_hours(
    delays: tuple[timedelta, ...], hours: int
) -> None:
    assert reload_window_hours(ReloadPolicy(retry_delays=delays)) == hours


@pytest.mark.parametrize(
    ("settings", "rate", "days"),
    [
        pytest.param(replace(NO_SETTINGS, reload_amount=120 * DOLLAR), 24 * DOLLAR, 5, id="fixed"),
        pytest.param(
            replace(
                NO_SETTINGS, mode=Mode.TARGET, threshold=30 * DOLLAR, target_balance=150 * DOLLAR
            ),
            24 * DOLLAR,
            5,
            id="target-adds-target-minus-threshold",
        ),
        pytest.param(replace(NO_SETTINGS, reload_amount=120 * DOLLAR), None, None, id="no-usage"),
        pytest.param(NO_SETTINGS, 24 * DOLLAR, None, id="no-reload-amount"),
    ],
)
def test_a_reload_covers_its_amount_over_the_burn_rate(
    settings: Any, rate: int | None, days: float | None
) -> None:
    assert reload_cover_days(settings, rate) == days


# --- invariants -------------------------------------------------------------------------

ZONES = ["UTC", "America/New_York", "Asia/Kolkata", "Australia/Adelaide", "Pacific/Chatham"]


@given(
    zone=st.sampled_from(ZONES),
    amount=st.integers(min_value=1, max_value=10**9),
    hours=st.integers(min_value=1, max_value=720),
)
def test_flat_hourly_usage_shows_the_same_figure_in_every_hour_it_saw_in_any_zone(
    zone: str, amount: int, hours: int
) -> None:
    basis = basis_from(hourly_points(END - hours * H, hours, amount), zone=ZoneInfo(zone))

    seen = {v for v in forecast(basis, available=0).burn_rate_by_hour_of_week if v is not None}

    assert seen <= {amount}


@given(
    offsets=st.lists(st.integers(min_value=0, max_value=30 * 86_400), max_size=60),
    amounts=st.lists(st.integers(min_value=1, max_value=10**12), min_size=60, max_size=60),
    zone=st.sampled_from(ZONES),
)
def test_no_usage_inside_the_basis_is_lost_from_its_hours(
    offsets: list[int], amounts: list[int], zone: str
) -> None:
    points = [(END - timedelta(seconds=s), a) for s, a in zip(offsets, amounts, strict=False)]

    basis = basis_from(points, zone=ZoneInfo(zone))

    assert basis.total == sum(a for moment, a in points if basis.start and moment >= basis.start)
    assert basis.span <= timedelta(days=30)


@given(
    hourly=st.lists(st.integers(min_value=0, max_value=10**11), min_size=1, max_size=800),
    currency=st.sampled_from(["USD", "JPY", "SEK", "KRW"]),
    cover_days=st.integers(min_value=1, max_value=90),
)
def test_recommended_settings_are_always_valid_and_cover_the_busiest_window(
    hourly: list[int], currency: str, cover_days: int
) -> None:
    basis = basis_of_hours(hourly)
    advice = recommend(basis, currency=currency, cover_days=cover_days, policy=POLICY)
    if basis.total == 0:
        assert advice.threshold is None
        return
    bounds = currency_info(currency)
    threshold, reload = advice.threshold, advice.reload_amount
    assert threshold is not None
    assert reload is not None
    assert 0 <= threshold <= bounds.max_threshold
    assert bounds.min_reload <= reload <= bounds.max_reload
    assert reload > threshold  # a fixed reload always lifts the wallet above it
    assert is_whole_minor_units(threshold, currency)
    assert is_whole_minor_units(reload, currency)
    busiest, _ = busiest_window(hourly, advice.window_hours)
    assert threshold >= min(busiest, bounds.max_reload - minor_unit_micros(currency))


@given(
    available=st.integers(min_value=0, max_value=10**15),
    amount=st.integers(min_value=1, max_value=10**9),
)
def test_the_runway_spends_exactly_the_available_credits_at_the_average_rate(
    available: int, amount: int
) -> None:
    result = forecast(basis_of_hours([amount] * 48), available=available)

    assert result.runway_hours is not None
    assert result.runway_hours * amount == pytest.approx(available)  # amount an hour


# --- the page's sentences ---------------------------------------------------------------


def render(call: str, **given: Any) -> str:
    source = '{% import "_runway.html" as runway %}' + call
    return templates.env.from_string(source).render(**given).strip()


def forecast_with(runway_hours: float | None) -> Forecast:
    return Forecast(None, 1.0, None, (None,) * 168, 0, runway_hours, None, "UTC")


@pytest.mark.parametrize(
    ("runway_hours", "words"),
    [
        pytest.param(76.8, "about 3.2 days", id="days"),
        pytest.param(24.0, "about 1 day", id="one-day"),
        pytest.param(5.0, "about 5 hours", id="hours-under-a-day"),
        pytest.param(0.25, "less than an hour", id="minutes"),
    ],
)
def test_the_wallet_card_says_how_long_the_credits_last(runway_hours: float, words: str) -> None:
    html = render("{{ runway.credits_last(f) }}", f=forecast_with(runway_hours))

    expected = f"At this rate your credits last {words}."
    assert html == f'<p class="hint" data-testid="runway">{expected}</p>'


@pytest.mark.parametrize(
    "given", [{"f": forecast_with(None)}, {"f": None}, {}], ids=["no-usage", "none", "not-passed"]
)
def test_the_wallet_card_says_nothing_without_a_runway(given: dict[str, Any]) -> None:
    assert render("{{ runway.credits_last(f) }}", **given) == ""


@pytest.mark.parametrize(
    ("days", "words"),
    [
        pytest.param(5.0, "about 5 days", id="days"),
        pytest.param(0.5, "about 12 hours", id="hours"),
        pytest.param(None, None, id="no-usage"),
    ],
)
def test_the_auto_reload_section_says_how_long_a_reload_lasts(
    days: float | None, words: str | None
) -> None:
    html = render("{{ runway.reload_covers(d) }}", d=days)

    expected = (
        f'<p class="hint" data-testid="reload-cover">Your reload covers {words} of typical '
        "usage.</p>"
    )
    assert html == (expected if words else "")


def test_use_these_settings_posts_the_recommendation_with_the_saved_settings() -> None:
    advice = recommend_usd(basis_of_hours([DOLLAR] * 720))
    settings = replace(NO_SETTINGS, enabled=True, payment_method_id="pm_1", monthly_cap=None)
    session = SimpleNamespace(can_change=True, csrf_token="tok")

    html = render(
        "{{ runway.recommended(r, s, session, 'USD') }}", r=advice, s=settings, session=session
    )

    assert "reload $168.00 when the balance drops below $2.00" in html
    for field, value in [
        ("csrf_token", "tok"),
        ("enabled", "on"),
        ("mode", "fixed"),
        ("threshold", "2.00"),
        ("reload_amount", "168.00"),
        ("payment_method_id", "pm_1"),
        ("daily_limit", "10"),
        ("monthly_cap", ""),
    ]:
        assert f'name="{field}" value="{value}"' in html
    assert "Use these settings</button>" in html


def test_no_recommendation_is_offered_without_usage_or_to_a_member() -> None:
    member = SimpleNamespace(can_change=False, csrf_token="tok")
    owner = SimpleNamespace(can_change=True, csrf_token="tok")
    call = "{{ runway.recommended(r, s, session, 'USD') }}"

    empty = render(call, r=recommend_usd(basis_from([])), s=NO_SETTINGS, session=owner)
    shown = render(
        call, r=recommend_usd(basis_of_hours([DOLLAR] * 24)), s=NO_SETTINGS, session=member
    )

    assert empty == ""
    assert "Recommended:" in shown
    assert "<form" not in shown
