"""The reload engine on the Stripe gateway, against localstripe, on SQLite and PostgreSQL.

The scenarios of the sandbox walk-through, plus what only a real peer shows: lost answers,
webhooks racing the reconciler, cards changed or detached at Stripe. Every test counts the
PaymentIntents localstripe holds for its reloads: one charge per attempt, never two.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import httpx
import pytest
import stripe
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from refill import alerts, ledger_check, services
from refill.bootstrap import Refill, build
from refill.cards import get_payment_method
from refill.config import Settings
from refill.db.schema import gateway_events, reload_attempts
from refill.gateway.stripe import StripeGateway, event_from_stripe
from refill.gateway_events import handle_gateway_event
from refill.reload.attempt import get_attempt
from refill.reload.trigger import NewReloadAttempt
from refill.worker import ReloadProcessor
from tests.support.doubles import RecordingGateway
from tests.support.owner import Owner
from tests.support.stripe_events import signed
from tests.support.stripe_peer import LocalStripe, LostAnswer, gateway_on


@pytest.fixture
def stripe_gateway(localstripe: LocalStripe) -> StripeGateway:
    return gateway_on(localstripe)


@pytest.fixture
def gateway(stripe_gateway: StripeGateway) -> RecordingGateway:
    return RecordingGateway(stripe_gateway)


@pytest.fixture
def refill(
    db_url: str, gateway: RecordingGateway, stripe_gateway: StripeGateway
) -> Iterator[Refill]:
    service = build(
        Settings(database_url=db_url),
        gateway=gateway,
        webhooks=stripe_gateway,
        in_process_worker=False,
    )
    service.process_new_attempts_inline()
    # A charge whose answer was lost is left to "another process": this one's claims hold
    # no lease, so the reconciler may take them over at once.
    service.processor.lease = timedelta(0)
    yield service
    service.close()


@pytest.fixture
def owner(client: TestClient, refill: Refill) -> Owner:
    agency, key = services.create_agency(refill.db, name="Stripe Agency")
    headers = {"Authorization": f"Bearer {key.secret}"}
    subteam = client.post("/v1/subteams", json={"name": "Sales"}, headers=headers).json()
    return Owner(client, agency.id, headers, subteam["id"])


def grant(refill: Refill, owner: Owner, amount: int) -> None:
    services.grant_credits(
        refill.db, agency_id=owner.agency_id, amount=amount, reference=secrets.token_hex(4)
    )


def arm(refill: Refill, owner: Owner, token: str) -> str:
    """Save the card, credit 30.00 and turn auto-reload on (below 20.00, reload 50.00)."""
    card = owner.card(token)
    grant(refill, owner, 30_000_000)
    owner.auto_reload(
        enabled=True, threshold="20.00", reload_amount="50.00", payment_method_id=card
    )
    return card


def intents_of(localstripe: LocalStripe, owner: Owner) -> list[Any]:
    return localstripe.payment_intents(refill_agency_id=owner.agency_id)


def assert_ledger_balanced(refill: Refill) -> None:
    check = refill.db.read(ledger_check.check_ledger)
    assert check.balanced, check


def webhook(client: TestClient, event_type: str, obj: Any, event_id: str | None = None) -> Any:
    body = json.dumps(
        {
            "id": event_id or "evt_" + secrets.token_hex(8),
            "object": "event",
            "type": event_type,
            "data": {"object": json.loads(str(obj)) if not isinstance(obj, dict) else obj},
        }
    ).encode()
    return client.post(
        "/v1/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": signed(body), "Content-Type": "application/json"},
    )


def at_once(*jobs: Callable[[], object]) -> None:
    """Run the jobs on their own threads, released together by a barrier."""
    start = threading.Barrier(len(jobs))

    def run(job: Callable[[], object]) -> None:
        start.wait()
        job()

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)


def test_crossing_the_threshold_charges_the_saved_card_once_at_stripe_and_credits_the_wallet(
    owner: Owner, refill: Refill, localstripe: LocalStripe
) -> None:
    arm(refill, owner, "pm_card_visa")

    owner.use("10.01", "call-1")

    assert owner.balance() == "69.99"
    [reload] = [r for r in owner.reloads() if r["trigger"] == "auto"]
    assert reload["status"] == "succeeded"
    [intent] = intents_of(localstripe, owner)
    customer = services.get_agency(refill.db, owner.agency_id).gateway_customer_id
    assert (intent.status, intent.amount, intent.currency) == ("succeeded", 5000, "usd")
    assert intent.customer == customer
    assert customer is not None
    assert intent.metadata["refill_reload_id"] == reload["id"]
    assert intent.metadata["refill_wallet_id"].startswith("wal_")
    assert_ledger_balanced(refill)


def test_a_declined_card_fails_the_reload_schedules_a_retry_and_credits_nothing(
    owner: Owner, refill: Refill, localstripe: LocalStripe
) -> None:
    arm(refill, owner, localstripe.card("4000000000000341"))

    owner.use("10.01", "call-1")

    assert owner.balance() == "19.99"
    failed, retry = sorted(owner.reloads(), key=lambda r: str(r["created_at"]))
    assert (failed["status"], failed["failure_code"]) == ("failed", "card_declined")
    assert (retry["status"], retry["retry_number"]) == ("pending", 1)  # soft: retried later
    assert len(intents_of(localstripe, owner)) == 1
    assert_ledger_balanced(refill)


def test_a_card_needing_authentication_waits_for_the_owner_and_the_webhook_credits_it_once(
    owner: Owner, refill: Refill, localstripe: LocalStripe, client: TestClient
) -> None:
    arm(refill, owner, localstripe.card("4000002500003155"))

    owner.use("10.01", "call-1")
    [waiting] = owner.reloads()
    assert waiting["status"] == "requires_action"
    assert owner.balance() == "19.99"
    action = waiting["next_action"]
    assert isinstance(action, dict)
    assert action["client_secret"].startswith(action["payment_intent"])

    # The owner authenticates in the browser; Stripe charges and sends the webhook.
    localstripe.authenticate(action["payment_intent"], action["client_secret"], success=True)
    intent = localstripe.client.v1.payment_intents.retrieve(action["payment_intent"])
    assert intent.status == "succeeded"
    response = webhook(client, "payment_intent.succeeded", intent, event_id="evt_3ds_done")
    assert response.status_code == 200
    assert response.json()["outcome"] == "handled"
    replay = webhook(client, "payment_intent.succeeded", intent, event_id="evt_3ds_done")
    assert replay.status_code == 200
    assert replay.json()["outcome"] == "duplicate"

    assert owner.balance() == "69.99"
    assert [r["status"] for r in owner.reloads()] == ["succeeded"]
    assert len(intents_of(localstripe, owner)) == 1
    assert_ledger_balanced(refill)


def test_adding_credits_by_hand_charges_the_card_at_stripe_now(
    owner: Owner, refill: Refill, localstripe: LocalStripe
) -> None:
    card = owner.card("pm_card_visa")

    topup = owner.post("/v1/wallet/credits", {"amount": "25.00", "payment_method_id": card})

    assert (topup["trigger"], topup["status"]) == ("manual", "succeeded")
    assert owner.balance() == "25.00"
    [intent] = intents_of(localstripe, owner)
    assert (intent.amount, intent.metadata["refill_trigger"]) == (2500, "manual")


def _lose_first_answer(
    refill: Refill, stripe_gateway: StripeGateway, localstripe: LocalStripe, *, reach: bool
) -> LostAnswer:
    lost = LostAnswer(stripe_gateway.client.v1.payment_intents, localstripe, reach=reach)
    stripe_gateway.client.v1.payment_intents = lost  # type: ignore[assignment]
    return lost


def _reconciler(refill: Refill) -> ReloadProcessor:
    """A reconciler in another process (the first claimer's lease is over at once)."""
    return ReloadProcessor(refill.db, refill.gateway, refill.policy)


@pytest.mark.parametrize(
    ("reach", "creates"),
    [
        pytest.param(True, 1, id="charged-but-answer-lost"),
        pytest.param(False, 2, id="request-lost-before-stripe"),
    ],
)
def test_after_a_lost_answer_the_reconciler_finds_or_resends_the_charge_and_credits_once(
    owner: Owner,
    refill: Refill,
    localstripe: LocalStripe,
    stripe_gateway: StripeGateway,
    reach: bool,
    creates: int,
) -> None:
    arm(refill, owner, "pm_card_visa")
    lost = _lose_first_answer(refill, stripe_gateway, localstripe, reach=reach)

    owner.use("10.01", "call-1")
    [reload] = owner.reloads()
    assert reload["status"] == "charging"
    assert owner.balance() == "19.99"

    assert _reconciler(refill).run_due_work() == 1

    assert owner.balance() == "69.99"
    assert [r["status"] for r in owner.reloads()] == ["succeeded"]
    assert len(lost.searches) == 1
    assert lost.creates == creates
    assert len(intents_of(localstripe, owner)) == 1
    assert_ledger_balanced(refill)


@pytest.mark.parametrize("webhook_first", [True, False], ids=["webhook-first", "reconciler-first"])
def test_a_lost_answer_is_settled_exactly_once_by_webhook_and_reconciler_in_either_order(
    owner: Owner,
    refill: Refill,
    localstripe: LocalStripe,
    stripe_gateway: StripeGateway,
    client: TestClient,
    webhook_first: bool,
) -> None:
    arm(refill, owner, "pm_card_visa")
    _lose_first_answer(refill, stripe_gateway, localstripe, reach=True)
    owner.use("10.01", "call-1")
    [intent] = intents_of(localstripe, owner)

    def deliver() -> None:
        assert webhook(client, "payment_intent.succeeded", intent).json()["outcome"] == "handled"

    if webhook_first:
        deliver()
        assert _reconciler(refill).run_due_work() == 0  # nothing left charging
    else:
        assert _reconciler(refill).run_due_work() == 1
        deliver()

    assert owner.balance() == "69.99"
    transfers = owner.get("/v1/transactions")["data"]
    assert [t["kind"] for t in transfers].count("auto_reload") == 1
    assert len(intents_of(localstripe, owner)) == 1
    assert_ledger_balanced(refill)


def test_many_processors_racing_for_one_reload_make_one_payment_intent(
    owner: Owner, refill: Refill, localstripe: LocalStripe, gateway: RecordingGateway
) -> None:
    # localstripe ignores idempotency keys, so this is the engine's own guarantee.
    queued: list[str] = []
    refill.db.after_commit.clear()
    refill.db.after_commit.listen(NewReloadAttempt, lambda new: queued.append(new.attempt_id))
    arm(refill, owner, "pm_card_visa")
    owner.use("10.01", "call-1")
    [attempt_id] = queued

    at_once(*[partial(refill.processor.process, attempt_id)] * 6)

    assert len(gateway.calls) == 1
    assert len(intents_of(localstripe, owner)) == 1
    assert owner.balance() == "69.99"


@pytest.mark.parametrize(
    ("event_type", "intent_change", "code", "status"),
    [
        pytest.param(
            "payment_intent.payment_failed",
            {
                "status": "requires_payment_method",
                "last_payment_error": {"code": "payment_intent_authentication_failure"},
            },
            "payment_intent_authentication_failure",
            "failed",
            id="authentication-failed",
        ),
        pytest.param(
            "payment_intent.canceled",
            {"status": "canceled", "cancellation_reason": "abandoned"},
            "canceled",
            "canceled",
            id="canceled",
        ),
    ],
)
def test_a_reload_waiting_for_authentication_ends_as_stripe_reports_it(
    owner: Owner,
    refill: Refill,
    localstripe: LocalStripe,
    client: TestClient,
    event_type: str,
    intent_change: dict[str, Any],
    code: str,
    status: str,
) -> None:
    arm(refill, owner, localstripe.card("4000002500003155"))
    owner.use("10.01", "call-1")
    [intent] = intents_of(localstripe, owner)

    response = webhook(client, event_type, {**json.loads(str(intent)), **intent_change})

    assert response.json()["outcome"] == "handled"
    ended = [r for r in owner.reloads() if r["status"] == status]
    assert [r["failure_code"] for r in ended] == [code]
    assert owner.balance() == "19.99"


def test_a_badly_signed_webhook_is_rejected_and_changes_nothing(
    owner: Owner, refill: Refill, localstripe: LocalStripe, client: TestClient
) -> None:
    arm(refill, owner, localstripe.card("4000002500003155"))
    owner.use("10.01", "call-1")
    [intent] = intents_of(localstripe, owner)
    body = json.dumps(
        {
            "id": "evt_forged",
            "type": "payment_intent.succeeded",
            "data": {"object": {**json.loads(str(intent)), "status": "succeeded"}},
        }
    ).encode()

    response = client.post(
        "/v1/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": signed(body, secret="whsec_forger")},
    )

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_signature"
    assert (
        refill.db.read(
            lambda tx: tx.conn.execute(select(func.count()).select_from(gateway_events)).scalar()
        )
        == 0
    )
    assert [r["status"] for r in owner.reloads()] == ["requires_action"]
    assert owner.balance() == "19.99"


def test_a_card_detached_at_stripe_is_removed_and_auto_reload_using_it_is_suspended(
    owner: Owner, refill: Refill, localstripe: LocalStripe, client: TestClient
) -> None:
    card = owner.card("pm_card_visa")
    owner.auto_reload(
        enabled=True, threshold="20.00", reload_amount="50.00", payment_method_id=card
    )
    [saved] = owner.get("/v1/payment-methods")["data"]
    token = refill.db.read(lambda tx: get_payment_method(tx, owner.agency_id, card)).token
    localstripe.client.v1.payment_methods.detach(token)
    detached = localstripe.client.v1.payment_methods.retrieve(token)

    assert webhook(client, "payment_method.detached", detached).json()["outcome"] == "handled"

    assert owner.get("/v1/payment-methods")["data"] == []
    status = owner.get("/v1/wallet")["auto_reload"]
    assert status["status"] == "suspended"
    assert "removed at Stripe" in status["suspended_reason"]
    assert saved["last4"] == "4242"


def test_a_card_renewed_at_stripe_gets_its_new_expiry_and_an_audit_entry(
    owner: Owner, refill: Refill, localstripe: LocalStripe, client: TestClient
) -> None:
    card = owner.card("pm_card_visa")
    token = refill.db.read(lambda tx: get_payment_method(tx, owner.agency_id, card)).token
    method = json.loads(str(localstripe.client.v1.payment_methods.retrieve(token)))
    method["card"].update(exp_month=3, exp_year=2031)

    response = webhook(client, "payment_method.automatically_updated", method)

    assert response.json()["outcome"] == "handled"
    [saved] = owner.get("/v1/payment-methods")["data"]
    assert (saved["exp_month"], saved["exp_year"]) == (3, 2031)
    audit = owner.get("/v1/audit-log")["data"]
    assert audit[0]["action"] == "payment_method.updated"
    assert audit[0]["actor"] == "stripe"


def test_removing_a_card_detaches_it_at_stripe(
    owner: Owner, refill: Refill, localstripe: LocalStripe, client: TestClient
) -> None:
    card = owner.card("pm_card_visa")
    token = refill.db.read(lambda tx: get_payment_method(tx, owner.agency_id, card)).token

    response = client.delete(f"/v1/payment-methods/{card}", headers=owner.headers)

    assert response.status_code == 204
    assert localstripe.client.v1.payment_methods.retrieve(token).customer is None


def test_an_event_about_someone_elses_payment_intent_is_acknowledged_and_ignored(
    client: TestClient, refill: Refill
) -> None:
    response = webhook(
        client,
        "payment_intent.succeeded",
        {"id": "pi_not_ours", "object": "payment_intent", "status": "succeeded", "metadata": {}},
    )

    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored"


def test_a_webhook_and_the_reconciler_settling_at_the_same_instant_credit_once(
    owner: Owner,
    refill: Refill,
    localstripe: LocalStripe,
    stripe_gateway: StripeGateway,
) -> None:
    card = owner.card("pm_card_visa")
    grant(refill, owner, 300_000_000)
    owner.auto_reload(
        enabled=True, threshold="20.00", reload_amount="50.00", payment_method_id=card
    )
    rounds = 5
    for round_number in range(rounds):
        _lose_first_answer(refill, stripe_gateway, localstripe, reach=True)
        balance = Decimal(owner.balance())
        owner.use(str(balance - Decimal("19.99")), f"drain-{round_number}")
        [charging] = [r["id"] for r in owner.reloads() if r["status"] == "charging"]
        [intent] = localstripe.payment_intents(refill_reload_id=str(charging))
        event = event_from_stripe(
            {
                "id": f"evt_race_{round_number}",
                "type": "payment_intent.succeeded",
                "data": {"object": json.loads(str(intent))},
            }
        )
        at_once(
            partial(handle_gateway_event, refill.db, refill.policy, event),
            _reconciler(refill).run_due_work,
        )
        assert owner.balance() == "69.99", f"round {round_number}"

    kinds = [t["kind"] for t in owner.get("/v1/transactions?limit=200")["data"]]
    assert kinds.count("auto_reload") == rounds
    assert len(intents_of(localstripe, owner)) == rounds
    assert_ledger_balanced(refill)


# --- canceling a payment that waits for the owner, and money taken late ------------------


class CancelUnanswered:
    """Wraps the SDK's PaymentIntent service: ``cancel`` gets no answer (a network error),
    everything else goes through to localstripe."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def cancel(self, *args: Any, **kwargs: Any) -> Any:
        raise stripe.APIConnectionError("no answer to the cancel (injected by the test)")  # type: ignore[no-untyped-call]  # the SDK is untyped

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def waiting_for_authentication(refill: Refill, owner: Owner, localstripe: LocalStripe) -> Any:
    """A reload that waits for 3-D Secure, and its PaymentIntent at localstripe."""
    arm(refill, owner, localstripe.card("4000002500003155"))
    owner.use("10.01", "call-1")
    [waiting] = owner.reloads()
    assert waiting["status"] == "requires_action"
    return waiting


def pi_status(localstripe: LocalStripe, payment_intent: str) -> str:
    return str(localstripe.client.v1.payment_intents.retrieve(payment_intent).status)


def test_canceling_a_reload_waiting_for_authentication_cancels_it_at_stripe_so_it_cannot_be_paid(
    owner: Owner, refill: Refill, localstripe: LocalStripe
) -> None:
    waiting = waiting_for_authentication(refill, owner, localstripe)
    action: Any = waiting["next_action"]

    canceled = owner.post(f"/v1/reloads/{waiting['id']}/cancel", {})

    assert (canceled["status"], canceled["failure_code"]) == ("canceled", "canceled_by_owner")
    assert pi_status(localstripe, action["payment_intent"]) == "canceled"
    # The client secret the owner already has can no longer take the money.
    with pytest.raises(httpx.HTTPStatusError):
        localstripe.authenticate(action["payment_intent"], action["client_secret"], success=True)
    assert owner.balance() == "19.99"
    assert_ledger_balanced(refill)


def test_a_settings_change_cancels_the_waiting_payment_at_stripe_before_it_is_saved(
    owner: Owner, refill: Refill, localstripe: LocalStripe
) -> None:
    waiting = waiting_for_authentication(refill, owner, localstripe)

    owner.auto_reload(threshold="21.00")

    first = next(r for r in owner.reloads() if r["id"] == waiting["id"])
    assert (first["status"], first["failure_code"]) == ("canceled", "settings_changed")
    assert pi_status(localstripe, waiting["next_action"]["payment_intent"]) == "canceled"
    # Still below the new threshold: a new reload started under the new settings.
    newest = owner.reloads()[0]
    assert newest["id"] != waiting["id"]
    assert newest["status"] == "requires_action"
    assert len(intents_of(localstripe, owner)) == 2


@pytest.mark.parametrize(
    "body",
    [{}, {"enabled": True, "threshold": "20.00", "reload_amount": "50.00"}],
    ids=["empty", "same-values"],
)
def test_a_settings_put_that_changes_nothing_cancels_nothing_and_writes_nothing(
    owner: Owner, refill: Refill, localstripe: LocalStripe, body: dict[str, object]
) -> None:
    waiting = waiting_for_authentication(refill, owner, localstripe)
    audit_before = owner.get("/v1/audit-log")["data"]

    owner.auto_reload(**body)

    assert [(r["id"], r["status"]) for r in owner.reloads()] == [(waiting["id"], "requires_action")]
    assert pi_status(localstripe, waiting["next_action"]["payment_intent"]) == "requires_action"
    assert owner.get("/v1/audit-log")["data"] == audit_before


def test_a_cancel_stripe_does_not_confirm_is_503_and_leaves_the_reload_as_it_was(
    owner: Owner, refill: Refill, localstripe: LocalStripe, stripe_gateway: StripeGateway
) -> None:
    waiting = waiting_for_authentication(refill, owner, localstripe)
    stripe_gateway.client.v1.payment_intents = CancelUnanswered(  # type: ignore[assignment]
        stripe_gateway.client.v1.payment_intents
    )
    settings_before = owner.get("/v1/wallet")["auto_reload"]

    cancel = owner.client.post(f"/v1/reloads/{waiting['id']}/cancel", headers=owner.headers)
    change = owner.client.put(
        "/v1/wallet/auto-reload", json={"threshold": "25.00"}, headers=owner.headers
    )

    for response in (cancel, change):
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "cancel_unconfirmed"
    attempt = refill.db.read(lambda tx: get_attempt(tx, owner.agency_id, waiting["id"]))
    assert (attempt.status, attempt.cancel_requested_at) == ("requires_action", None)
    assert owner.get("/v1/wallet")["auto_reload"] == settings_before
    assert pi_status(localstripe, waiting["next_action"]["payment_intent"]) == "requires_action"


def test_canceling_a_payment_the_owner_finished_first_credits_it_instead(
    owner: Owner, refill: Refill, localstripe: LocalStripe
) -> None:
    waiting = waiting_for_authentication(refill, owner, localstripe)
    action: Any = waiting["next_action"]
    # The owner authenticated; Stripe's webhook has not arrived yet.
    localstripe.authenticate(action["payment_intent"], action["client_secret"], success=True)

    answer = owner.post(f"/v1/reloads/{waiting['id']}/cancel", {})

    assert answer["status"] == "succeeded"
    assert owner.balance() == "69.99"
    assert_ledger_balanced(refill)


def _cancel_here_only(client: TestClient, intent: Any) -> None:
    """Stripe tells Refill the payment was canceled (so Refill gives up on the attempt)
    while the PaymentIntent in fact stays payable: the owner can still finish it."""
    canceled = {**json.loads(str(intent)), "status": "canceled", "next_action": None}
    assert webhook(client, "payment_intent.canceled", canceled).json()["outcome"] == "handled"


def test_money_taken_after_refill_gave_up_on_the_reload_is_credited_once_and_audited(
    owner: Owner, refill: Refill, localstripe: LocalStripe, client: TestClient
) -> None:
    waiting = waiting_for_authentication(refill, owner, localstripe)
    action: Any = waiting["next_action"]
    _cancel_here_only(
        client, localstripe.client.v1.payment_intents.retrieve(action["payment_intent"])
    )
    assert owner.reloads()[0]["status"] == "canceled"

    localstripe.authenticate(action["payment_intent"], action["client_secret"], success=True)
    paid = localstripe.client.v1.payment_intents.retrieve(action["payment_intent"])
    first = webhook(client, "payment_intent.succeeded", paid, event_id="evt_late_1")
    again = webhook(client, "payment_intent.succeeded", paid, event_id="evt_late_2")

    assert (first.json()["outcome"], again.json()["outcome"]) == ("handled", "handled")
    assert owner.balance() == "69.99"  # credited once
    late = next(r for r in owner.reloads() if r["id"] == waiting["id"])
    assert late["status"] == "succeeded"
    [entry] = [
        e for e in owner.get("/v1/audit-log")["data"] if e["action"] == "reload.late_success"
    ]
    assert entry["before"]["status"] == "canceled"
    assert "credited" in entry["after"]["reason"]
    assert_ledger_balanced(refill)
    # The late credit has its receipt, like any charge that succeeded, and one only.
    receipt = owner.get(f"/v1/reloads/{waiting['id']}/receipt")
    assert (receipt["number"], receipt["amount"], receipt["card_last4"]) == (
        "R-000001",
        late["amount"],
        "3155",  # localstripe's 3-D Secure test card
    )
    succeeded = owner.get("/v1/events?type=auto_reload.succeeded")["data"]
    assert [e["data"]["late"] for e in succeeded] == [True]


@pytest.mark.parametrize(
    "change",
    [{"amount": 4999}, {"currency": "eur"}, {"metadata": {"refill_reload_id": "rld_other"}}],
    ids=["another-amount", "another-currency", "names-another-reload"],
)
def test_money_taken_that_does_not_match_the_reload_is_an_operator_alert_and_not_credited(
    owner: Owner,
    refill: Refill,
    localstripe: LocalStripe,
    client: TestClient,
    change: dict[str, object],
) -> None:
    waiting = waiting_for_authentication(refill, owner, localstripe)
    action: Any = waiting["next_action"]
    _cancel_here_only(
        client, localstripe.client.v1.payment_intents.retrieve(action["payment_intent"])
    )
    localstripe.authenticate(action["payment_intent"], action["client_secret"], success=True)
    paid = json.loads(str(localstripe.client.v1.payment_intents.retrieve(action["payment_intent"])))
    if "metadata" in change:
        # Found by its PaymentIntent id, but naming a reload that is not this one.
        refill.db.write(
            lambda tx: tx.conn.execute(
                reload_attempts.update()
                .where(reload_attempts.c.id == waiting["id"])
                .values(gateway_payment_id=paid["id"])
            )
        )
        paid["metadata"] = {**paid["metadata"], **change["metadata"]}  # type: ignore[dict-item]
    else:
        paid.update(change)

    response = webhook(client, "payment_intent.succeeded", paid)

    assert response.json()["outcome"] == "alerted"
    assert owner.balance() == "19.99"
    open_alerts = refill.db.read(alerts.open_alerts)
    assert [a.subject for a in open_alerts] == [paid["id"]]
    assert_ledger_balanced(refill)
