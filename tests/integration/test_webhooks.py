"""Signed webhooks: every delivery verifies with the endpoint's secret (Standard Webhooks,
checked with the ``standardwebhooks`` library as a receiver would), failures and hangs are
retried with the same ``webhook-id``, a rotation signs with both secrets for a day, an
endpoint failing for three days is disabled, and Refill is never aimed at its own network.
Both engines."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import select

from refill import services
from refill.bootstrap import Refill
from refill.clock import FrozenClock
from refill.db.schema import webhook_deliveries
from refill.web import create_app
from tests.support.mailbox import Mailbox
from tests.support.notifying import notifying_refill
from tests.support.portal import make_agency
from tests.support.receiver import Receiver

USD = 1_000_000


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox().start()
    yield box
    box.stop()


class Owner:
    """An agency's owner on the API, with one webhook endpoint at the receiver."""

    def __init__(self, refill: Refill, receiver: Receiver, events: list[str] | None = None):
        self.refill = refill
        made = make_agency(refill)
        self.agency_id = made.id
        self.client = TestClient(create_app(refill))
        self.headers = {"Authorization": f"Bearer {made.api_key}"}
        self.subteam = services.create_subteam(refill.db, agency_id=made.id, name="s").id
        self.endpoint = self.call(
            "POST", "/v1/webhook-endpoints", {"url": receiver.url(), "events": events or ["*"]}
        )
        self.secret = str(self.endpoint["secret"])
        self.uses = 0

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.client.request(method, path, json=body, headers=self.headers)
        assert response.status_code < 300, response.text
        return response.json() if response.content else None

    def money_moves(self, grant: int = 10, use: int = 10) -> None:
        """Credits, then all spent: ``wallet.replenished`` then ``wallet.depleted``."""
        self.uses += 1
        services.grant_credits(
            self.refill.db, agency_id=self.agency_id, amount=grant * USD, reference=f"g{self.uses}"
        )
        services.record_usage(
            self.refill.db,
            agency_id=self.agency_id,
            subteam_id=self.subteam,
            amount=use * USD,
            reference=f"u{self.uses}",
        )

    def deliveries(self) -> list[dict[str, Any]]:
        path = f"/v1/webhook-endpoints/{self.endpoint['id']}/deliveries"
        return list(self.call("GET", path)["data"])


@pytest.fixture
def live(db_url: str) -> Iterator[Refill]:
    """The instant path and a poller for retries, on the real clock (signatures carry it)."""
    refill = notifying_refill(db_url, smtp_url=None, poll=True, timeout=1.0)
    yield refill
    refill.close()


def test_every_delivery_is_the_event_signed_by_the_standard_with_the_endpoint_secret(
    live: Refill, receiver: Receiver
) -> None:
    owner = Owner(live, receiver)
    owner.money_moves()

    hits = receiver.wait_for(2)
    assert sorted(h.event["type"] for h in hits) == ["wallet.depleted", "wallet.replenished"]
    for hit in hits:
        assert hit.verified_with(owner.secret)
        assert not hit.verified_with("whsec_" + "A" * 43)  # another secret does not verify
        assert hit.headers["webhook-id"] == hit.event["id"]
        assert hit.headers["content-type"] == "application/json"
        event = owner.call("GET", f"/v1/events/{hit.event['id']}")
        assert hit.event == event  # the body is the event as the API shows it
    assert owner.endpoint["secret"].startswith("whsec_")
    assert "secret" not in owner.call("GET", f"/v1/webhook-endpoints/{owner.endpoint['id']}")


def test_an_endpoint_gets_only_the_types_it_asked_for(live: Refill, receiver: Receiver) -> None:
    owner = Owner(live, receiver, events=["wallet.depleted"])
    owner.money_moves()
    owner.money_moves()

    hits = receiver.wait_for(2)
    live.notifier.run_due_work(wait=True)
    assert [h.event["type"] for h in receiver.hits] == ["wallet.depleted"] * 2
    assert len(hits) == 2


def test_a_failing_receiver_is_retried_with_the_same_webhook_id_until_it_answers_2xx(
    live: Refill, receiver: Receiver
) -> None:
    owner = Owner(live, receiver, events=["wallet.replenished"])
    receiver.plan.extend([500, 503, 404, 204])
    before = delivery_counts()

    owner.money_moves(use=5)

    hits = receiver.wait_for(4)
    assert [h.answered for h in hits] == [500, 503, 404, 204]
    assert len({h.headers["webhook-id"] for h in hits}) == 1
    assert all(h.verified_with(owner.secret) for h in hits)
    assert live.notifier.drain()
    [delivery] = owner.deliveries()
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == (
        "succeeded",
        4,
        204,
    )
    counted = delivery_counts()  # /metrics: each try by its outcome
    assert {k: counted[k] - before[k] for k in counted} == {
        "succeeded": 1,
        "retrying": 3,
        "failed": 0,
    }


def delivery_counts() -> dict[str, float]:
    return {
        outcome: REGISTRY.get_sample_value("refill_webhook_deliveries_total", {"outcome": outcome})
        or 0.0
        for outcome in ("succeeded", "retrying", "failed")
    }


def test_a_receiver_that_hangs_past_the_timeout_is_retried_and_never_delays_a_reload(
    live: Refill, receiver: Receiver
) -> None:
    owner = Owner(live, receiver, events=["wallet.replenished"])
    receiver.plan.append(3.0)  # hangs 3 s; the timeout is 1 s

    owner.money_moves(use=5)
    first = receiver.wait_for(1)[0]
    # While the receiver hangs, the wallet keeps working: a top-up by card is credited.
    card, _ = services.save_payment_method(
        live.db, live.gateway, agency_id=owner.agency_id, token="pm_card_visa", actor="test"
    )
    attempt, _ = services.add_credits(
        live.db,
        live.processor,
        agency_id=owner.agency_id,
        currency="USD",
        amount=20 * USD,
        payment_method_id=card.id,
        request_key=None,
    )
    credited_while_hanging = len(receiver.hits) == 1 and attempt.status == "succeeded"

    hits = receiver.wait_for(2)
    assert credited_while_hanging
    assert first.answered is None
    assert hits[1].answered == 200
    assert hits[1].headers["webhook-id"] == first.headers["webhook-id"]
    assert live.notifier.drain()
    [delivery] = owner.deliveries()
    assert delivery["status"] == "succeeded"
    assert delivery["attempts"] == 2


def test_a_test_event_is_delivered_now_and_a_delivery_is_retried_by_hand_with_its_id(
    db_url: str, receiver: Receiver
) -> None:
    refill = notifying_refill(db_url, smtp_url=None, schedule=(), timeout=1.0)
    try:
        owner = Owner(refill, receiver)
        receiver.plan.append(500)
        test = owner.call("POST", f"/v1/webhook-endpoints/{owner.endpoint['id']}/test")
        ping = receiver.wait_for(1)[0]
        assert refill.notifier.drain()
        [failed] = owner.deliveries()  # no automatic retries here: failed for good
        retried = owner.call(
            "POST", f"/v1/webhook-endpoints/{owner.endpoint['id']}/deliveries/{test['id']}/retry"
        )
        again = receiver.wait_for(2)[1]
        assert refill.notifier.drain()
        [done] = owner.deliveries()
    finally:
        refill.close()
    assert ping.event["type"] == "ping"
    assert ping.event["data"] == {"endpoint_id": owner.endpoint["id"]}
    assert (failed["status"], failed["last_status_code"]) == ("failed", 500)
    assert retried["status"] == "pending"
    assert again.headers["webhook-id"] == ping.headers["webhook-id"]
    assert (done["status"], done["attempts"]) == ("succeeded", 2)


def test_after_a_rotation_deliveries_are_signed_with_the_new_and_the_old_secret_for_a_day(
    live: Refill, receiver: Receiver
) -> None:
    owner = Owner(live, receiver, events=["wallet.depleted"])
    rotated = owner.call("POST", f"/v1/webhook-endpoints/{owner.endpoint['id']}/rotate-secret")
    owner.money_moves()

    [hit] = receiver.wait_for(1)
    assert rotated["secret"] != owner.secret
    assert hit.verified_with(rotated["secret"])
    assert hit.verified_with(owner.secret)  # receivers not yet updated keep working
    assert len(hit.headers["webhook-signature"].split()) == 2


def test_a_day_after_a_rotation_only_the_new_secret_signs(db_url: str, receiver: Receiver) -> None:
    clock = FrozenClock(datetime(2026, 11, 25, 12, tzinfo=UTC))
    refill = notifying_refill(db_url, smtp_url=None, clock=clock)
    try:
        owner = Owner(refill, receiver, events=["wallet.depleted"])
        path = f"/v1/webhook-endpoints/{owner.endpoint['id']}/rotate-secret"
        rotated = owner.call("POST", path)["secret"]
        clock.advance(timedelta(hours=23, minutes=59))
        owner.money_moves()
        within = receiver.wait_for(1)[0]
        clock.advance(timedelta(minutes=2))
        owner.money_moves()
        after = receiver.wait_for(2)[1]
    finally:
        refill.close()
    assert within.signed_by(rotated)
    assert within.signed_by(owner.secret)
    assert after.signed_by(rotated)
    assert not after.signed_by(owner.secret)
    assert len(after.headers["webhook-signature"].split()) == 1


def test_an_endpoint_failing_for_three_days_is_disabled_and_the_owner_emailed(
    db_url: str, receiver: Receiver, mailbox: Mailbox
) -> None:
    clock = FrozenClock(datetime(2026, 11, 25, 12, tzinfo=UTC))
    hours = 6 * 3600.0
    refill = notifying_refill(
        db_url, smtp_url=mailbox.url, clock=clock, schedule=(hours,) * 20, listen=True
    )
    try:
        owner = Owner(refill, receiver, events=["wallet.depleted"])
        receiver.plan.extend([500] * 30)
        owner.money_moves()
        for _ in range(14):  # a try about every 6 hours, for 3.5 days
            clock.advance(timedelta(hours=6, minutes=40))
            refill.notifier.run_due_work(wait=True)
        endpoint = owner.call("GET", f"/v1/webhook-endpoints/{owner.endpoint['id']}")
        disabled = owner.call("GET", "/v1/events?type=webhook_endpoint.disabled")["data"]
        tries_when_disabled = len(receiver.hits)
        clock.advance(timedelta(days=1))
        refill.notifier.run_due_work(wait=True)
        tries_after = len(receiver.hits)
        owner.call("PATCH", f"/v1/webhook-endpoints/{owner.endpoint['id']}", {"enabled": True})
        receiver.plan.clear()
        refill.notifier.run_due_work(wait=True)
        [delivery] = owner.deliveries()
    finally:
        refill.close()
    assert endpoint["enabled"] is False
    assert "every delivery failed since 2026-11-25" in endpoint["disabled_reason"]
    assert [e["data"]["url"] for e in disabled] == [receiver.url()]
    assert tries_after == tries_when_disabled  # nothing is sent to a disabled endpoint
    assert delivery["status"] == "succeeded"  # enabling again delivers what waited
    [mail] = [m for m in mailbox.wait_for(2) if "disabled" in m.subject]
    assert mail.subject == f"Webhook endpoint disabled: {receiver.url()}"


def test_a_host_that_resolves_to_a_private_address_at_delivery_is_not_sent_to(
    db_url: str, receiver: Receiver
) -> None:
    answers = {"hooks.example.com": ["93.184.216.34"]}
    refill = notifying_refill(
        db_url,
        smtp_url=None,
        allow_private=False,
        resolver=lambda host, port: answers[host],
        schedule=(),
    )
    try:
        owner = TestClient(create_app(refill))
        made = make_agency(refill)
        headers = {"Authorization": f"Bearer {made.api_key}"}
        url = f"http://hooks.example.com:{receiver.port}/hooks"
        created = owner.post(
            "/v1/webhook-endpoints", json={"url": url, "events": ["*"]}, headers=headers
        )
        answers["hooks.example.com"] = ["127.0.0.1"]  # DNS now points at Refill's network
        services.grant_credits(refill.db, agency_id=made.id, amount=USD, reference="g")
        assert refill.notifier.drain()
        rows = refill.db.read(lambda tx: tx.conn.execute(select(webhook_deliveries)).all())
    finally:
        refill.close()
    assert created.status_code == 201
    assert receiver.hits == []
    [row] = rows
    assert row.status == "failed"
    assert "127.0.0.1, which is not a public address" in row.last_error


def test_delivery_connects_to_the_checked_address_keeping_the_host_name(
    db_url: str, receiver: Receiver
) -> None:
    asked: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]  # resolved once; the connection goes to this address

    refill = notifying_refill(db_url, smtp_url=None, resolver=resolver)
    try:
        made = make_agency(refill)
        client = TestClient(create_app(refill))
        url = f"http://hooks.invalid:{receiver.port}/in"
        client.post(
            "/v1/webhook-endpoints",
            json={"url": url, "events": ["*"]},
            headers={"Authorization": f"Bearer {made.api_key}"},
        )
        services.grant_credits(refill.db, agency_id=made.id, amount=USD, reference="g")
        [hit] = receiver.wait_for(1)
    finally:
        refill.close()
    assert hit.headers["host"] == f"hooks.invalid:{receiver.port}"
    assert hit.path == "/in"
    assert asked == ["hooks.invalid", "hooks.invalid"]  # at registration, then at delivery


def test_retries_wait_longer_each_time_with_jitter_then_the_delivery_fails_for_good(
    db_url: str, receiver: Receiver
) -> None:
    clock = FrozenClock(datetime(2026, 11, 25, 12, tzinfo=UTC))
    schedule = (60.0, 300.0, 1800.0)
    refill = notifying_refill(db_url, smtp_url=None, clock=clock, schedule=schedule)
    try:
        owner = Owner(refill, receiver, events=["wallet.depleted"])
        receiver.plan.extend([500] * 10)
        owner.money_moves()
        waits = []
        for _ in schedule:
            assert refill.notifier.drain()
            [pending] = owner.deliveries()
            due = datetime.fromisoformat(pending["next_attempt_at"])
            waits.append((due - clock.now()).total_seconds())
            clock.advance(due - clock.now())
            refill.notifier.run_due_work(wait=True)
        [failed] = owner.deliveries()
    finally:
        refill.close()
    for wait, planned in zip(waits, schedule, strict=True):
        assert planned * 0.9 <= wait <= planned * 1.1
    assert (failed["status"], failed["attempts"], failed["next_attempt_at"]) == ("failed", 4, None)
    assert len(receiver.hits) == 4
