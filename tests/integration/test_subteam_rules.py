"""A subteam's rules inside the shared wallet, over the API on SQLite and PostgreSQL: pause
and resume, daily and monthly spend limits at the turn of the agency's own day and month
(a non-UTC zone, on a frozen clock), what the subteam shows, and its usage series.

Every refusal is checked to change nothing: the balance, the ledger and the counters.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from refill.bootstrap import Refill
from refill.clock import FrozenClock
from tests.support.subteam_api import Agency, assert_problem

# Kolkata is UTC+05:30: its midnight is 18:30 UTC, so a UTC day would be visibly wrong.
ZONE = "Asia/Kolkata"


@pytest.fixture
def acme(frozen_client: TestClient, frozen_refill: Refill, clock: FrozenClock) -> Agency:
    agency = Agency.open(frozen_client, frozen_refill, clock, timezone=ZONE)
    agency.subteam("Sales")
    agency.subteam("Support")
    agency.grant(100_000_000)
    return agency


def unchanged(acme: Agency) -> tuple[str, int, dict[str, Any]]:
    return acme.wallet()["balance"], len(acme.transfers()), acme.shown("Sales")


# --- pause -------------------------------------------------------------------------------


def test_a_paused_subteams_usage_and_calls_are_refused_while_another_goes_on(
    acme: Agency,
) -> None:
    paused = acme.patch("Sales", {"paused": True})
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True
    before = unchanged(acme)

    body = assert_problem(acme.use("Sales", "1.00", "s-1"), 403, "subteam_paused")
    assert "paused" in body["detail"]
    assert acme.authorize("Sales")["reason"] == "subteam_paused"
    assert acme.authorize("Sales")["allowed"] is False
    # The owner's own key is refused the same way on the subteam's behalf.
    owner_use = acme.call(
        "POST",
        "/v1/usage",
        {"subteam_id": acme.subteams["Sales"], "amount": "1.00", "reference": "s-2"},
    )
    assert_problem(owner_use, 403, "subteam_paused")
    assert unchanged(acme) == before

    assert acme.use("Support", "1.00", "t-1").status_code == 201
    assert acme.authorize("Support")["allowed"] is True


def test_resuming_lets_the_subteam_spend_again_and_both_changes_are_audited(
    acme: Agency,
) -> None:
    acme.patch("Sales", {"paused": True})
    assert acme.use("Sales", "1.00", "s-1").status_code == 403
    resumed = acme.patch("Sales", {"paused": False}).json()
    assert resumed["paused"] is False
    assert resumed["paused_at"] is None

    assert acme.use("Sales", "1.00", "s-1").status_code == 201
    assert acme.audit()[:2] == ["subteam.resumed", "subteam.paused"]


def test_usage_recorded_before_a_pause_is_answered_again_when_repeated(acme: Agency) -> None:
    first = acme.use("Sales", "2.50", "s-1")
    assert first.status_code == 201
    acme.patch("Sales", {"paused": True})

    again = acme.use("Sales", "2.50", "s-1")
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]


def test_pausing_what_is_already_paused_writes_nothing(acme: Agency) -> None:
    acme.patch("Sales", {"paused": True})
    audited = acme.audit()
    assert acme.patch("Sales", {"paused": True}).status_code == 200
    assert acme.audit() == audited


# --- limits ------------------------------------------------------------------------------


def at_local(clock: FrozenClock, text: str) -> None:
    """Move the frozen clock to a wall-clock time in the agency's zone."""
    clock.set(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(ZONE)))


def test_the_daily_limit_refuses_what_would_pass_it_and_says_when_it_resets(
    acme: Agency,
) -> None:
    at_local(acme.clock, "2026-12-03T23:00:00")
    limited = acme.patch("Sales", {"daily_spend_limit": "10.00"})
    assert limited.json()["daily_spend_limit"] == "10.00"
    assert acme.use("Sales", "6.00", "s-1").status_code == 201
    assert acme.use("Sales", "4.00", "s-2").status_code == 201  # exactly the limit
    before = unchanged(acme)

    body = assert_problem(acme.use("Sales", "0.01", "s-3"), 402, "subteam_limit_reached")
    assert body["limit"] == "daily"
    assert body["spend_limit"] == "10.00"
    assert body["spent"] == "10.00"
    # Midnight in Kolkata is 18:30 UTC.
    assert body["resets_at"] == "2026-12-03T18:30:00Z"
    assert "resets at 2026-12-04 00:00 IST" in body["detail"]
    assert unchanged(acme) == before
    assert acme.authorize("Sales")["reason"] == "subteam_limit_reached"
    assert acme.use("Support", "5.00", "t-1").status_code == 201  # other subteams go on


def test_the_daily_limit_resets_at_the_agencys_midnight_not_utcs(acme: Agency) -> None:
    at_local(acme.clock, "2026-12-03T23:30:00")
    acme.patch("Sales", {"daily_spend_limit": "10.00"})
    assert acme.use("Sales", "10.00", "s-1").status_code == 201

    at_local(acme.clock, "2026-12-03T23:59:59")
    assert acme.use("Sales", "1.00", "s-2").status_code == 402
    at_local(acme.clock, "2026-12-04T00:00:00")  # 18:30 UTC, the same UTC day
    assert acme.use("Sales", "1.00", "s-2").status_code == 201
    shown = acme.shown("Sales")
    assert (shown["spent_today"], shown["spent_this_month"]) == ("1.00", "11.00")


def test_the_monthly_limit_resets_on_the_first_of_the_agencys_month(acme: Agency) -> None:
    at_local(acme.clock, "2026-12-31T22:00:00")
    acme.patch("Sales", {"monthly_spend_limit": "20.00"})
    assert acme.use("Sales", "20.00", "s-1").status_code == 201
    body = assert_problem(acme.use("Sales", "0.50", "s-2"), 402, "subteam_limit_reached")
    assert body["limit"] == "monthly"
    assert body["resets_at"] == "2026-12-31T18:30:00Z"

    at_local(acme.clock, "2027-01-01T00:00:00")
    assert acme.use("Sales", "0.50", "s-2").status_code == 201
    assert acme.shown("Sales")["spent_this_month"] == "0.50"


def test_a_limit_set_during_the_day_counts_what_was_spent_before_it(acme: Agency) -> None:
    at_local(acme.clock, "2026-12-03T10:00:00")
    assert acme.use("Sales", "8.00", "s-1").status_code == 201
    acme.patch("Sales", {"daily_spend_limit": "10.00"})

    assert acme.use("Sales", "3.00", "s-2").status_code == 402
    assert acme.use("Sales", "2.00", "s-3").status_code == 201


def test_removing_a_limit_lets_usage_through_and_setting_it_again_counts_afresh(
    acme: Agency,
) -> None:
    at_local(acme.clock, "2026-12-03T10:00:00")
    acme.patch("Sales", {"daily_spend_limit": "5.00"})
    assert acme.use("Sales", "5.00", "s-1").status_code == 201
    removed = acme.patch("Sales", {"daily_spend_limit": None}).json()
    assert removed["daily_spend_limit"] is None
    assert acme.use("Sales", "5.00", "s-2").status_code == 201

    acme.patch("Sales", {"daily_spend_limit": "12.00"})
    assert acme.use("Sales", "2.01", "s-3").status_code == 402  # 10.00 already today
    assert acme.use("Sales", "2.00", "s-4").status_code == 201


def test_changing_the_agency_time_zone_recounts_the_day(acme: Agency) -> None:
    # 2026-12-03 20:00 UTC: already the 4th in Kolkata, still the 3rd in New York.
    acme.clock.set(datetime(2026, 12, 3, 20, 0, tzinfo=UTC))
    acme.patch("Sales", {"daily_spend_limit": "10.00"})
    acme.clock.set(datetime(2026, 12, 3, 17, 0, tzinfo=UTC))
    assert acme.use("Sales", "6.00", "s-early").status_code == 201  # the 3rd in Kolkata
    acme.clock.set(datetime(2026, 12, 3, 20, 0, tzinfo=UTC))
    assert acme.use("Sales", "6.00", "s-late").status_code == 201  # the 4th: a new day

    acme.ok("PATCH", "/v1/agency", {"timezone": "America/New_York"})
    # In New York both calls fell on the 3rd: 12.00 > 10.00 already.
    assert_problem(acme.use("Sales", "0.01", "s-3"), 402, "subteam_limit_reached")


def test_subteams_show_pause_limits_spend_and_held_credits(acme: Agency) -> None:
    at_local(acme.clock, "2026-12-03T10:00:00")
    acme.patch("Sales", {"daily_spend_limit": "50.00", "monthly_spend_limit": "500.00"})
    acme.use("Sales", "4.25", "s-1")
    acme.authorize("Sales", expected_cost="1.50", hold=True)

    listed = {t["name"]: t for t in acme.ok("GET", "/v1/subteams")["data"]}
    sales = listed["Sales"]
    assert sales == acme.shown("Sales")
    assert {k: sales[k] for k in ("paused", "daily_spend_limit", "monthly_spend_limit")} == {
        "paused": False,
        "daily_spend_limit": "50.00",
        "monthly_spend_limit": "500.00",
    }
    assert (sales["spent_today"], sales["spent_this_month"], sales["held"]) == (
        "4.25",
        "4.25",
        "1.50",
    )
    assert listed["Support"]["spent_today"] == "0.00"
    assert listed["Support"]["daily_spend_limit"] is None


def test_a_limit_change_is_audited_with_the_amounts_before_and_after(acme: Agency) -> None:
    acme.patch("Sales", {"daily_spend_limit": "10.00"})
    acme.patch("Sales", {"daily_spend_limit": "25.00", "monthly_spend_limit": None})
    entries = acme.ok("GET", "/v1/audit-log?limit=5")["data"]
    latest = entries[0]
    assert latest["action"] == "subteam.spend_limits_changed"
    assert latest["before"] == {"daily_spend_limit": "10.00", "monthly_spend_limit": None}
    assert latest["after"] == {"daily_spend_limit": "25.00", "monthly_spend_limit": None}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param({"daily_spend_limit": "0"}, "invalid_amount", id="zero"),
        pytest.param({"daily_spend_limit": "-5.00"}, "invalid_amount", id="negative"),
        pytest.param({"monthly_spend_limit": "ten"}, "invalid_amount", id="words"),
        pytest.param({"daily_spend_limit": 10}, "validation_error", id="number-not-string"),
        pytest.param({"paused": "yes"}, "validation_error", id="paused-not-boolean"),
    ],
)
def test_a_bad_subteam_change_is_refused_422_and_changes_nothing(
    acme: Agency, body: dict[str, Any], code: str
) -> None:
    before = (acme.shown("Sales"), acme.audit())
    assert_problem(acme.patch("Sales", body), 422, code)
    assert (acme.shown("Sales"), acme.audit()) == before


def test_a_subteam_key_cannot_change_its_own_rules(acme: Agency) -> None:
    response = acme.call(
        "PATCH", f"/v1/subteams/{acme.subteams['Sales']}", {"paused": False}, as_="Sales"
    )
    assert_problem(response, 403, "forbidden")


# --- usage series ------------------------------------------------------------------------


def test_the_usage_series_counts_spend_and_calls_per_local_day(acme: Agency) -> None:
    at_local(acme.clock, "2026-12-01T23:50:00")
    acme.use("Sales", "1.00", "a")
    at_local(acme.clock, "2026-12-02T00:10:00")  # the next local day, the same UTC day
    acme.use("Sales", "2.00", "b")
    acme.use("Sales", "3.00", "c")
    acme.use("Support", "9.00", "other")
    at_local(acme.clock, "2026-12-03T12:00:00")

    series = acme.ok(
        "GET",
        f"/v1/subteams/{acme.subteams['Sales']}/usage?from=2026-12-01&to=2026-12-04"
        "&granularity=day",
    )
    assert series["timezone"] == ZONE
    assert [(p["start"], p["spent"], p["events"]) for p in series["data"]] == [
        ("2026-11-30T18:30:00Z", "1.00", 1),
        ("2026-12-01T18:30:00Z", "5.00", 2),
        ("2026-12-02T18:30:00Z", "0.00", 0),
    ]


def test_the_usage_series_by_the_hour_covers_the_last_day_by_default(acme: Agency) -> None:
    at_local(acme.clock, "2026-12-03T10:15:00")
    acme.use("Sales", "1.00", "a")
    acme.clock.advance(timedelta(hours=1))  # 11:15, the next local hour (05:30 UTC)
    acme.use("Sales", "1.00", "b")
    series = acme.ok("GET", f"/v1/subteams/{acme.subteams['Sales']}/usage?granularity=hour")
    points = series["data"]
    assert len(points) == 24  # the last 24 local hours, the current one last
    assert points[-1]["start"] == "2026-12-03T05:30:00Z"
    busy = [(p["start"], p["events"]) for p in points if p["events"]]
    assert busy == [("2026-12-03T04:30:00Z", 1), ("2026-12-03T05:30:00Z", 1)]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        pytest.param("granularity=week", "invalid_granularity", id="unknown-granularity"),
        pytest.param("from=2026-12-03&to=2026-12-01", "invalid_range", id="backwards"),
        pytest.param("from=2026-01-01&to=2026-12-01&granularity=hour", "invalid_range", id="long"),
        pytest.param("from=yesterday", "invalid_date", id="bad-date"),
    ],
)
def test_a_bad_usage_series_query_is_refused_422(acme: Agency, query: str, code: str) -> None:
    response = acme.call("GET", f"/v1/subteams/{acme.subteams['Sales']}/usage?{query}")
    assert_problem(response, 422, code)


def test_another_agencys_subteam_has_no_usage_series(acme: Agency) -> None:
    other = Agency.open(acme.api, acme.refill, acme.clock)
    other_id = other.subteam("Theirs")
    assert_problem(acme.call("GET", f"/v1/subteams/{other_id}/usage"), 404, "subteam_not_found")
