"""Failure policy, safety rails, target mode and the audit log, with a clock we control.

Integration tests over the API on SQLite and PostgreSQL; reloads run synchronously after
each commit, and "the worker" is one pass of the poller at the current (frozen) time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from refill.reload.machine import claim_attempt
from tests.support.reload_world import CARDS, World, enable, world_on


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    with world_on(db_url) as w:
        yield w


# --- soft declines: retries with back-off -------------------------------------------------


def test_soft_decline_schedules_a_linked_retry_an_hour_later(world: World) -> None:
    world.top_up("25.00")
    enable(world, "pm_card_visa_chargeDeclinedInsufficientFunds")
    world.use("6.00")
    first, retry = world.auto_reloads()
    assert first["status"] == "failed"
    assert first["failure_code"] == "insufficient_funds"
    assert retry["status"] == "pending"
    assert retry["retry_of"] == first["id"]
    assert retry["retry_number"] == 1
    assert retry["not_before"] == "2026-03-10T16:00:00Z"
    assert world.wallet()["auto_reload"]["status"] == "active"
    # The waiting retry is the wallet's one active attempt: more usage starts nothing new.
    charges = world.charges()
    world.use("1.00")
    assert len(world.auto_reloads()) == 2
    assert world.charges() == charges


def test_retries_follow_the_schedule_then_auto_reload_is_suspended(world: World) -> None:
    world.top_up("25.00")
    enable(world, "pm_card_chargeCustomerFail")
    world.use("6.00")
    world.run_worker(timedelta(minutes=59))
    assert world.charges() == 2  # the manual top-up and the first auto attempt only
    world.run_worker(timedelta(minutes=1))  # 1 h: first retry
    world.run_worker(timedelta(hours=6))  # 6 h later: second retry
    world.run_worker(timedelta(hours=24))  # 24 h later: third and last retry
    attempts = world.auto_reloads()
    assert [a["status"] for a in attempts] == ["failed"] * 4
    assert [a["retry_number"] for a in attempts] == [0, 1, 2, 3]
    wallet = world.wallet()
    assert wallet["auto_reload"]["status"] == "suspended"
    assert "4 times" in wallet["auto_reload"]["suspended_reason"]
    assert wallet["balance"] == "19.00"
    world.run_worker(timedelta(days=7))
    world.use("1.00")
    assert len(world.auto_reloads()) == 4  # suspended: no more charges


def test_a_retry_that_comes_due_after_a_manual_top_up_is_canceled_not_charged(
    world: World,
) -> None:
    world.top_up("25.00")
    enable(world, "pm_card_chargeCustomerFail")
    world.use("6.00")
    world.top_up("30.00")  # the owner adds credits by hand: 49.00, above the threshold
    charges = world.charges()
    world.run_worker(timedelta(hours=1))
    retry = world.auto_reloads()[-1]
    assert retry["status"] == "canceled"
    assert retry["failure_code"] == "no_longer_needed"
    assert world.charges() == charges
    assert world.balance() == "49.00"


def test_changing_settings_cancels_the_waiting_retry_and_reloads_at_once(world: World) -> None:
    world.top_up("25.00")
    enable(world, "pm_card_chargeCustomerFail")
    world.use("6.00")
    world.settings(payment_method_id=world.cards["pm_card_mastercard"])
    statuses = [(a["status"], a["failure_code"]) for a in world.auto_reloads()]
    assert statuses == [
        ("failed", "card_declined"),
        ("canceled", "settings_changed"),
        ("succeeded", None),
    ]
    assert world.balance() == "69.00"


# --- hard declines and suspension ---------------------------------------------------------


def test_hard_decline_suspends_at_once_and_never_retries(world: World) -> None:
    world.top_up("25.00")
    enable(world, "pm_card_chargeDeclinedExpiredCard")
    world.use("6.00")
    assert [a["status"] for a in world.auto_reloads()] == ["failed"]
    assert world.wallet()["auto_reload"]["status"] == "suspended"
    world.run_worker(timedelta(days=2))
    assert len(world.auto_reloads()) == 1


def test_editing_other_settings_keeps_a_suspension_until_re_enabled(world: World) -> None:
    world.top_up("25.00")
    enable(world, "pm_card_chargeDeclinedExpiredCard")
    world.use("6.00")
    world.settings(threshold="15.00")
    assert world.wallet()["auto_reload"]["status"] == "suspended"
    assert len(world.auto_reloads()) == 1
    world.settings(enabled=True, threshold="20.00")  # re-enabling resumes, and tries again
    attempts = world.auto_reloads()
    assert len(attempts) == 2
    assert attempts[-1]["failure_code"] == "expired_card"
    assert world.wallet()["auto_reload"]["status"] == "suspended"


@pytest.mark.parametrize(
    ("do_not_honor_is_hard", "status"),
    [(True, "suspended"), (False, "active")],
    ids=["hard-by-default", "configured-soft"],
)
def test_do_not_honor_is_configurable(do_not_honor_is_hard: bool, status: str) -> None:
    from refill.reload.policy import DeclineClass, ReloadPolicy

    policy = ReloadPolicy(do_not_honor_is_hard=do_not_honor_is_hard)
    expected = DeclineClass.HARD if status == "suspended" else DeclineClass.SOFT
    assert policy.classify("do_not_honor") is expected


def test_requires_action_tells_the_owner_what_to_do_and_never_retries_by_itself(
    world: World,
) -> None:
    world.top_up("25.00")
    enable(world, "pm_card_authenticationRequired")
    world.use("6.00")
    world.run_worker(timedelta(days=3))
    (attempt,) = world.auto_reloads()
    assert attempt["status"] == "requires_action"
    assert attempt["next_action"]["type"] == "authenticate"
    assert attempt["next_action"]["client_secret"]
    assert world.charges() == 2


# --- safety rails -------------------------------------------------------------------------


def test_daily_limit_blocks_once_until_local_midnight_then_reloads(world: World) -> None:
    world.call("PATCH", "/v1/agency", {"timezone": "America/New_York"})
    world.top_up("25.00")
    enable(world, "pm_card_visa", daily_limit=2, reload_amount="25.00")
    for amount in ("6.00", "25.00", "25.00"):
        world.use(amount)  # each crosses 20.00; 25.00 is reloaded while the limit allows
    attempts = world.auto_reloads()
    assert [a["status"] for a in attempts] == ["succeeded", "succeeded", "blocked"]
    blocked = attempts[-1]
    # 15:00 UTC on 10 March is 11:00 in New York; the limit lifts at local midnight.
    assert blocked["failure_code"] == "daily_limit"
    assert blocked["blocked_until"] == "2026-03-11T04:00:00Z"
    assert world.wallet()["auto_reload"]["blocked"] == {
        "rail": "daily_limit",
        "until": "2026-03-11T04:00:00Z",
    }
    world.use("1.00")
    assert len(world.auto_reloads()) == 3  # no second blocked attempt while the rail holds
    world.run_worker(timedelta(hours=12, minutes=59))
    assert len(world.auto_reloads()) == 3
    world.run_worker(timedelta(minutes=1))  # local midnight: evaluated again, reloads
    assert [a["status"] for a in world.auto_reloads()][-1] == "succeeded"
    assert world.wallet()["auto_reload"]["blocked"] is None


def test_monthly_cap_blocks_until_the_first_of_next_month(world: World) -> None:
    world.top_up("25.00")
    enable(world, "pm_card_visa", monthly_cap="100.00")
    world.use("6.00")  # 19.00 → 69.00
    world.use("50.00")  # 19.00 → 69.00 (100.00 reloaded this month)
    world.use("50.00")  # 19.00: another 50.00 would pass the cap
    attempts = world.auto_reloads()
    assert [a["status"] for a in attempts] == ["succeeded", "succeeded", "blocked"]
    assert attempts[-1]["failure_code"] == "monthly_cap"
    assert attempts[-1]["blocked_until"] == "2026-04-01T00:00:00Z"
    assert world.balance() == "19.00"
    # Raising the cap is a settings change: the rail is evaluated again at once.
    world.settings(monthly_cap="200.00")
    assert world.balance() == "69.00"


def test_invalid_time_zone_is_refused(world: World) -> None:
    response = world.client.patch(
        "/v1/agency", json={"timezone": "Mars/Olympus"}, headers=world.headers
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_timezone"
    assert world.call("GET", "/v1/agency")["timezone"] == "UTC"


# --- target mode --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "usage", "expected_charge", "expected_balance"),
    [
        ("100.00", "21.666667", "96.67", "100.003333"),
        ("100.00", "5.01", "80.01", "100.00"),
        ("27.00", "0.01", "5.00", "29.99"),
    ],
    ids=["rounds-up-to-whole-cents", "exact-cents", "at-least-the-minimum-reload"],
)
def test_target_mode_charges_what_brings_the_balance_back_to_the_target(
    world: World, target: str, usage: str, expected_charge: str, expected_balance: str
) -> None:
    world.top_up("25.00")
    enable(
        world,
        "pm_card_visa",
        mode="target",
        target_balance=target,
        reload_amount=None,
        threshold="25.00",
    )
    world.use(usage)
    (attempt,) = world.auto_reloads()
    assert attempt["amount"] == expected_charge
    assert world.balance() == expected_balance


def test_target_must_be_above_the_threshold(world: World) -> None:
    body = world.settings(
        status=422,
        enabled=True,
        mode="target",
        threshold="50.00",
        target_balance="50.00",
        payment_method_id=world.cards["pm_card_visa"],
    )
    assert body["code"] == "invalid_auto_reload_settings"
    assert body["field"] == "target_balance"


# --- audit log ----------------------------------------------------------------------------


def test_every_settings_and_card_change_is_in_the_audit_log(world: World) -> None:
    enable(world, "pm_card_visa", threshold="0.00")
    world.settings(threshold="10.00")
    world.settings(enabled=False)
    world.call("DELETE", f"/v1/payment-methods/{world.cards['pm_card_mastercard']}", status=204)
    world.call("PATCH", "/v1/agency", {"timezone": "Europe/Paris"})
    entries = world.call("GET", "/v1/audit-log")["data"]
    actions = [e["action"] for e in entries]
    assert actions[:5] == [
        "agency.updated",
        "payment_method.removed",
        "auto_reload.updated",
        "auto_reload.updated",
        "auto_reload.updated",
    ]
    assert actions.count("payment_method.added") == len(CARDS)
    threshold_change = entries[3]
    assert threshold_change["before"]["threshold"] == "0.00"
    assert threshold_change["after"]["threshold"] == "10.00"
    assert entries[0]["before"] == {"timezone": "UTC"}
    assert entries[0]["after"] == {"timezone": "Europe/Paris"}
    assert all(e["actor"].startswith("key:key_") for e in entries)


def test_a_suspension_is_audited_as_the_systems_doing(world: World) -> None:
    world.top_up("25.00")
    enable(world, "pm_card_chargeDeclinedExpiredCard")
    world.use("6.00")
    latest = world.call("GET", "/v1/audit-log?limit=1")["data"][0]
    assert latest["action"] == "auto_reload.suspended"
    assert latest["actor"] == "system"
    assert latest["before"]["status"] == "active"
    assert latest["after"]["status"] == "suspended"


def test_a_stuck_charge_is_reported_once_not_on_every_poller_pass(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:

    world.top_up("25.00")
    world.refill.db.after_commit.clear()  # the charge will never get an answer
    enable(world, "pm_card_visa")
    world.use("6.00")
    (attempt,) = world.auto_reloads()
    assert world.refill.db.write(
        # A claimer that lives on (its lease holds), whose gateway never answers.
        lambda tx: claim_attempt(tx, world.refill.policy, attempt["id"], lease=timedelta(days=30))
    )
    with caplog.at_level("ERROR", logger="refill.worker"):
        world.run_worker(timedelta(minutes=31))
        world.run_worker(timedelta(seconds=2))
        world.run_worker(timedelta(seconds=2))
    reports = [r for r in caplog.records if attempt["id"] in r.getMessage()]
    assert len(reports) == 1
    assert "has been charging since" in reports[0].getMessage()
