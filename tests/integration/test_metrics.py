"""GET /metrics on SQLite and PostgreSQL: the counters move by exactly what happened (one per
usage event, single or batch; one outcome and one latency per reload), the queue depth is
read from the database, no label carries an agency's id, and only loopback or the token
may scrape."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from refill import services
from refill.api.metrics import may_scrape
from refill.bootstrap import Refill, build
from refill.config import Settings
from refill.db.database import Tx
from refill.db.schema import reload_attempts
from refill.reload import machine
from refill.web import create_app
from tests.support.arming import armed_agency
from tests.support.mailbox import Mailbox
from tests.support.notifying import notifying_refill
from tests.support.portal import make_agency

TOKEN = "a-scraper-token-for-the-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DOLLAR = 1_000_000

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def service(db_url: str) -> Iterator[Refill]:
    """Reloads wait in the queue unless a test processes them inline."""
    refill = build(
        Settings(database_url=db_url, metrics_token=SecretStr(TOKEN)), in_process_worker=False
    )
    yield refill
    refill.close()


@pytest.fixture
def web(service: Refill) -> Iterator[TestClient]:
    with TestClient(create_app(service)) as client:
        yield client


def scrape(client: TestClient) -> tuple[str, Samples]:
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def no_agency_label(samples: Samples, agency_id: str) -> None:
    for _, labels in samples:
        assert all(agency_id not in label_value for _, label_value in labels)


def an_agency(refill: Refill, credits: int) -> tuple[str, str, dict[str, str]]:
    agency, key = services.create_agency(refill.db, name="Metered")
    subteam = services.create_subteam(refill.db, agency_id=agency.id, name="s")
    services.grant_credits(refill.db, agency_id=agency.id, amount=credits, reference="start")
    return agency.id, subteam.id, {"Authorization": f"Bearer {key.secret}"}


def cross_the_threshold(refill: Refill, agency_id: str, subteam_id: str) -> None:
    services.record_usage(
        refill.db, agency_id=agency_id, subteam_id=subteam_id, amount=10 * DOLLAR, reference="x"
    )


def test_each_usage_event_and_each_refusal_counts_once(web: TestClient, service: Refill) -> None:
    agency_id, subteam_id, headers = an_agency(service, 5 * DOLLAR)
    _, before = scrape(web)
    usage = {"subteam_id": subteam_id, "amount": "1.00", "reference": "call-1"}
    assert web.post("/v1/usage", json=usage, headers=headers).status_code == 201
    assert web.post("/v1/usage", json=usage, headers=headers).status_code == 200
    too_much = {**usage, "amount": "9.00", "reference": "call-2"}
    refused = web.post("/v1/usage", json=too_much, headers=headers)
    assert refused.json()["code"] == "insufficient_credits"
    text, after = scrape(web)

    single = {"path": "single"}
    assert moved(before, after, "refill_usage_recorded_total", result="created", **single) == 1
    assert moved(before, after, "refill_usage_recorded_total", result="duplicate", **single) == 1
    refusals = "refill_usage_refused_total"
    assert moved(before, after, refusals, code="insufficient_credits", **single) == 1
    assert agency_id not in text
    no_agency_label(after, agency_id)


def test_a_batch_counts_each_of_its_events(web: TestClient, service: Refill) -> None:
    _, subteam_id, headers = an_agency(service, 5 * DOLLAR)
    _, before = scrape(web)
    events = [
        {"subteam_id": subteam_id, "amount": "1.00", "reference": "b-1"},
        {"subteam_id": "sub_nobody", "amount": "1.00", "reference": "b-2"},
        {"subteam_id": subteam_id, "amount": "1.00", "reference": "b-3"},
    ]
    answer = web.post("/v1/usage/batch", json={"events": events}, headers=headers)
    assert [r["status"] for r in answer.json()["results"]] == ["created", "refused", "created"]
    _, after = scrape(web)

    batch = {"path": "batch"}
    assert moved(before, after, "refill_usage_recorded_total", result="created", **batch) == 2
    assert moved(before, after, "refill_usage_recorded_total", result="duplicate", **batch) == 0
    refusals = "refill_usage_refused_total"
    assert moved(before, after, refusals, code="subteam_not_found", **batch) == 1


def test_a_reload_counts_its_outcome_and_its_latency(web: TestClient, service: Refill) -> None:
    service.process_new_attempts_inline()
    armed = armed_agency(service)  # 25.00, reload 50.00 below 20.00
    _, before = scrape(web)
    cross_the_threshold(service, armed.agency_id, armed.subteam_id)
    text, after = scrape(web)

    outcome = {"trigger": "auto", "outcome": "succeeded"}
    assert moved(before, after, "refill_reload_attempts_total", **outcome) == 1
    assert moved(before, after, "refill_reload_latency_seconds_count", trigger="auto") == 1
    assert (
        moved(before, after, "refill_reload_attempts_total", trigger="auto", outcome="failed") == 0
    )
    assert value(after, "refill_queue_depth", queue="reload_pending") == 0
    assert armed.agency_id not in text
    no_agency_label(after, armed.agency_id)


def test_an_attempt_canceled_at_its_claim_is_counted_as_canceled(
    web: TestClient, service: Refill
) -> None:
    armed = armed_agency(service)
    cross_the_threshold(service, armed.agency_id, armed.subteam_id)  # queued, not run
    services.grant_credits(
        service.db, agency_id=armed.agency_id, amount=100 * DOLLAR, reference="by-hand"
    )
    (attempt_id,) = pending_attempts(service, armed.agency_id)
    _, before = scrape(web)
    service.processor.process(attempt_id)  # claimed: no longer needed
    _, after = scrape(web)
    counted = "refill_reload_attempts_total"
    assert moved(before, after, counted, trigger="auto", outcome="canceled") == 1
    assert moved(before, after, counted, trigger="auto", outcome="succeeded") == 0


def test_a_transaction_the_database_runs_again_counts_its_outcome_once(
    web: TestClient, service: Refill
) -> None:
    armed = armed_agency(service)
    cross_the_threshold(service, armed.agency_id, armed.subteam_id)
    services.grant_credits(
        service.db, agency_id=armed.agency_id, amount=100 * DOLLAR, reference="by-hand"
    )
    (attempt_id,) = pending_attempts(service, armed.agency_id)
    tries = 0

    def claim_then_lose_the_lock(tx: Tx) -> None:
        nonlocal tries
        tries += 1
        machine.claim_attempt(tx, service.policy, attempt_id)  # canceled: not needed
        if tries == 1:  # as SQLite or PostgreSQL refusing the commit: run it all again
            raise OperationalError("COMMIT", {}, Exception("database is locked"))

    _, before = scrape(web)
    service.db.write(claim_then_lose_the_lock)
    _, after = scrape(web)
    assert tries == 2
    counted = "refill_reload_attempts_total"
    assert moved(before, after, counted, trigger="auto", outcome="canceled") == 1


def pending_attempts(refill: Refill, agency_id: str) -> list[str]:
    return refill.db.read(
        lambda tx: list(
            tx.conn.execute(
                select(reload_attempts.c.id).where(
                    reload_attempts.c.agency_id == agency_id,
                    reload_attempts.c.status == "pending",
                )
            ).scalars()
        )
    )


def test_the_queue_depth_shows_a_pending_attempt(web: TestClient, service: Refill) -> None:
    armed = armed_agency(service)
    cross_the_threshold(service, armed.agency_id, armed.subteam_id)
    _, samples = scrape(web)
    assert value(samples, "refill_queue_depth", queue="reload_pending") == 1
    assert value(samples, "refill_queue_depth", queue="reload_charging") == 0
    assert value(samples, "refill_database_up") == 1
    assert value(samples, "refill_db_pool_size") > 0
    assert ("refill_db_pool_checked_out", ()) in samples


def test_without_the_token_and_not_from_loopback_the_scrape_is_refused(
    web: TestClient, service: Refill
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        refused = web.get("/metrics", headers=headers)  # TestClient's address: "testclient"
        assert refused.status_code == 404
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json() == web.get("/no-such-route").json()
    with TestClient(create_app(service), client=("127.0.0.1", 50000)) as local:
        assert local.get("/metrics").status_code == 200
        proxied = local.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        assert proxied.status_code == 404


def test_the_access_rule() -> None:
    token = SecretStr("s3cret")
    assert may_scrape("127.0.0.1", {}, None)
    assert may_scrape("::1", {}, None)
    assert may_scrape("::ffff:127.0.0.1", {}, None)
    assert not may_scrape("127.0.0.1", {"x-forwarded-for": "203.0.113.9"}, None)
    assert not may_scrape("127.0.0.1", {"forwarded": "for=203.0.113.9"}, None)
    assert not may_scrape("testclient", {}, None)
    assert not may_scrape(None, {}, None)
    assert not may_scrape("10.0.0.8", {"authorization": "Bearer s3cret"}, None)
    assert not may_scrape("10.0.0.8", {"authorization": "Bearer "}, SecretStr(""))
    assert may_scrape("10.0.0.8", {"authorization": "Bearer s3cret"}, token)
    assert may_scrape("10.0.0.8", {"authorization": "bearer  s3cret"}, token)
    assert not may_scrape("10.0.0.8", {"authorization": "Bearer s3cre"}, token)
    assert not may_scrape("10.0.0.8", {"authorization": "Basic s3cret"}, token)


@pytest.mark.parametrize("refusing", [False, True], ids=["sent", "retrying"])
def test_each_email_is_counted_once_its_outcome_is_recorded(db_url: str, refusing: bool) -> None:
    box = Mailbox().start()
    box.refuse = refusing  # the SMTP server answers 451: the e-mail waits for a retry
    refill = notifying_refill(db_url, smtp_url=box.url, listen=False)
    outcome = {"outcome": "retrying" if refusing else "sent"}
    try:
        before = REGISTRY.get_sample_value("refill_emails_total", outcome) or 0.0
        agency_id = make_agency(refill).id  # with an owner to tell
        subteam_id = services.create_subteam(refill.db, agency_id=agency_id, name="s").id
        services.grant_credits(refill.db, agency_id=agency_id, amount=DOLLAR, reference="g")
        services.record_usage(  # to zero: "No credits left" is e-mailed to the owner
            refill.db, agency_id=agency_id, subteam_id=subteam_id, amount=DOLLAR, reference="u"
        )
        refill.notifier.run_due_work(wait=True)
        after = REGISTRY.get_sample_value("refill_emails_total", outcome) or 0.0
    finally:
        refill.close()
        box.stop()
    assert after - before == 1
    assert len(box.messages) == (0 if refusing else 1)
