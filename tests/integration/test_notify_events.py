"""Telling the owner: events written with the change they describe, the e-mail each calls for
(received by a real SMTP server), receipts, card expiry notices, and the outbox without
SMTP. Both engines."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from refill import services
from refill.bootstrap import Refill
from refill.clock import FrozenClock
from refill.db.schema import payment_methods
from refill.errors import InsufficientCredits
from refill.reload.settings import SettingsChange
from refill.roles import MemberRole
from refill.services import members, notifications
from refill.web import create_app
from tests.support import cli
from tests.support.mailbox import Mailbox, Received
from tests.support.notifying import notifying_refill
from tests.support.portal import PASSWORD, make_agency

START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
USD = 1_000_000  # micro-units in a dollar


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox().start()
    yield box
    box.stop()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def told(db_url: str, mailbox: Mailbox, clock: FrozenClock) -> Iterator[Refill]:
    refill = notifying_refill(db_url, smtp_url=mailbox.url, clock=clock)
    yield refill
    refill.close()


class Agency:
    """An agency with an owner, an admin, a read-only member and a billing address."""

    def __init__(
        self,
        refill: Refill,
        card_token: str = "pm_card_visa",  # noqa: S107  a sandbox test card
        name: str = "Acme Voice",
    ) -> None:
        self.refill = refill
        made = make_agency(refill, name)
        self.id, self.owner_email = made.id, made.owner_email
        self.headers = {"Authorization": f"Bearer {made.api_key}"}
        for email, role in (("admin@acme.test", MemberRole.ADMIN), ("m@acme.test", "member")):
            members.add_member(
                refill.db,
                agency_id=self.id,
                email=email,
                role=MemberRole(role),
                password=PASSWORD,
                actor="test",
            )
        services.update_agency(
            refill.db,
            agency_id=self.id,
            change=services.AgencyChange(billing_emails=["books@acme.test"]),
            actor="test",
        )
        self.subteam = services.create_subteam(refill.db, agency_id=self.id, name="s").id
        self.card = self.save_card(card_token)
        self.uses = 0

    def save_card(self, token: str) -> str:
        card, _ = services.save_payment_method(
            self.refill.db, self.refill.gateway, agency_id=self.id, token=token, actor="test"
        )
        return card.id

    def grant(self, dollars: int) -> None:
        self.uses += 1
        services.grant_credits(
            self.refill.db, agency_id=self.id, amount=dollars * USD, reference=f"g{self.uses}"
        )

    def use(self, dollars: float) -> None:
        self.uses += 1
        services.record_usage(
            self.refill.db,
            agency_id=self.id,
            subteam_id=self.subteam,
            amount=int(dollars * USD),
            reference=f"u{self.uses}",
        )

    def top_up(self, dollars: int, card: str | None = None) -> str:
        attempt, _ = services.add_credits(
            self.refill.db,
            self.refill.processor,
            agency_id=self.id,
            currency="USD",
            amount=dollars * USD,
            payment_method_id=card or self.card,
            request_key=None,
        )
        return attempt.id

    def auto_reload(self, **change: Any) -> None:
        services.update_auto_reload(
            self.refill.db,
            self.refill.gateway,
            self.refill.policy,
            agency_id=self.id,
            currency="USD",
            actor="test",
            change=SettingsChange(**change),
        )

    def arm(self) -> None:
        """25.00 of credits; auto-reload of 50.00 below 20.00 on the saved card."""
        self.grant(25)
        self.auto_reload(
            enabled=True, threshold=20 * USD, reload_amount=50 * USD, payment_method_id=self.card
        )

    def types(self) -> list[str]:
        """Event types, oldest first."""
        self.refill.notifier.run_due_work(wait=True)
        page = notifications.list_events(self.refill.db, agency_id=self.id, limit=200)
        return [e.type for e in reversed(page.data)]

    def events(self, type_: str) -> list[dict[str, Any]]:
        page = notifications.list_events(self.refill.db, agency_id=self.id, type_=type_)
        return [e.data for e in reversed(page.data)]

    def authorized(self) -> bool:
        answer = services.authorize_call(self.refill.db, agency_id=self.id, subteam_id=self.subteam)
        return answer.allowed


def link_in(received: Received) -> str:
    found = re.search(r"https://billing\.example\.com(/portal/\S+)", received.text)
    assert found, received.text
    return found.group(1)


# --- failures and suspension --------------------------------------------------------------


def test_a_hard_decline_emits_failed_without_retry_then_suspended_and_emails_the_facts(
    told: Refill, mailbox: Mailbox, record_property: Any
) -> None:
    agency = Agency(told, "pm_card_chargeDeclinedExpiredCard")
    agency.arm()
    sent = time.monotonic()

    agency.use(6)  # 19.00 < 20.00: the reload is tried, and declined for good

    failed_mail, suspended_mail = sorted(mailbox.wait_for(2), key=lambda m: m.subject)
    record_property("hard_decline_to_email_seconds", round(failed_mail.at - sent, 3))
    [failed] = agency.events("auto_reload.failed")
    assert (failed["decline_class"], failed["will_retry_at"]) == ("hard", None)
    assert (failed["amount"], failed["currency"], failed["card"]["last4"]) == (
        "50.00",
        "USD",
        "0069",
    )
    types = agency.types()
    assert types.index("auto_reload.failed") < types.index("auto_reload.suspended")
    # Owners, admins and the billing addresses are told; a read-only member is not.
    everyone = ["admin@acme.test", "books@acme.test", agency.owner_email]
    assert failed_mail.to == suspended_mail.to == sorted(everyone)
    assert failed_mail.subject == "Auto Reload failed: Visa ending 0069 was declined"
    for fact in ("$50.00", "the card has expired", "will not try this card again"):
        assert fact in failed_mail.text
    assert link_in(failed_mail) == "/portal/team/billing"
    assert suspended_mail.subject.startswith("Auto Reload is suspended")
    assert "Visa ending 0069" in suspended_mail.text
    assert "$50.00" in failed_mail.html  # the HTML part says the same

    agency.auto_reload(payment_method_id=agency.save_card("pm_card_visa"))  # the owner acts
    [resumed] = agency.events("auto_reload.resumed")
    assert resumed == {"actor": "test"}
    types = agency.types()
    assert types[types.index("auto_reload.resumed") - 1] == "settings.updated"


def test_a_declined_top_up_by_hand_is_an_event_but_not_an_email(
    told: Refill, mailbox: Mailbox
) -> None:
    agency = Agency(told)
    declined = agency.save_card("pm_card_visa_chargeDeclinedInsufficientFunds")
    agency.top_up(10, card=declined)

    [failed] = agency.events("topup.failed")
    assert (failed["decline_code"], failed["decline_class"]) == ("insufficient_funds", "soft")
    assert "will_retry_at" not in failed  # a top-up is never retried by itself
    told.notifier.run_due_work(wait=True)
    assert mailbox.messages == []  # the owner saw it on the page, as it happened


def test_a_soft_decline_gives_its_retry_time_and_emails_once_for_the_whole_chain(
    told: Refill, mailbox: Mailbox, clock: FrozenClock
) -> None:
    agency = Agency(told, "pm_card_visa_chargeDeclinedInsufficientFunds")
    agency.arm()
    agency.use(6)
    for wait in (timedelta(hours=1), timedelta(hours=6), timedelta(hours=24)):
        clock.advance(wait)
        told.processor.run_due_work()

    failures = agency.events("auto_reload.failed")
    assert [f["retry_number"] for f in failures] == [0, 1, 2, 3]
    assert failures[0]["will_retry_at"] == (START + timedelta(hours=1)).isoformat()[:19] + "Z"
    assert failures[0]["decline_class"] == "soft"
    assert failures[-1]["will_retry_at"] is None
    assert agency.types()[-1] == "auto_reload.suspended"
    told.notifier.run_due_work(wait=True)
    mail = mailbox.wait_for(2)
    time.sleep(0.3)  # anything more would have arrived by now
    assert sorted(m.subject.split(":")[0] for m in mailbox.messages) == [
        "Auto Reload failed",
        "Auto Reload is suspended for Acme Voice",
    ]
    [first] = [m for m in mail if m.subject.startswith("Auto Reload failed")]
    assert "We will try again at 2026-11-25 13:00 (UTC)" in first.text
    assert "insufficient" in first.text or "enough funds" in first.text


def test_three_d_secure_needed_links_to_the_portal_and_no_secret_leaves_refill(
    told: Refill, mailbox: Mailbox
) -> None:
    agency = Agency(told, "pm_card_authenticationRequired")
    agency.arm()
    agency.use(6)

    [mail] = mailbox.wait_for(1)
    [event] = agency.events("auto_reload.requires_action")
    assert event["authenticate_url"] == f"/portal/team/billing#reload-{event['reload_id']}"
    assert link_in(mail) == event["authenticate_url"]
    assert mail.subject == "Your bank asks you to confirm a payment of $50.00"
    secret = told.gateway.calls[-1][1].next_action["client_secret"]  # type: ignore[attr-defined]
    stored = json.dumps([notifications.list_events(told.db, agency_id=agency.id).data], default=str)
    assert secret not in stored
    assert secret not in mail.text + mail.html
    assert "secret" not in json.dumps(event)


def test_a_rail_that_blocks_a_reload_says_which_and_until_when(
    told: Refill, mailbox: Mailbox
) -> None:
    agency = Agency(told)
    agency.arm()
    agency.auto_reload(daily_limit=1)
    agency.use(6)  # reloads once: 69.00
    agency.use(50)  # 19.00 again: the day's one reload is spent

    [blocked] = agency.events("auto_reload.blocked")
    assert blocked["rail"] == "daily_limit"
    assert blocked["until"] == "2026-11-26T00:00:00Z"
    [mail] = [m for m in mailbox.wait_for(2) if "paused" in m.subject]
    assert mail.subject == "Auto Reload paused by your daily reload limit"
    assert "2026-11-26 00:00 (UTC)" in mail.text


# --- the balance: depleted, replenished, low ----------------------------------------------


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["use", "grant"]), st.integers(min_value=1, max_value=30)),
        min_size=1,
        max_size=12,
    )
)
def test_depleted_and_replenished_fire_exactly_when_authorize_flips(
    told: Refill, steps: list[tuple[str, int]]
) -> None:
    agency = Agency(told)
    agency.grant(10)
    flips: list[str] = []
    allowed = agency.authorized()
    for action, dollars in steps:
        with contextlib.suppress(InsufficientCredits):  # refused: changes nothing
            agency.use(dollars) if action == "use" else agency.grant(dollars)
        now_allowed = agency.authorized()
        if now_allowed != allowed:
            flips.append("wallet.replenished" if now_allowed else "wallet.depleted")
        allowed = now_allowed

    wallet_events = [t for t in agency.types() if t in ("wallet.depleted", "wallet.replenished")]
    assert wallet_events == ["wallet.replenished", *flips]  # the first: a new wallet's credits


def test_depleted_and_replenished_are_emailed_but_a_new_wallets_first_credits_are_not(
    told: Refill, mailbox: Mailbox
) -> None:
    agency = Agency(told)
    agency.grant(10)
    agency.use(10)
    agency.grant(3)

    # Sent by a pool of threads: they may arrive in either order.
    subjects = sorted(m.subject for m in mailbox.wait_for(2))
    assert subjects == [
        "Calls are possible again: $3.00 in your wallet",
        "No credits left: calls are being refused now",
    ]
    told.notifier.run_due_work(wait=True)
    assert len(mailbox.messages) == 2


def test_a_low_balance_alert_works_with_auto_reload_off_and_emails_once_a_day_unless_money_came_in(
    told: Refill, mailbox: Mailbox, clock: FrozenClock
) -> None:
    agency = Agency(told)
    agency.grant(30)
    services.set_low_balance_alert(told.db, agency_id=agency.id, alert=20 * USD, actor="test")

    agency.use(11)  # 19.00: below 20.00
    agency.use(1)  # still below: no new crossing
    agency.top_up(10)  # 28.00: money came in (a receipt)
    agency.use(9)  # 19.00 again: told again
    agency.grant(5)  # 24.00, but no money from a charge
    agency.use(5)  # 19.00: the event, but no third e-mail today
    clock.advance(timedelta(hours=25))
    agency.grant(5)
    agency.use(5)  # a day later: told again

    assert [e["balance"] for e in agency.events("wallet.low_balance")] == ["19.00"] * 4
    told.notifier.run_due_work(wait=True)
    lows = [m for m in mailbox.wait_for(4) if m.subject.startswith("Low balance")]
    assert len(lows) == 3
    assert lows[0].subject == "Low balance: $19.00 left in your Refill wallet"
    assert "below your alert level of $20.00" in lows[0].text


def test_without_an_alert_the_threshold_alerts_only_while_auto_reload_cannot_help(
    told: Refill,
) -> None:
    agency = Agency(told)
    agency.arm()
    agency.use(6)  # active: it reloads instead of alerting
    assert agency.events("wallet.low_balance") == []
    agency.auto_reload(enabled=False)
    agency.use(50)  # 19.00 with auto-reload off: the threshold is the alert

    [low] = agency.events("wallet.low_balance")
    assert (low["balance"], low["alert_level"]) == ("19.00", "20.00")


# --- receipts ------------------------------------------------------------------------------


def test_receipts_are_numbered_per_agency_without_gaps_under_concurrent_charges(
    told: Refill,
) -> None:
    agency, other = Agency(told), Agency(told, name="Other Agency")
    errors: list[BaseException] = []

    def charge_five() -> None:
        try:
            for _ in range(5):
                agency.top_up(10)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=charge_five) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.top_up(10)

    assert errors == []
    issued = agency.events("topup.succeeded")
    numbers = sorted(int(e["receipt_number"].removeprefix("R-")) for e in issued)
    assert numbers == list(range(1, 31))
    assert [e["receipt_number"] for e in other.events("topup.succeeded")] == ["R-000001"]


def test_a_receipt_keeps_what_it_said_when_the_card_and_details_change_later(
    told: Refill, mailbox: Mailbox
) -> None:
    agency = Agency(told)
    services.update_agency(
        told.db,
        agency_id=agency.id,
        change=services.AgencyChange(billing_address="1 Main St\nSpringfield", tax_id="VAT1"),
        actor="test",
    )
    reload_id = agency.top_up(40)
    services.update_agency(
        told.db,
        agency_id=agency.id,
        change=services.AgencyChange(billing_address="2 Elm St", tax_id=""),
        actor="test",
    )
    with told.db.engine.begin() as conn:  # the card network renewed the card
        conn.execute(update(payment_methods).values(last4="1111", exp_year=2031))

    with TestClient(create_app(told)) as client:
        receipt = client.get(f"/v1/reloads/{reload_id}/receipt", headers=agency.headers).json()
    assert receipt["number"] == "R-000001"
    assert (receipt["amount"], receipt["currency"]) == ("40.00", "USD")
    assert (receipt["card_brand"], receipt["card_last4"]) == ("visa", "4242")
    assert (receipt["billing_address"], receipt["tax_id"]) == ("1 Main St\nSpringfield", "VAT1")
    assert receipt["date"] == "2026-11-25"
    [mail] = [m for m in mailbox.wait_for(1) if m.subject.startswith("Receipt")]
    assert mail.subject == "Receipt R-000001: $40.00 added to your Refill wallet"
    assert "Visa ending 4242" in mail.text
    assert link_in(mail) == f"/portal/team/receipts/{reload_id}"


def test_receipt_emails_go_only_to_those_who_want_them(told: Refill, mailbox: Mailbox) -> None:
    agency = Agency(told)
    admin = next(
        r for r in members.billing_recipients(told.db, agency_id=agency.id) if r.role == "admin"
    )
    members.set_email_choices(
        told.db, agency_id=agency.id, user_id=admin.user_id, receipts=False, low_balance=True
    )
    agency.top_up(10)

    [mail] = mailbox.wait_for(1)
    assert mail.to == sorted(["books@acme.test", agency.owner_email])


# --- cards that expire ---------------------------------------------------------------------


def test_card_expiry_is_told_30_and_7_days_before_and_when_expired_once_each(
    told: Refill, mailbox: Mailbox, clock: FrozenClock
) -> None:
    agency = Agency(told)  # the sandbox card expires at the end of 12/2030
    seen: list[list[str]] = []
    for day in ("2030-11-30", "2030-12-02", "2030-12-20", "2030-12-25", "2030-12-31", "2031-01-01"):
        clock.advance(datetime.fromisoformat(day + "T12:00+00:00") - clock.now())
        told.notifier.run_daily_jobs()
        told.notifier.run_daily_jobs()  # a second run the same day tells nothing new
        seen.append(agency.types())

    assert [s.count("payment_method.expiring") for s in seen] == [0, 1, 1, 2, 2, 2]
    assert seen[-1].count("payment_method.expired") == 1
    assert [e["days"] for e in agency.events("payment_method.expiring")] == [30, 7]
    subjects = [m.subject for m in mailbox.wait_for(3)]
    assert subjects == [
        "Visa ending 4242 expires in 30 days",
        "Visa ending 4242 expires in 7 days",
        "Visa ending 4242 has expired",
    ]


# --- the API over the outbox ---------------------------------------------------------------


def test_events_are_listed_newest_first_filtered_by_type_and_paged(told: Refill) -> None:
    agency = Agency(told)
    agency.grant(10)
    for _ in range(3):
        agency.use(10)
        agency.grant(10)

    with TestClient(create_app(told)) as client:
        first = client.get("/v1/events?limit=2", headers=agency.headers).json()
        rest = client.get(
            f"/v1/events?limit=50&cursor={first['next_cursor']}", headers=agency.headers
        ).json()
        depleted = client.get("/v1/events?type=wallet.depleted", headers=agency.headers).json()
        one = client.get(f"/v1/events/{first['data'][0]['id']}", headers=agency.headers).json()

    everything = first["data"] + rest["data"]
    assert [e["type"] for e in everything] == ["wallet.replenished", "wallet.depleted"] * 3 + [
        "wallet.replenished"
    ]
    assert [e["created_at"] for e in everything] == sorted(
        (e["created_at"] for e in everything), reverse=True
    )
    assert [e["type"] for e in depleted["data"]] == ["wallet.depleted"] * 3
    assert one == first["data"][0]
    assert one["id"].startswith("evt_")


def test_without_smtp_emails_wait_in_the_outbox_are_listed_and_logged_only_in_development(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    production = notifying_refill(db_url, smtp_url=None)
    try:
        agency = Agency(production)
        agency.grant(10)
        agency.use(10)
        production.notifier.run_due_work(wait=True)
        listed = cli.run(["emails", "list", "--json"], db_url)
    finally:
        production.close()
    assert listed.returncode == 0, listed.stderr
    [depleted] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (depleted["template"], depleted["status"]) == ("depleted", "pending")
    assert depleted["to"] == sorted(["admin@acme.test", "books@acme.test", agency.owner_email])
    assert "calls are being refused" not in caplog.text  # production: never in the log

    development = notifying_refill(db_url, smtp_url=None, public_url="http://127.0.0.1:8000")
    try:
        with caplog.at_level(logging.INFO, logger="refill.notify"):
            agency.refill = development
            agency.grant(3)  # calls possible again
            assert development.notifier.drain()
    finally:
        development.close()
    assert "e-mail not sent (no REFILL_SMTP_URL)" in caplog.text
    assert "Calls are possible again: $3.00 in your wallet" in caplog.text
    assert "http://127.0.0.1:8000/portal/team/billing" in caplog.text
