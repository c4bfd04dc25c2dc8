"""Runway, burn rate and recommended settings from a wallet's own usage, on SQLite and
PostgreSQL: the grouped read (per quarter hour, folded into the agency's local hours),
active holds counted, the 30-day window, and both routes over HTTP (problem+json refusals).

The router is mounted here when the application does not have it yet."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from refill import services
from refill.api import insights
from refill.bootstrap import Refill
from refill.clock import FrozenClock
from refill.services import forecast as forecasting
from refill.services import recommendation as recommending
from refill.web import create_app
from tests.support.subteam_api import Agency, assert_problem

ZONE = ZoneInfo("America/New_York")
TUESDAY_NINE = datetime(2026, 12, 1, 9, 0, tzinfo=ZONE)  # 14:00 UTC
DOLLAR = 1_000_000


@pytest.fixture
def api_client(svc: Refill) -> Iterator[TestClient]:
    app = create_app(svc)
    if not any(getattr(route, "path", "") == "/v1/wallet/forecast" for route in app.routes):
        app.include_router(insights.router)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def busy(api_client: TestClient, svc: Refill, clock: FrozenClock) -> Agency:
    """A New York agency whose wallet opened Tuesday 09:00 and spent 1.00 at 20 past each
    hour for a day, and 5.00 more at 09:40 on Tuesday; it is now Wednesday 09:00, with a
    9.00 hold on a live call: 100.00 - 29.00 = 71.00, 62.00 available."""
    clock.set(TUESDAY_NINE)
    agency = Agency.open(api_client, svc, clock, timezone=ZONE.key)
    agency.subteam("Sales")
    agency.grant(100 * DOLLAR)
    for hour in range(24):
        clock.set(TUESDAY_NINE + timedelta(hours=hour, minutes=20))
        assert agency.use("Sales", "1.00", f"u-{hour}").status_code == 201
        if hour == 0:
            clock.set(TUESDAY_NINE + timedelta(minutes=40))
            assert agency.use("Sales", "5.00", "peak").status_code == 201
    clock.set(TUESDAY_NINE + timedelta(days=1))
    agency.authorize("Sales", expected_cost="9.00", hold=True)
    return agency


def test_the_forecast_sums_usage_per_local_hour_and_counts_active_holds(busy: Agency) -> None:
    shown = busy.ok("GET", "/v1/wallet/forecast")

    assert shown["basis_days"] == 1
    assert shown["burn_rate_per_day"] == "29.00"
    by_hour = shown["burn_rate_by_hour_of_week"]
    tuesday_nine = 1 * 24 + 9
    assert by_hour[tuesday_nine] == "6.00"  # 1.00 and 5.00, two quarter hours of one hour
    assert by_hour[tuesday_nine + 1 : tuesday_nine + 24] == ["1.00"] * 23
    assert sum(v is None for v in by_hour) == 168 - 24
    assert shown["runway_hours"] == 51.31  # 62.00 available at 29.00 a day: 62/29 days
    runs_out = datetime.fromisoformat(shown["runs_out_at"])
    runway = timedelta(microseconds=62 * DOLLAR * 86_400_000_000 // (29 * DOLLAR))
    assert runs_out == busy.clock.now() + runway
    assert (shown["currency"], shown["timezone"]) == ("USD", "America/New_York")


def test_usage_is_summed_in_the_database_one_row_per_quarter_hour(busy: Agency) -> None:
    for minute, reference in [(1, "a"), (5, "b"), (14, "c"), (16, "d")]:
        busy.clock.set(TUESDAY_NINE + timedelta(days=1, minutes=minute))
        assert busy.use("Sales", "0.50", reference).status_code == 201
    start = TUESDAY_NINE + timedelta(days=1)

    rows = busy.refill.db.read(
        lambda tx: forecasting.usage_per_quarter(tx, busy.agency_id, start, busy.clock.now())
    )

    # 10:00-10:15 has three events and 10:15-10:30 one: two rows, not four.
    assert [amount for _, amount in rows] == [DOLLAR + DOLLAR // 2, DOLLAR // 2]
    assert sorted(moment for moment, _ in rows) == [
        start + timedelta(minutes=1),
        start + timedelta(minutes=16),
    ]


def test_the_recommendation_covers_the_busiest_two_hours_and_a_week_and_can_be_saved(
    busy: Agency,
) -> None:
    advice = busy.ok("GET", "/v1/wallet/auto-reload/recommendation")

    assert advice["mode"] == "fixed"
    assert advice["threshold"] == "7.00"  # Tuesday 09:00 (6.00) and 10:00 (1.00)
    assert advice["reload_amount"] == "203.00"  # 7 days at 29.00
    assert advice["target_balance"] is None
    assert (advice["cover_days"], advice["window_hours"]) == (7, 2)
    assert "A reload can take up to 2 hours" in advice["reasoning"][1]
    assert "America/New_York" in advice["reasoning"][2]
    card = busy.ok("POST", "/v1/payment-methods", {"token": "pm_card_visa"})["id"]
    saved = busy.ok(
        "PUT",
        "/v1/wallet/auto-reload",
        {
            "enabled": True,
            "threshold": advice["threshold"],
            "reload_amount": advice["reload_amount"],
            "payment_method_id": card,
        },
    )
    assert saved["auto_reload"]["state"] == "active"


@pytest.mark.parametrize(
    ("cover_days", "reload"),
    [("1", "29.00"), ("30", "870.00"), ("90", "2610.00")],
    ids=["one-day", "thirty-days", "ninety-days"],
)
def test_cover_days_sets_how_many_days_the_reload_covers(
    busy: Agency, cover_days: str, reload: str
) -> None:
    path = f"/v1/wallet/auto-reload/recommendation?cover_days={cover_days}"

    assert busy.ok("GET", path)["reload_amount"] == reload


@pytest.mark.parametrize(
    ("cover_days", "code"),
    [("0", "invalid_cover_days"), ("91", "invalid_cover_days"), ("a-week", "validation_error")],
    ids=["zero", "ninety-one", "not-a-number"],
)
def test_cover_days_outside_1_to_90_is_refused_as_problem_json(
    busy: Agency, cover_days: str, code: str
) -> None:
    response = busy.call("GET", f"/v1/wallet/auto-reload/recommendation?cover_days={cover_days}")

    assert assert_problem(response, 422, code)["status"] == 422


def test_an_empty_wallet_answers_with_null_figures_and_says_why(
    api_client: TestClient, svc: Refill, clock: FrozenClock
) -> None:
    agency = Agency.open(api_client, svc, clock)
    agency.grant(10 * DOLLAR)

    shown = agency.ok("GET", "/v1/wallet/forecast")
    advice = agency.ok("GET", "/v1/wallet/auto-reload/recommendation")

    assert shown["basis_days"] == 0
    assert shown["burn_rate_by_hour_of_week"] == [None] * 168
    assert [shown[k] for k in ("burn_rate_per_day", "runway_hours", "runs_out_at")] == [None] * 3
    assert (advice["threshold"], advice["reload_amount"]) == (None, None)
    assert "no usage" in advice["reasoning"][0]


def test_a_subteam_key_is_refused_both(busy: Agency) -> None:
    for path in ("/v1/wallet/forecast", "/v1/wallet/auto-reload/recommendation"):
        assert_problem(busy.call("GET", path, as_="Sales"), 403, "forbidden")


def test_only_the_last_30_days_of_this_wallet_count(
    api_client: TestClient, svc: Refill, clock: FrozenClock
) -> None:
    now = clock.now()
    clock.set(now - timedelta(days=45))
    ours, other = (Agency.open(api_client, svc, clock) for _ in range(2))
    for agency in (ours, other):
        agency.subteam("Sales")
        agency.grant(1_000 * DOLLAR)
    clock.set(now - timedelta(days=40))
    ours.use("Sales", "100.00", "long-ago")
    clock.set(now - timedelta(days=10, minutes=7))
    ours.use("Sales", "3.00", "within")
    other.use("Sales", "500.00", "another-wallet")
    clock.set(now)

    found = forecasting.wallet_forecast(svc.db, agency_id=ours.agency_id)

    assert found.since == now - timedelta(days=30)
    assert found.burn_rate_per_day == 100_000  # 3.00 over 30 days
    assert found.available == 897 * DOLLAR
    both = recommending.insights(svc.db, svc.policy, agency_id=ours.agency_id)
    assert both.forecast == found
    advice = recommending.recommend_auto_reload(svc.db, svc.policy, agency_id=ours.agency_id)
    assert both.recommendation == advice
    assert advice.threshold == 3 * DOLLAR


def test_a_wallet_whose_usage_is_older_than_30_days_saw_30_days_of_nothing(
    api_client: TestClient, svc: Refill, clock: FrozenClock
) -> None:
    now = clock.now()
    clock.set(now - timedelta(days=60))
    agency = Agency.open(api_client, svc, clock)
    agency.subteam("Sales")
    agency.grant(50 * DOLLAR)
    services.record_usage(
        svc.db,
        agency_id=agency.agency_id,
        subteam_id=agency.subteams["Sales"],
        amount=DOLLAR,
        reference="once",
    )
    clock.set(now)

    shown = agency.ok("GET", "/v1/wallet/forecast")

    assert shown["basis_days"] == 30
    assert (shown["burn_rate_per_day"], shown["runway_hours"]) == (None, None)
