"""Integration: the auto-reload walk-through over the API, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from refill import ledger_check, services
from refill.bootstrap import Refill
from refill.db.database import Tx
from refill.db.schema import reload_attempts
from refill.ids import wallet_id_for
from refill.reload.machine import claim_attempt
from tests.support.doubles import RecordingGateway
from tests.support.owner import Owner


@pytest.fixture
def owner(client: TestClient, refill: Refill) -> Owner:
    agency, key = services.create_agency(refill.db, name="Acme Voice")
    headers = {"Authorization": f"Bearer {key.secret}"}
    subteam = client.post("/v1/subteams", json={"name": "Sales"}, headers=headers).json()
    return Owner(client, agency.id, headers, subteam["id"])


def fund(owner: Owner, amount: str, card: str) -> None:
    owner.post("/v1/wallet/credits", {"amount": amount, "payment_method_id": card})


def assert_ledger_balanced(refill: Refill) -> None:
    check = refill.db.read(ledger_check.check_ledger)
    assert check.balanced, check


def test_crossing_the_threshold_charges_the_card_and_credits_the_wallet(
    owner: Owner, refill: Refill, gateway: RecordingGateway
) -> None:
    card = owner.card()
    fund(owner, "30.00", card)
    wallet = owner.auto_reload(
        enabled=True, threshold="20.00", reload_amount="50.00", payment_method_id=card
    )
    assert wallet["auto_reload"]["status"] == "active"

    owner.use("9.99", "call-1")
    assert owner.balance() == "20.01"
    assert len(owner.reloads()) == 1  # only the manual top-up: still above the threshold

    owner.use("0.02", "call-2")
    assert owner.balance() == "69.99"  # 19.99 + 50.00, credited at once
    auto = [r for r in owner.reloads() if r["trigger"] == "auto"]
    assert [(r["status"], r["amount"]) for r in auto] == [("succeeded", "50.00")]
    credit = owner.get("/v1/transactions")["data"][0]
    assert credit["kind"] == "auto_reload"
    assert credit["reference"] == auto[0]["id"]
    assert len(gateway.succeeded_keys()) == 2  # manual + auto, each charged once
    assert_ledger_balanced(refill)


def test_declined_card_leaves_balance_unchanged_and_records_the_failure(
    owner: Owner, refill: Refill
) -> None:
    good = owner.card()
    fund(owner, "25.00", good)
    bad = owner.card("pm_card_chargeDeclinedExpiredCard")
    owner.auto_reload(enabled=True, threshold="20.00", reload_amount="50.00", payment_method_id=bad)

    owner.use("10.00", "call-1")
    assert owner.balance() == "15.00"
    failed = owner.reloads()[0]
    assert failed["status"] == "failed"
    assert failed["failure_code"] == "expired_card"
    assert failed["failure_message"]
    # A hard decline is not charged again by the next usage: auto-reload is suspended.
    wallet = owner.get("/v1/wallet")
    assert wallet["auto_reload"]["status"] == "suspended"
    assert "expired_card" in wallet["auto_reload"]["suspended_reason"]
    owner.use("1.00", "call-2")
    assert len([r for r in owner.reloads() if r["trigger"] == "auto"]) == 1
    assert_ledger_balanced(refill)

    # Choosing a working card resumes auto-reload and reloads at once (still below threshold).
    owner.auto_reload(payment_method_id=good)
    assert owner.get("/v1/wallet")["auto_reload"]["status"] == "active"
    assert owner.balance() == "64.00"


def test_manual_add_credits_charges_now_and_credits_the_wallet(
    owner: Owner, refill: Refill
) -> None:
    card = owner.card()
    response = owner.client.post(
        "/v1/wallet/credits",
        json={"amount": "12.34", "payment_method_id": card},
        headers={**owner.headers, "Idempotency-Key": "topup-1"},
    )
    assert response.status_code == 201
    assert response.json()["status"] == "succeeded"
    assert response.json()["trigger"] == "manual"
    assert owner.balance() == "12.34"
    assert owner.get("/v1/transactions")["data"][0]["kind"] == "manual_reload"
    assert_ledger_balanced(refill)


def test_declined_manual_top_up_is_a_402_and_credits_nothing(owner: Owner) -> None:
    card = owner.card("pm_card_visa_chargeDeclinedInsufficientFunds")
    response = owner.client.post(
        "/v1/wallet/credits",
        json={"amount": "10.00", "payment_method_id": card},
        headers=owner.headers,
    )
    assert response.status_code == 402
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "payment_failed"
    assert response.json()["decline_code"] == "insufficient_funds"
    assert owner.balance() == "0.00"
    assert owner.reloads()[0]["status"] == "failed"


def test_no_credits_means_no_calls(owner: Owner) -> None:
    body = owner.post("/v1/calls/authorize", {"subteam_id": owner.subteam_id})
    assert body == {
        "allowed": False,
        "reason": "no_credits",
        "available": "0.00",
        "currency": "USD",
    }
    fund(owner, "5.00", owner.card())
    body = owner.post("/v1/calls/authorize", {"subteam_id": owner.subteam_id})
    assert body["allowed"] is True
    assert body["available"] == "5.00"


def test_enabling_auto_reload_while_below_threshold_reloads_at_once(owner: Owner) -> None:
    card = owner.card()
    owner.auto_reload(
        enabled=True, threshold="20.00", reload_amount="50.00", payment_method_id=card
    )
    assert owner.balance() == "50.00"
    assert [r["trigger"] for r in owner.reloads()] == ["auto"]


def test_requires_action_keeps_one_attempt_open_until_the_owner_cancels_it(
    owner: Owner, refill: Refill
) -> None:
    good = owner.card()
    fund(owner, "25.00", good)
    sca = owner.card("pm_card_authenticationRequired")
    owner.auto_reload(enabled=True, threshold="20.00", reload_amount="50.00", payment_method_id=sca)
    owner.use("6.00", "call-1")
    owner.use("1.00", "call-2")  # still below: no second attempt while one waits for the owner
    auto = [r for r in owner.reloads() if r["trigger"] == "auto"]
    assert [r["status"] for r in auto] == ["requires_action"]
    assert owner.balance() == "18.00"

    canceled = owner.post(f"/v1/reloads/{auto[0]['id']}/cancel", {})
    assert canceled["status"] == "canceled"
    assert_ledger_balanced(refill)


def test_changing_settings_cancels_an_open_requires_action_attempt_and_reloads_with_the_new_card(
    owner: Owner,
) -> None:
    good = owner.card()
    fund(owner, "25.00", good)
    sca = owner.card("pm_card_authenticationRequired")
    owner.auto_reload(enabled=True, threshold="20.00", reload_amount="50.00", payment_method_id=sca)
    owner.use("6.00", "call-1")
    owner.auto_reload(payment_method_id=good)
    statuses = [
        (r["status"], r["payment_method_id"]) for r in owner.reloads() if r["trigger"] == "auto"
    ]
    assert statuses == [("succeeded", good), ("canceled", sca)]
    assert owner.balance() == "69.00"


def test_a_card_in_use_by_auto_reload_cannot_be_removed(owner: Owner) -> None:
    card = owner.card()
    owner.auto_reload(enabled=True, threshold="0.00", reload_amount="50.00", payment_method_id=card)
    response = owner.client.delete(f"/v1/payment-methods/{card}", headers=owner.headers)
    assert response.status_code == 409
    assert response.json()["code"] == "payment_method_in_use"
    owner.auto_reload(enabled=False)
    assert (
        owner.client.delete(f"/v1/payment-methods/{card}", headers=owner.headers).status_code == 204
    )
    assert owner.get("/v1/payment-methods")["data"] == []


def test_auto_reload_is_present_and_off_before_anything_is_set(owner: Owner) -> None:
    assert owner.get("/v1/wallet")["auto_reload"] == {
        "enabled": False,
        "status": "off",
        "mode": "fixed",
        "threshold": None,
        "reload_amount": None,
        "target_balance": None,
        "payment_method_id": None,
        "payment_method_ids": [],
        "cards": [],
        "monthly_cap": None,
        "daily_limit": 10,
        "suspended_reason": None,
        "blocked": None,
        "state": "off",
        "next_retry_at": None,
        "last_failure": None,
        "waiting_reload_id": None,
    }


def test_the_database_refuses_a_second_active_auto_reload_for_a_wallet(
    owner: Owner, refill: Refill
) -> None:
    card = owner.card()

    def insert_attempt(attempt_id: str, status: str) -> None:
        def work(tx: Tx) -> None:
            tx.conn.execute(
                insert(reload_attempts).values(
                    id=attempt_id,
                    agency_id=owner.agency_id,
                    wallet_id=wallet_id_for(owner.agency_id),
                    trigger="auto",
                    status=status,
                    amount=50_000_000,
                    currency="USD",
                    payment_method_id=card,
                    idempotency_key=f"k-{attempt_id}",
                    created_at=tx.now,
                    updated_at=tx.now,
                )
            )

        refill.db.write(work)

    insert_attempt("rld_a", "pending")
    insert_attempt("rld_b", "succeeded")  # finished attempts do not count
    for status in ("pending", "charging", "requires_action"):
        with pytest.raises(IntegrityError):
            insert_attempt(f"rld_{status}", status)


def test_the_poller_processes_attempts_left_pending_by_a_crash(
    owner: Owner, refill: Refill
) -> None:
    card = owner.card()
    fund(owner, "25.00", card)
    owner.auto_reload(
        enabled=True, threshold="20.00", reload_amount="50.00", payment_method_id=card
    )
    refill.db.after_commit.clear()  # the process "dies" before instant processing
    owner.use("6.00", "call-1")
    assert owner.balance() == "19.00"
    assert owner.reloads()[0]["status"] == "pending"

    refill.processor.pending_grace = timedelta(0)
    assert refill.processor.run_due_work() == 1
    assert owner.balance() == "69.00"
    assert refill.processor.run_due_work() == 0  # nothing left, nothing charged twice


def test_a_charge_left_in_flight_by_a_crash_is_reconciled_once(
    owner: Owner, refill: Refill, gateway: RecordingGateway
) -> None:
    card = owner.card()
    fund(owner, "25.00", card)
    owner.auto_reload(
        enabled=True, threshold="20.00", reload_amount="50.00", payment_method_id=card
    )
    refill.db.after_commit.clear()
    owner.use("6.00", "call-1")
    attempt_id = str(owner.reloads()[0]["id"])
    # Claimed and charged, then the process died before recording the outcome.

    # The claimer died: its lease is over at once.
    claimed = refill.db.write(
        lambda tx: claim_attempt(tx, refill.policy, attempt_id, lease=timedelta(0))
    )
    assert claimed is not None
    refill.processor.pending_grace = timedelta(0)
    assert refill.processor.run_due_work() == 1
    assert owner.balance() == "69.00"
    keys = [req.idempotency_key for req, _ in gateway.calls]
    assert keys.count(claimed.attempt.idempotency_key) == 1
    status = refill.db.read(
        lambda tx: tx.conn.execute(
            select(reload_attempts.c.status).where(reload_attempts.c.id == attempt_id)
        ).scalar()
    )
    assert status == "succeeded"
