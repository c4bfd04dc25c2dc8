"""Calls that hold credits while they run, over the API on SQLite and PostgreSQL: authorize
with an expected cost and the agency's call floor, holds and available credits, settling
(exactly once, never refused, never below zero), release, expiry, holds against spend
limits, and the reload a hold starts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from refill import services
from refill.bootstrap import Refill
from refill.clock import FrozenClock
from refill.errors import InsufficientCredits
from refill.services import holds as hold_service
from tests.support.subteam_api import Agency, assert_problem


@pytest.fixture
def acme(frozen_client: TestClient, frozen_refill: Refill, clock: FrozenClock) -> Agency:
    agency = Agency.open(frozen_client, frozen_refill, clock)
    agency.subteam("Sales")
    agency.subteam("Support")
    agency.grant(10_000_000)  # 10.00
    return agency


def held(acme: Agency, name: str, cost: str, **extra: Any) -> str:
    answer = acme.authorize(name, expected_cost=cost, hold=True, **extra)
    assert answer["allowed"] is True, answer
    return str(answer["hold_id"])


def figures(acme: Agency) -> tuple[str, str, str]:
    wallet = acme.wallet()
    return wallet["balance"], wallet["held"], wallet["available"]


# --- authorize ---------------------------------------------------------------------------


def test_without_a_cost_calls_are_allowed_above_the_agencys_min_call_balance(
    acme: Agency,
) -> None:
    acme.use("Sales", "9.94", "u-1")  # 0.06 left
    first = acme.authorize("Sales")
    assert (first["allowed"], first["reason"], first["available"]) == (
        True,
        "credits_available",
        "0.06",
    )
    assert "hold_id" not in first  # only when a hold was placed

    agency = acme.ok("PATCH", "/v1/agency", {"min_call_balance": "0.10"})
    assert agency["min_call_balance"] == "0.10"
    refused = acme.authorize("Sales")
    assert (refused["allowed"], refused["reason"]) == (False, "no_credits")


@pytest.mark.parametrize(
    ("cost", "allowed"),
    [
        pytest.param("0.05", True, id="covered"),
        pytest.param("0.06", True, id="exactly-covered"),
        pytest.param("0.07", False, id="not-covered"),
    ],
)
def test_with_an_expected_cost_calls_are_allowed_while_available_credits_cover_it(
    acme: Agency, cost: str, allowed: bool
) -> None:
    acme.use("Sales", "9.94", "u-1")
    answer = acme.authorize("Sales", expected_cost=cost)
    assert answer["allowed"] is allowed
    assert answer["reason"] == ("credits_available" if allowed else "no_credits")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param({"hold": True}, "invalid_amount", id="hold-without-cost"),
        pytest.param({"expected_cost": "0", "hold": True}, "invalid_amount", id="hold-of-zero"),
        pytest.param({"expected_cost": "-1.00"}, "invalid_amount", id="negative-cost"),
        pytest.param(
            {"expected_cost": "1.00", "hold": True, "hold_expires_in_seconds": 86_401},
            "validation_error",
            id="hold-past-24h",
        ),
        pytest.param({"expected_cost": 1}, "validation_error", id="cost-as-number"),
    ],
)
def test_a_bad_authorize_is_refused_422_and_holds_nothing(
    acme: Agency, body: dict[str, Any], code: str
) -> None:
    response = acme.call(
        "POST", "/v1/calls/authorize", {"subteam_id": acme.subteams["Sales"], **body}
    )
    assert_problem(response, 422, code)
    assert figures(acme) == ("10.00", "0.00", "10.00")


def test_a_bad_min_call_balance_is_refused_and_the_floor_kept(acme: Agency) -> None:
    assert_problem(
        acme.call("PATCH", "/v1/agency", {"min_call_balance": "-1"}), 422, "invalid_amount"
    )
    assert acme.ok("GET", "/v1/agency")["min_call_balance"] == "0.00"


# --- holds and available credits ---------------------------------------------------------


def test_a_hold_moves_no_money_but_lowers_available_credits(acme: Agency) -> None:
    transfers = len(acme.transfers())
    answer = acme.authorize("Sales", expected_cost="3.00", hold=True)
    assert answer["available"] == "7.00"  # after the hold it placed
    assert figures(acme) == ("10.00", "3.00", "7.00")
    assert len(acme.transfers()) == transfers
    listed = acme.ok("GET", "/v1/holds")["data"]
    assert [(h["id"], h["amount"], h["status"]) for h in listed] == [
        (answer["hold_id"], "3.00", "active")
    ]
    assert listed[0]["expires_at"] == answer["hold_expires_at"]
    acme.assert_books_balance()


def test_a_hold_expires_after_two_hours_by_default_and_at_most_a_day(acme: Agency) -> None:
    default = acme.authorize("Sales", expected_cost="1.00", hold=True)
    longest = acme.authorize(
        "Sales", expected_cost="1.00", hold=True, hold_expires_in_seconds=86_400
    )
    assert default["hold_expires_at"] == "2026-12-03T11:00:00Z"
    assert longest["hold_expires_at"] == "2026-12-04T09:00:00Z"


def test_neither_usage_nor_an_adjustment_can_spend_held_credits(acme: Agency) -> None:
    held(acme, "Sales", "8.00")
    assert_problem(acme.use("Support", "2.01", "u-1"), 402, "insufficient_credits")
    with pytest.raises(InsufficientCredits):
        services.adjust_wallet(
            acme.refill.db,
            agency_id=acme.agency_id,
            amount=-2_010_000,
            reason="fix",
            reference=None,
            actor="cli",
        )
    assert acme.use("Support", "2.00", "u-2").status_code == 201
    assert figures(acme) == ("8.00", "8.00", "0.00")
    refused = acme.authorize("Support", expected_cost="0.01", hold=True)
    assert (refused["allowed"], refused["reason"]) == (False, "no_credits")
    assert "hold_id" not in refused


def test_releasing_a_hold_gives_its_credits_back_once(acme: Agency) -> None:
    hold_id = held(acme, "Sales", "4.00")
    released = acme.ok("DELETE", f"/v1/holds/{hold_id}", as_="Sales")
    assert released["status"] == "released"
    assert figures(acme) == ("10.00", "0.00", "10.00")
    again = acme.ok("DELETE", f"/v1/holds/{hold_id}")
    assert again == released
    assert acme.ok("GET", "/v1/holds")["data"] == []


def test_a_subteam_key_sees_and_releases_only_its_own_holds(acme: Agency) -> None:
    theirs = held(acme, "Sales", "1.00")
    mine = held(acme, "Support", "1.00")
    seen = acme.ok("GET", "/v1/holds", as_="Support")["data"]
    assert [h["id"] for h in seen] == [mine]
    assert_problem(acme.call("DELETE", f"/v1/holds/{theirs}", as_="Support"), 404, "hold_not_found")
    assert figures(acme)[1] == "2.00"


def test_the_worker_expires_a_hold_past_its_time_and_its_credits_come_back(
    acme: Agency,
) -> None:
    hold_id = held(acme, "Sales", "5.00", hold_expires_in_seconds=60)
    acme.clock.advance(timedelta(seconds=59))
    assert hold_service.expire_due_holds(acme.refill.db) == 0
    acme.clock.advance(timedelta(seconds=1))
    assert hold_service.expire_due_holds(acme.refill.db) == 1
    assert figures(acme) == ("10.00", "0.00", "10.00")
    assert acme.ok("DELETE", f"/v1/holds/{hold_id}")["status"] == "expired"
    assert acme.shown("Sales")["held"] == "0.00"


def test_archiving_a_subteam_releases_its_holds(acme: Agency) -> None:
    held(acme, "Sales", "5.00")
    acme.patch("Sales", {"archived": True})
    assert figures(acme) == ("10.00", "0.00", "10.00")
    acme.assert_books_balance()


def test_holding_the_last_credits_tells_the_owner_calls_stop_and_releasing_them_that_they_resume(
    acme: Agency,
) -> None:
    replenished = len(acme.events("wallet.replenished"))  # the first grant was one
    hold_id = held(acme, "Sales", "10.00")
    assert len(acme.events("wallet.depleted")) == 1
    acme.ok("DELETE", f"/v1/holds/{hold_id}")
    assert len(acme.events("wallet.replenished")) == replenished + 1


# --- settling ----------------------------------------------------------------------------


def test_usage_naming_its_hold_settles_the_call_once(acme: Agency) -> None:
    hold_id = held(acme, "Sales", "5.00")
    first = acme.use("Sales", "4.20", "call-1", hold_id=hold_id)
    assert first.status_code == 201, first.text
    assert first.json()["amount"] == "4.20"
    assert first.json()["uncovered"] is None
    assert figures(acme) == ("5.80", "0.00", "5.80")

    again = acme.use("Sales", "4.20", "call-1", hold_id=hold_id)
    assert again.status_code == 200
    assert again.json() == first.json()
    settled = acme.ok("DELETE", f"/v1/holds/{hold_id}")
    assert (settled["status"], settled["transfer_id"]) == ("settled", first.json()["id"])
    assert figures(acme) == ("5.80", "0.00", "5.80")
    acme.assert_books_balance()


def test_a_settled_hold_named_by_other_usage_is_refused_409(acme: Agency) -> None:
    hold_id = held(acme, "Sales", "1.00")
    acme.use("Sales", "1.00", "call-1", hold_id=hold_id)
    assert_problem(
        acme.use("Sales", "1.00", "call-2", hold_id=hold_id), 409, "hold_already_settled"
    )


def test_a_hold_settles_only_the_subteam_it_was_placed_for(acme: Agency) -> None:
    hold_id = held(acme, "Sales", "1.00")
    response = acme.use("Support", "1.00", "call-1", hold_id=hold_id)
    assert_problem(response, 409, "hold_subteam_mismatch")
    assert figures(acme) == ("10.00", "1.00", "9.00")


def test_an_unknown_hold_is_404_and_changes_nothing(acme: Agency) -> None:
    assert_problem(acme.use("Sales", "1.00", "c", hold_id="hld_nope"), 404, "hold_not_found")
    assert figures(acme) == ("10.00", "0.00", "10.00")


def test_a_call_costing_more_than_its_hold_and_the_wallet_records_the_rest_as_uncovered(
    acme: Agency,
) -> None:
    hold_id = held(acme, "Sales", "6.00")
    acme.use("Support", "4.00", "other")  # 0.00 available besides the hold
    settled = acme.use("Sales", "7.50", "call-1", hold_id=hold_id)
    assert settled.status_code == 201, settled.text
    assert (settled.json()["amount"], settled.json()["uncovered"]) == ("6.00", "1.50")
    assert figures(acme) == ("0.00", "0.00", "0.00")
    [event] = acme.events("usage.uncovered")
    assert event["data"]["uncovered"] == "1.50"
    assert event["data"]["hold_id"] == hold_id
    # A repeat is the first result, matched on the whole cost.
    assert acme.use("Sales", "7.50", "call-1", hold_id=hold_id).status_code == 200
    assert_problem(acme.use("Sales", "6.00", "call-1", hold_id=hold_id), 409, "reference_conflict")
    acme.assert_books_balance()


def test_a_call_held_before_a_pause_still_settles(acme: Agency) -> None:
    hold_id = held(acme, "Sales", "2.00")
    acme.patch("Sales", {"paused": True})
    assert acme.use("Sales", "1.50", "call-1", hold_id=hold_id).status_code == 201
    assert acme.use("Sales", "1.50", "call-2").status_code == 403


def test_an_expired_hold_settles_as_plain_usage(acme: Agency) -> None:
    hold_id = held(acme, "Sales", "2.00", hold_expires_in_seconds=60)
    acme.clock.advance(timedelta(minutes=5))  # not swept yet: it expires when named
    settled = acme.use("Sales", "1.00", "call-1", hold_id=hold_id)
    assert settled.status_code == 201
    assert figures(acme) == ("9.00", "0.00", "9.00")
    assert acme.ok("DELETE", f"/v1/holds/{hold_id}")["status"] == "expired"


def test_an_expired_hold_does_not_let_a_paused_subteam_spend(acme: Agency) -> None:
    hold_id = held(acme, "Sales", "2.00", hold_expires_in_seconds=60)
    acme.patch("Sales", {"paused": True})
    acme.clock.advance(timedelta(minutes=5))
    assert_problem(acme.use("Sales", "1.00", "call-1", hold_id=hold_id), 403, "subteam_paused")


# --- holds and limits --------------------------------------------------------------------


def test_holds_count_toward_the_subteams_limit_until_they_settle(acme: Agency) -> None:
    acme.patch("Sales", {"daily_spend_limit": "5.00"})
    hold_id = held(acme, "Sales", "4.00")
    over = acme.authorize("Sales", expected_cost="1.50", hold=True)
    assert (over["allowed"], over["reason"]) == (False, "subteam_limit_reached")
    assert_problem(acme.use("Sales", "1.01", "plain"), 402, "subteam_limit_reached")
    assert acme.authorize("Sales", expected_cost="1.00")["allowed"] is True

    # Settling is never refused, even past the limit.
    assert acme.use("Sales", "4.50", "call-1", hold_id=hold_id).status_code == 201
    shown = acme.shown("Sales")
    assert (shown["spent_today"], shown["held"]) == ("4.50", "0.00")
    assert acme.authorize("Sales", expected_cost="0.51")["allowed"] is False
    assert acme.authorize("Sales", expected_cost="0.50")["allowed"] is True


# --- the trigger looks at available credits ----------------------------------------------


def arm(acme: Agency, **settings: Any) -> None:
    card = acme.ok("POST", "/v1/payment-methods", {"token": "pm_card_visa"})["id"]
    response = acme.call(
        "PUT", "/v1/wallet/auto-reload", {"enabled": True, "payment_method_id": card, **settings}
    )
    assert response.status_code == 200, response.text


def auto_reloads(acme: Agency) -> list[tuple[str, str]]:
    data = acme.ok("GET", "/v1/reloads")["data"]
    return [(r["status"], r["amount"]) for r in data if r["trigger"] == "auto"]


def test_holding_credits_for_live_calls_starts_a_reload_before_they_end(acme: Agency) -> None:
    arm(acme, threshold="5.00", reload_amount="20.00")
    assert auto_reloads(acme) == []
    held(acme, "Sales", "6.00")  # available 4.00 < 5.00, while the balance is 10.00

    assert auto_reloads(acme) == [("succeeded", "20.00")]
    assert figures(acme) == ("30.00", "6.00", "24.00")


def test_target_mode_tops_available_credits_up_to_the_target(acme: Agency) -> None:
    arm(acme, mode="target", threshold="5.00", target_balance="25.00")
    held(acme, "Sales", "6.00")  # available 4.00

    assert auto_reloads(acme) == [("succeeded", "21.00")]
    assert figures(acme)[2] == "25.00"


def test_a_call_settled_past_its_subteams_limit_records_the_excess_as_uncovered(
    acme: Agency,
) -> None:
    acme.grant(40_000_000, reference="more")  # 50.00
    acme.patch("Sales", {"daily_spend_limit": "10.00"})
    hold_id = held(acme, "Sales", "6.00")
    settled = acme.use("Sales", "25.00", "call-1", hold_id=hold_id)
    assert settled.status_code == 201, settled.text
    assert (settled.json()["amount"], settled.json()["uncovered"]) == ("10.00", "15.00")
    [event] = acme.events("usage.uncovered")
    assert event["data"]["capped_by"] == "spend_limit"
    assert acme.shown("Sales")["spent_today"] == "10.00"
