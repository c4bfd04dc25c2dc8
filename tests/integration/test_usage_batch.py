"""POST /v1/usage/batch on SQLite and PostgreSQL: each event means what a single
POST /v1/usage means (a property test replays random batches one event at a time on a twin
agency and compares every answer, the balance and the ledger), refusals are isolated, the
trigger runs once, and a batch that is too large or malformed changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from refill import ledger_check, services
from refill.bootstrap import Refill, build
from refill.config import Settings
from refill.db.schema import reload_attempts, transfers
from refill.errors import RefillError
from refill.services.subteams import SubteamChange, update_subteam
from refill.services.usage_batch import UsageEvent, record_usage_batch
from refill.web import create_app
from tests.support.arming import armed_agency

DOLLAR = 1_000_000


@dataclass
class Twin:
    """An agency with subteams a (open), b (open) and gone (archived), 10.00 of credits."""

    agency_id: str
    subteams: dict[str, str]


def twin(refill: Refill, name: str, *, limited: bool) -> Twin:
    db = refill.db
    agency, _ = services.create_agency(db, name=name)
    made = {n: services.create_subteam(db, agency_id=agency.id, name=n).id for n in "ab"}
    gone = services.create_subteam(db, agency_id=agency.id, name="gone").id
    update_subteam(
        db, agency_id=agency.id, subteam_id=gone, change=SubteamChange(archived=True), actor="t"
    )
    made["gone"] = gone
    made["nobody"] = "sub_nobody"
    if limited:  # a wallet with subteam rules: the batch takes the one-by-one way
        update_subteam(
            db,
            agency_id=agency.id,
            subteam_id=made["b"],
            change=SubteamChange(daily_spend_limit=3 * DOLLAR),
            actor="t",
        )
    services.grant_credits(db, agency_id=agency.id, amount=10 * DOLLAR, reference="start")
    # Recorded before the batch: a reference the batch may repeat (duplicate) or misuse.
    services.record_usage(
        db, agency_id=agency.id, subteam_id=made["a"], amount=DOLLAR, reference="r0"
    )
    return Twin(agency.id, made)


EVENT = st.tuples(
    st.sampled_from(["a", "a", "b", "gone", "nobody"]),
    st.sampled_from([0, 250_000, DOLLAR, 2 * DOLLAR, 4 * DOLLAR]),
    st.sampled_from([f"r{i}" for i in range(8)]),
)


def answers_one_by_one(refill: Refill, t: Twin, events: list[tuple[str, int, str]]) -> list[Any]:
    answers: list[Any] = []
    for subteam, amount, reference in events:
        try:
            _, created = services.record_usage(
                refill.db,
                agency_id=t.agency_id,
                subteam_id=t.subteams[subteam],
                amount=amount,
                reference=reference,
            )
            answers.append(("created" if created else "duplicate", None))
        except RefillError as exc:
            answers.append(("refused", exc.code))
    return answers


def ledger_of(refill: Refill, t: Twin) -> list[tuple[Any, ...]]:
    names = {v: k for k, v in t.subteams.items()}
    rows = refill.db.read(
        lambda tx: tx.conn.execute(
            select(
                transfers.c.reference,
                transfers.c.amount,
                transfers.c.subteam_id,
                transfers.c.wallet_balance_after,
            )
            .where(transfers.c.agency_id == t.agency_id, transfers.c.kind == "usage")
            .order_by(transfers.c.id)
        ).all()
    )
    return [(r[0], r[1], names[r[2]], r[3]) for r in rows]


def ids_of(refill: Refill, t: Twin) -> dict[str, int]:
    rows = refill.db.read(
        lambda tx: tx.conn.execute(
            select(transfers.c.reference, transfers.c.id).where(
                transfers.c.agency_id == t.agency_id, transfers.c.kind == "usage"
            )
        ).all()
    )
    return {reference: transfer_id for reference, transfer_id in rows}


@pytest.fixture
def plain(db_url: str) -> Iterator[Refill]:
    service = build(Settings(database_url=db_url), in_process_worker=False)
    yield service
    service.close()


@pytest.mark.parametrize("limited", [False, True], ids=["set-based", "one-by-one"])
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=st.lists(EVENT, min_size=1, max_size=30))
def test_a_batch_answers_each_event_as_the_single_endpoint_would(
    plain: Refill, limited: bool, events: list[tuple[str, int, str]]
) -> None:
    batched, single = twin(plain, "Batch", limited=limited), twin(plain, "One", limited=limited)
    outcome = record_usage_batch(
        plain.db,
        agency_id=batched.agency_id,
        events=[UsageEvent(batched.subteams[s], a, r) for s, a, r in events],
    )
    expected = answers_one_by_one(plain, single, events)
    assert [(r.status.value, r.code) for r in outcome.results] == expected
    assert ledger_of(plain, batched) == ledger_of(plain, single)
    # Each answer names the row its reference holds (the batch numbers SQLite's rows itself).
    held = ids_of(plain, batched)
    assert [r.transfer_id for r in outcome.results] == [
        held[r.reference] if r.status.value != "refused" else None for r in outcome.results
    ]
    after = services.get_wallet(plain.db, plain.policy, agency_id=single.agency_id)
    assert (outcome.balance, outcome.available) == (after.balance, after.available)
    check = plain.db.read(ledger_check.check_ledger)
    assert check.balanced, check


def test_duplicates_name_the_first_transfer_and_a_conflict_is_refused(plain: Refill) -> None:
    t = twin(plain, "Dups", limited=False)
    a, b = t.subteams["a"], t.subteams["b"]
    outcome = record_usage_batch(
        plain.db,
        agency_id=t.agency_id,
        events=[
            UsageEvent(a, DOLLAR, "x"),
            UsageEvent(a, DOLLAR, "x"),  # the same: duplicate of the first
            UsageEvent(b, DOLLAR, "x"),  # another subteam: conflict
            UsageEvent(a, 50 * DOLLAR, "big"),  # more than the wallet has
            UsageEvent(a, DOLLAR, "y"),  # not blocked by the refusal before it
        ],
    )
    statuses = [(r.status.value, r.code) for r in outcome.results]
    assert statuses == [
        ("created", None),
        ("duplicate", None),
        ("refused", "reference_conflict"),
        ("refused", "insufficient_credits"),
        ("created", None),
    ]
    assert outcome.results[1].transfer_id == outcome.results[0].transfer_id
    assert outcome.balance == 7 * DOLLAR  # 10.00, less r0 (recorded before) and two 1.00 events


def test_a_batch_that_crosses_the_threshold_starts_one_reload(db_url: str) -> None:
    service = build(Settings(database_url=db_url), in_process_worker=False)
    try:
        armed = armed_agency(service, "Crossing")  # 25.00, reload below 20.00
        outcome = record_usage_batch(
            service.db,
            agency_id=armed.agency_id,
            events=[UsageEvent(armed.subteam_id, DOLLAR, f"u{i}") for i in range(10)],
        )
        assert outcome.balance == 15 * DOLLAR
        attempts = service.db.read(
            lambda tx: tx.conn.execute(
                select(reload_attempts.c.status).where(
                    reload_attempts.c.agency_id == armed.agency_id
                )
            ).all()
        )
        assert [a.status for a in attempts] == ["pending"]
    finally:
        service.close()


# --- over HTTP ---------------------------------------------------------------------------


@pytest.fixture
def small_batches(db_url: str) -> Iterator[tuple[TestClient, dict[str, str], dict[str, str]]]:
    service = build(
        Settings(database_url=db_url, max_batch_body_bytes=128 * 1024), in_process_worker=False
    )
    agency, key = services.create_agency(service.db, name="Http Batch")
    services.grant_credits(service.db, agency_id=agency.id, amount=10 * DOLLAR, reference="s")
    headers = {"Authorization": f"Bearer {key.secret}"}
    with TestClient(create_app(service)) as client:
        subteams = {
            n: client.post("/v1/subteams", json={"name": n}, headers=headers).json()["id"]
            for n in "ab"
        }
        key_a = client.post(f"/v1/subteams/{subteams['a']}/keys", json={}, headers=headers)
        subteam_key = {"Authorization": f"Bearer {key_a.json()['api_key']}"}
        yield client, headers, {**subteams, **{"key_a": json.dumps(subteam_key)}}
    service.close()


def usage(subteam: str, amount: str, reference: str) -> dict[str, str]:
    return {"subteam_id": subteam, "amount": amount, "reference": reference}


def test_the_batch_endpoint_answers_per_event_with_the_single_endpoints_codes(
    small_batches: tuple[TestClient, dict[str, str], dict[str, str]],
) -> None:
    client, headers, ids = small_batches
    body = {
        "events": [
            usage(ids["a"], "1.00", "e1"),
            usage(ids["a"], "ten", "e2"),  # not an amount: invalid_amount
            usage("sub_nobody", "1.00", "e3"),
            usage(ids["b"], "2.50", "e4"),
        ]
    }
    response = client.post("/v1/usage/batch", json=body, headers=headers)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [(r["status"], r.get("code")) for r in answer["results"]] == [
        ("created", None),
        ("refused", "invalid_amount"),
        ("refused", "subteam_not_found"),
        ("created", None),
    ]
    assert answer["results"][0]["transfer_id"].startswith("txn_")
    assert (answer["balance"], answer["available"], answer["currency"]) == (
        "6.50",
        "6.50",
        "USD",
    )
    # A subteam's key records its own subteam's usage only.
    subteam_key = json.loads(ids["key_a"])
    mixed = {"events": [usage(ids["a"], "1.00", "k1"), usage(ids["b"], "1.00", "k2")]}
    response = client.post("/v1/usage/batch", json=mixed, headers=subteam_key)
    assert [(r["status"], r.get("code")) for r in response.json()["results"]] == [
        ("created", None),
        ("refused", "forbidden"),
    ]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param(
            {"events": [usage("s", "1.00", f"r{i}") for i in range(1001)]},
            422,
            "validation_error",
            id="more-than-1000-events",
        ),
        pytest.param({"events": []}, 422, "validation_error", id="no-events"),
        pytest.param(
            {"events": [{"subteam_id": "s", "amount": 1, "reference": "r"}]},
            422,
            "validation_error",
            id="amount-not-a-string",
        ),
        pytest.param(
            {"events": [usage("s", "1.00", "r" * 200)] * 800},
            413,
            "request_too_large",
            id="over-the-batch-body-limit",
        ),
    ],
)
def test_a_batch_refused_whole_changes_nothing(
    small_batches: tuple[TestClient, dict[str, str], dict[str, str]],
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    client, headers, ids = small_batches
    for event in body["events"]:
        event["subteam_id"] = ids["a"]
    response = client.post("/v1/usage/batch", json=body, headers=headers)
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code
    assert client.get("/v1/wallet", headers=headers).json()["balance"] == "10.00"


def test_a_batch_that_is_not_json_is_refused_as_malformed(
    small_batches: tuple[TestClient, dict[str, str], dict[str, str]],
) -> None:
    client, headers, _ = small_batches
    response = client.post(
        "/v1/usage/batch",
        content=b'{"events": [',
        headers={**headers, "Content-Type": "application/json"},
    )
    # As on every endpoint of the API: 400 malformed_json.
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"
