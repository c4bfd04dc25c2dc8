"""GET /v1/wallet/auto-reload/explain on SQLite and PostgreSQL: why Auto Reload did (not)
reload, evaluated now from what the database holds (settings, available credits, the active
auto-reload, the rails, the card), with nothing written to answer; and the billing page's
checklist of it (``_explain.html``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from refill.api.explain import router as explain_router
from refill.bootstrap import Refill
from refill.clock import FrozenClock
from refill.db.database import Tx
from refill.db.schema import metadata
from refill.portal.common import templates
from refill.services.explain import explain_auto_reload
from refill.web import create_app
from tests.support.subteam_api import Agency, assert_problem

PATH = "/v1/wallet/auto-reload/explain"
CHECKS = [
    "enabled",
    "below_threshold",
    "no_active_attempt",
    "not_suspended",
    "not_blocked",
    "card_usable",
    "no_retry_waiting",
]


@pytest.fixture
def app_client(svc: Refill) -> Iterator[TestClient]:
    """The API with the explain route (``api/app.ROUTERS`` does not list it yet)."""
    app = create_app(svc)
    app.include_router(explain_router)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def acme(app_client: TestClient, svc: Refill, clock: FrozenClock) -> Agency:
    return Agency.open(app_client, svc, clock)


def enable(acme: Agency, test_card: str = "pm_card_visa", **change: Any) -> str:
    """Save a card and turn Auto Reload on: below 20.00, add 50.00."""
    card_id = str(acme.ok("POST", "/v1/payment-methods", {"token": test_card})["id"])
    body = {
        "enabled": True,
        "threshold": "20.00",
        "reload_amount": "50.00",
        "payment_method_id": card_id,
        **change,
    }
    acme.ok("PUT", "/v1/wallet/auto-reload", body)
    return card_id


def explained(acme: Agency) -> dict[str, Any]:
    body: dict[str, Any] = acme.ok("GET", PATH)
    assert [c["name"] for c in body["checks"]] == CHECKS
    return body


def check(body: dict[str, Any], name: str) -> tuple[bool, str]:
    found = next(c for c in body["checks"] if c["name"] == name)
    return found["passed"], found["detail"]


def failed(body: dict[str, Any]) -> set[str]:
    return {c["name"] for c in body["checks"] if not c["passed"]}


def test_a_new_wallet_is_off_with_no_threshold_and_no_card(acme: Agency) -> None:
    body = explained(acme)

    assert body["verdict"] == "off"
    assert body["evaluated_at"] == "2026-12-03T09:00:00Z"
    assert check(body, "enabled") == (False, "Auto Reload is off.")
    assert check(body, "below_threshold") == (False, "No minimum threshold is set.")
    assert check(body, "card_usable") == (False, "No card is chosen for Auto Reload.")
    assert failed(body) == {"enabled", "below_threshold", "card_usable"}


@pytest.mark.parametrize(
    ("token", "verdict", "failing", "name", "detail"),
    [
        pytest.param(
            "pm_card_visa",
            "not_needed",
            {"below_threshold"},
            "below_threshold",
            "Available credits (50.00 USD) are not below the threshold (20.00 USD).",
            id="reloaded-so-not-needed",
        ),
        pytest.param(
            "pm_card_visa_chargeDeclinedInsufficientFunds",
            "waiting_for_retry",
            {"no_active_attempt", "no_retry_waiting"},
            "no_retry_waiting",
            "Retry 1 of a declined auto-reload waits until 2026-12-03T10:00:00Z.",
            id="soft-decline-retry-waiting-until-T",
        ),
        pytest.param(
            "pm_card_authenticationRequired",
            "reload_in_progress",
            {"no_active_attempt"},
            "no_active_attempt",
            "is waiting for the owner to authenticate it (requires_action).",
            id="3-d-secure-in-progress",
        ),
        pytest.param(
            "pm_card_chargeDeclinedExpiredCard",
            "suspended",
            {"not_suspended", "card_usable"},  # the card is skipped until chosen again
            "not_suspended",
            "Auto Reload was suspended: the card was declined (expired_card) and will not work "
            "again; choose another card.",
            id="hard-decline-suspended-with-reason",
        ),
    ],
)
def test_what_became_of_the_reload_is_the_verdict_and_the_checks_say_why(
    acme: Agency,
    token: str,
    verdict: str,
    failing: set[str],
    name: str,
    detail: str,
) -> None:
    acme.refill.process_new_attempts_inline()
    enable(acme, token)  # an empty wallet: the reload is charged at once

    body = explained(acme)

    assert body["verdict"] == verdict
    assert failed(body) == failing
    passed, said = check(body, name)
    assert not passed
    assert detail in said


def test_held_credits_count_against_the_threshold_and_a_pending_reload_is_in_progress(
    acme: Agency,
) -> None:
    acme.grant(60_000_000)
    enable(acme)
    acme.subteam("Sales")
    assert explained(acme)["verdict"] == "not_needed"

    acme.authorize("Sales", expected_cost="45.00", hold=True)  # 15.00 available
    body = explained(acme)

    assert check(body, "below_threshold") == (
        True,
        "Available credits (15.00 USD) are below the threshold (20.00 USD).",
    )
    assert body["verdict"] == "reload_in_progress"  # the hold enqueued it; no worker ran yet
    passed, said = check(body, "no_active_attempt")
    assert not passed
    assert re.fullmatch(r"Auto-reload rld_\w+ is pending\.", said), said


@pytest.mark.parametrize(
    ("limits", "words", "until", "lifted"),
    [
        pytest.param(
            {"daily_limit": 1},
            "daily reload limit",
            "2026-12-04T00:00:00Z",
            datetime(2026, 12, 4, 0, 0, 1, tzinfo=UTC),
            id="daily-limit-until-midnight",
        ),
        pytest.param(
            {"monthly_cap": "60.00"},
            "monthly spending cap",
            "2027-01-01T00:00:00Z",
            datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC),
            id="monthly-cap-until-next-month",
        ),
    ],
)
def test_a_rail_pauses_reloads_until_it_lifts_and_then_one_would_start(
    acme: Agency, limits: dict[str, Any], words: str, until: str, lifted: datetime
) -> None:
    acme.refill.process_new_attempts_inline()
    enable(acme, **limits)  # 50.00 reloaded at once
    acme.subteam("Sales")
    acme.use("Sales", "35.00", "u-1")  # 15.00: the next reload is blocked by the rail

    paused = explained(acme)
    assert paused["verdict"] == "paused_by_limit"
    assert failed(paused) == {"not_blocked"}
    assert check(paused, "not_blocked") == (False, f"Paused by the {words} until {until}.")

    acme.clock.advance(lifted - acme.clock.now())
    due = explained(acme)
    assert due["verdict"] == "would_reload"
    assert failed(due) == set()
    assert check(due, "enabled") == (
        True,
        "Auto Reload is on: a reload now would charge 50.00 USD.",
    )


def test_a_card_past_its_expiry_month_fails_the_card_check(acme: Agency) -> None:
    acme.grant(100_000_000)
    enable(acme)
    acme.clock.advance(datetime(2031, 1, 1, tzinfo=UTC) - acme.clock.now())

    body = explained(acme)

    assert body["verdict"] == "not_needed"
    assert check(body, "card_usable") == (False, "Visa ending 4242 expired at the end of 12/2030.")


def _everything(tx: Tx) -> dict[str, list[str]]:
    return {
        table.name: sorted(repr(tuple(row)) for row in tx.conn.execute(select(table)))
        for table in metadata.sorted_tables
    }


def test_explaining_writes_nothing(acme: Agency) -> None:
    acme.refill.process_new_attempts_inline()
    enable(acme, "pm_card_visa_chargeDeclinedInsufficientFunds")
    explained(acme)  # the key's last use is recorded once a minute: not by what follows
    before = acme.refill.db.read(_everything)

    for _ in range(3):
        explained(acme)
        explain_auto_reload(acme.refill.db, acme.refill.policy, agency_id=acme.agency_id)

    assert acme.refill.db.read(_everything) == before


def test_only_the_owner_may_ask(acme: Agency) -> None:
    acme.subteam("Sales")

    assert_problem(acme.call("GET", PATH, as_="Sales"), 403, "forbidden")
    assert_problem(acme.api.get(PATH), 401, "unauthenticated")


def test_the_checklist_shows_each_check_with_its_mark_words_and_detail(acme: Agency) -> None:
    acme.refill.process_new_attempts_inline()
    enable(acme, "pm_card_visa_chargeDeclinedInsufficientFunds")
    explanation = explain_auto_reload(acme.refill.db, acme.refill.policy, agency_id=acme.agency_id)

    html = templates.env.get_template("_explain.html").render(explanation=explanation)

    assert html.count('data-testid="explain"') == 1
    items = re.findall(r'<li data-check="(\w+)" data-passed="(true|false)">(.*?)</li>', html, re.S)
    assert [(name, passed == "true") for name, passed, _ in items] == [
        (c.name.value, c.passed) for c in explanation.checks
    ]
    for (_, passed, inner), shown in zip(items, explanation.checks, strict=True):
        assert ("Passed" if passed == "true" else "Not passed") in inner
        assert shown.label in inner
        assert shown.detail in inner
    assert "A declined reload waits for its retry." in html
    assert "2026-12-03 09:00 (UTC)" in html


def test_the_checklist_uses_the_pages_clock_words_when_it_has_them(acme: Agency) -> None:
    explanation = explain_auto_reload(acme.refill.db, acme.refill.policy, agency_id=acme.agency_id)

    html = templates.env.get_template("_explain.html").render(
        explanation=explanation, when=lambda moment: "10:00 local", zone="Europe/Paris"
    )

    assert "Checked 10:00 local (Europe/Paris)." in html
    assert 'data-verdict="off"' in html
