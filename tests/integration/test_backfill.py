"""Usage reported late (``occurred_at``), over the API on SQLite and PostgreSQL: it lands on
its own day in the usage series, the history filter and the spend limits, the ledger keeps
the time of recording, and a moment outside the window is refused, changing nothing.
The agency is in Kolkata (UTC+05:30); the clock is frozen at 2026-12-03 09:00 UTC, 14:30
local."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from refill.bootstrap import Refill
from refill.clock import FrozenClock
from tests.support.subteam_api import Agency, assert_problem

ZONE = "Asia/Kolkata"
YESTERDAY_LOCAL_NOON = "2026-12-02T12:00:00+05:30"


@pytest.fixture
def acme(frozen_client: TestClient, frozen_refill: Refill, clock: FrozenClock) -> Agency:
    agency = Agency.open(frozen_client, frozen_refill, clock, timezone=ZONE)
    agency.subteam("Sales")
    agency.grant(100_000_000)
    return agency


def day_series(acme: Agency) -> list[tuple[str, str]]:
    series = acme.ok(
        "GET",
        f"/v1/subteams/{acme.subteams['Sales']}/usage?from=2026-12-02&to=2026-12-04"
        "&granularity=day",
    )
    return [(p["start"], p["spent"]) for p in series["data"]]


def test_usage_reported_late_lands_on_its_own_day_and_keeps_the_time_of_recording(
    acme: Agency,
) -> None:
    acme.use("Sales", "1.00", "today")
    late = acme.use("Sales", "2.50", "late", occurred_at=YESTERDAY_LOCAL_NOON)
    assert late.status_code == 201, late.text
    body = late.json()
    assert body["occurred_at"] == "2026-12-02T06:30:00Z"
    assert body["created_at"] == "2026-12-03T09:00:00Z"
    assert day_series(acme) == [
        ("2026-12-01T18:30:00Z", "2.50"),
        ("2026-12-02T18:30:00Z", "1.00"),
    ]
    # The history filter files it under the day it happened.
    found = acme.ok("GET", "/v1/transactions?from=2026-12-02&to=2026-12-03&kind=usage")
    assert [t["reference"] for t in found["data"]] == ["late"]
    # Sent again, the same usage is a duplicate, as without occurred_at.
    again = acme.use("Sales", "2.50", "late", occurred_at=YESTERDAY_LOCAL_NOON)
    assert again.status_code == 200


@pytest.mark.parametrize(
    ("occurred_at", "code"),
    [
        pytest.param("2026-12-03T09:05:00Z", "invalid_occurred_at", id="in-the-future"),
        pytest.param("2026-11-26T08:59:00Z", "invalid_occurred_at", id="older-than-7-days"),
        pytest.param("2026-12-02T12:00:00", "validation_error", id="no-offset"),
        pytest.param("yesterday", "validation_error", id="not-a-time"),
    ],
)
def test_a_moment_outside_the_window_is_refused_and_changes_nothing(
    acme: Agency, occurred_at: str, code: str
) -> None:
    before = acme.wallet()["balance"]
    assert_problem(acme.use("Sales", "1.00", "r", occurred_at=occurred_at), 422, code)
    assert acme.wallet()["balance"] == before


def test_a_minute_of_clock_skew_is_taken_as_now(acme: Agency) -> None:
    response = acme.use("Sales", "1.00", "skew", occurred_at="2026-12-03T09:00:30Z")
    assert response.status_code == 201
    assert response.json()["occurred_at"] == "2026-12-03T09:00:00Z"


def shown(acme: Agency) -> tuple[Any, Any]:
    sales = acme.shown("Sales")
    return sales["spent_today"], sales["spent_this_month"]


def test_a_late_event_counts_against_its_own_days_limit_not_todays(acme: Agency) -> None:
    acme.patch("Sales", {"daily_spend_limit": "5.00"})
    acme.use("Sales", "4.00", "today")
    # Yesterday nothing was spent: 3.00 fits yesterday's limit though today has 1.00 left.
    late = acme.use("Sales", "3.00", "late-1", occurred_at=YESTERDAY_LOCAL_NOON)
    assert late.status_code == 201, late.text
    assert shown(acme) == ("4.00", "7.00")  # today's counter untouched, the month's moved
    # Yesterday's limit is met by another 3.00: refused, naming yesterday's reset.
    body = assert_problem(
        acme.use("Sales", "3.00", "late-2", occurred_at=YESTERDAY_LOCAL_NOON),
        402,
        "subteam_limit_reached",
    )
    assert body["resets_at"] == "2026-12-02T18:30:00Z"
    assert body["spent"] == "3.00"
    assert shown(acme) == ("4.00", "7.00")
    # Today's limit is still today's: 1.00 fits, 1.01 would not.
    assert acme.use("Sales", "1.00", "today-2").status_code == 201
    assert_problem(acme.use("Sales", "0.01", "today-3"), 402, "subteam_limit_reached")


def test_a_batch_files_each_event_under_when_it_happened(acme: Agency) -> None:
    sales = acme.subteams["Sales"]
    answer = acme.ok(
        "POST",
        "/v1/usage/batch",
        {
            "events": [
                {"subteam_id": sales, "amount": "1.00", "reference": "b-now"},
                {
                    "subteam_id": sales,
                    "amount": "2.00",
                    "reference": "b-late",
                    "occurred_at": YESTERDAY_LOCAL_NOON,
                },
                {
                    "subteam_id": sales,
                    "amount": "2.00",
                    "reference": "b-ahead",
                    "occurred_at": "2026-12-04T09:00:00Z",
                },
            ]
        },
    )
    assert [(r["status"], r.get("code")) for r in answer["results"]] == [
        ("created", None),
        ("created", None),
        ("refused", "invalid_occurred_at"),
    ]
    assert day_series(acme) == [
        ("2026-12-01T18:30:00Z", "2.00"),
        ("2026-12-02T18:30:00Z", "1.00"),
    ]
