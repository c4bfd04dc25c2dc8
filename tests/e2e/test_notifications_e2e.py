"""Notifications from a real `refill serve`: the e-mail a hard decline sends reaches a real
SMTP server, and webhook deliveries survive a crash of the process mid-delivery (the event
that was in flight is sent again with its id; nothing acknowledged is sent twice).

Loopback only; every process is stopped by the fixture; each wait is bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.mailbox import Mailbox
from tests.support.receiver import Receiver
from tests.support.server import Server, call, client, create_agency, wait_for

NOTIFY_ENV = {
    "REFILL_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver is on 127.0.0.1
    "REFILL_WEBHOOK_TIMEOUT_SECONDS": "2",  # so a delivery's lease is 9 s
    "REFILL_WEBHOOK_RETRY_SCHEDULE_SECONDS": "[0.5, 0.5, 0.5]",
    "REFILL_PUBLIC_URL": "https://billing.example.com",
}


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox().start()
    yield box
    box.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def test_a_hard_decline_is_emailed_to_the_owner_by_the_running_service(
    start_server: Callable[..., Server], db_url: str, mailbox: Mailbox, record_property: Any
) -> None:
    server = start_server(db_url, env={**NOTIFY_ENV, "REFILL_SMTP_URL": mailbox.url})
    with client(server, create_agency(db_url)) as api:
        call(api, "PATCH", "/v1/agency", 200, json={"billing_emails": ["Books@Acme.test"]})
        good = call(api, "POST", "/v1/payment-methods", 201, json={"token": "pm_card_visa"})
        bad = call(
            api,
            "POST",
            "/v1/payment-methods",
            201,
            json={"token": "pm_card_chargeDeclinedExpiredCard"},
        )
        credits = {"amount": "25.00", "payment_method_id": good["id"]}
        call(api, "POST", "/v1/wallet/credits", 201, json=credits)
        subteam = call(api, "POST", "/v1/subteams", 201, json={"name": "calls"})
        settings = {
            "enabled": True,
            "threshold": "20.00",
            "reload_amount": "50.00",
            "payment_method_id": bad["id"],
        }
        call(api, "PUT", "/v1/wallet/auto-reload", 200, json=settings)
        mailbox.wait_for(1)  # the receipt of the top-up
        sent = time.monotonic()
        usage = {"subteam_id": subteam["id"], "amount": "6.00", "reference": "call-1"}
        call(api, "POST", "/v1/usage", 201, json=usage)

        wait_for(
            lambda: mailbox.about("Auto Reload failed"),
            15,
            lambda: f"no e-mail: {[m.subject for m in mailbox.messages]}\n{server.output}",
        )
    [failed] = mailbox.about("Auto Reload failed")
    record_property("hard_decline_to_email_seconds", round(failed.at - sent, 3))
    assert failed.to == ["books@acme.test"]  # an API-only agency: its billing address
    assert failed.subject == "Auto Reload failed: Visa ending 0069 was declined"
    assert "https://billing.example.com/portal/team/billing" in failed.text


def test_a_delivery_in_flight_when_the_process_dies_is_sent_again_and_nothing_else_twice(
    start_server: Callable[..., Server], db_url: str, receiver: Receiver
) -> None:
    first = start_server(db_url, env=NOTIFY_ENV)
    key = create_agency(db_url)
    receiver.plan.extend([200, 60.0])  # the second delivery hangs until the process dies
    with client(first, key) as api:
        card = call(api, "POST", "/v1/payment-methods", 201, json={"token": "pm_card_visa"})
        endpoint = {"url": receiver.url(), "events": ["topup.succeeded"]}
        call(api, "POST", "/v1/webhook-endpoints", 201, json=endpoint)

        def top_up(reference: str) -> None:
            body = {"amount": "10.00", "payment_method_id": card["id"]}
            headers = {"Idempotency-Key": reference}
            call(api, "POST", "/v1/wallet/credits", 201, json=body, headers=headers)

        top_up("one")
        receiver.wait_for(1)
        top_up("two")
        receiver.wait_for(2)  # in flight: the receiver holds it
    first.proc.kill()  # no goodbye: the delivery's lease is left behind
    first.proc.wait(timeout=10)

    second = start_server(db_url, env=NOTIFY_ENV)
    receiver.wait_for(3, timeout=30)  # once the lease ends, it is sent again
    with client(second, key) as api:
        top_up_three = {"amount": "10.00", "payment_method_id": card["id"]}
        call(api, "POST", "/v1/wallet/credits", 201, json=top_up_three)
        receiver.wait_for(4)
        time.sleep(1.5)  # three retry periods: anything sent twice would be here by now
        events = call(api, "GET", "/v1/events?type=topup.succeeded", 200)["data"]

    ids = [hit.headers["webhook-id"] for hit in receiver.hits]
    assert len(receiver.hits) == 4
    assert ids[1] == ids[2]  # the one in flight: again, with its id (the receiver dedupes)
    assert len(set(ids)) == 3
    assert sorted(set(ids)) == sorted(e["id"] for e in events)
    assert [hit.answered for hit in receiver.hits] == [200, None, 200, 200]
