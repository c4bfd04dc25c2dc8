"""Backup cards on the Stripe gateway, against localstripe, on SQLite and PostgreSQL: the
flows of ``test_backup_cards`` with real PaymentIntents. Every test counts them per
attempt: one charge per attempt, never two, and never more than one that took money.

What localstripe gives and what the tests add (``AtStripe``, around the SDK's service):
- 4000000000000341 is declined when charged, with a bare ``card_declined`` (soft); Stripe
  names hard declines (``expired_card``, ``lost_card``), localstripe cannot: for the cards
  a test lists, its real decline is answered with that code, as Stripe would;
- 4000002500003155 asks for 3-D Secure (the PaymentIntent waits in ``requires_action``);
- localstripe has no Search API (the reconciler's lookup by reload id): answered from the
  PaymentIntents it holds; and an answer can be lost after the charge reached it.
The clock is frozen: the chain's retries come due when a test moves it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from types import SimpleNamespace
from typing import Any

import pytest
import stripe
from fastapi.testclient import TestClient

from refill import ledger_check, services
from refill.bootstrap import Refill, build
from refill.cards import get_payment_method
from refill.clock import FrozenClock
from refill.config import Settings
from refill.db.database import Tx
from refill.gateway.base import ChargeStatus
from refill.gateway.stripe import StripeGateway
from refill.reload.machine import claim_attempt
from refill.worker import ReloadProcessor
from tests.support.doubles import RecordingGateway
from tests.support.owner import Owner
from tests.support.stripe_peer import LocalStripe, gateway_on

DECLINED = "4000000000000341"  # localstripe declines it when charged: card_declined
NEEDS_3DS = "4000002500003155"
GOOD = "5555555555554444"
VISA = "pm_card_visa"
LEASE = timedelta(seconds=10)


class AtStripe:
    """The SDK's PaymentIntent service at localstripe, with what a test injects (see the
    module's docstring). Everything but ``create`` and ``search`` goes to localstripe."""

    def __init__(self, inner: Any, peer: LocalStripe) -> None:
        self.inner = inner
        self.peer = peer
        self.decline_codes: dict[str, str] = {}  # Stripe token → the code Stripe would give
        self.lose_answer_for: set[str] = set()  # the next create's answer is lost
        self.searches: list[str] = []

    def create(self, params: dict[str, Any], options: Any = None) -> Any:
        token = params["payment_method"]
        lost = token in self.lose_answer_for
        self.lose_answer_for.discard(token)
        try:
            intent = self.inner.create(params=params, options=options)
        except stripe.CardError:
            if lost:
                raise _no_answer() from None
            if token in self.decline_codes:
                raise _card_error(self.decline_codes[token]) from None
            raise
        if lost:
            raise _no_answer()
        return intent

    def search(self, params: dict[str, Any]) -> Any:
        query = params["query"]
        self.searches.append(query)
        reload_id = query.split(":'", 1)[1].rstrip("'")
        return SimpleNamespace(data=self.peer.payment_intents(refill_reload_id=reload_id))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _no_answer() -> stripe.APIConnectionError:
    return stripe.APIConnectionError("the answer was lost (injected by the test)")  # type: ignore[no-untyped-call]  # the SDK is untyped


def _card_error(decline_code: str) -> stripe.CardError:
    error = {
        "type": "card_error",
        "code": "card_declined",
        "decline_code": decline_code,
        "message": "Your card was declined.",
    }
    return stripe.CardError(  # type: ignore[no-untyped-call]  # the SDK is untyped
        "Your card was declined.",
        None,
        "card_declined",
        http_status=402,
        json_body={"error": error},
        http_body="",
    )


@pytest.fixture
def stripe_gateway(localstripe: LocalStripe) -> StripeGateway:
    return gateway_on(localstripe)


@pytest.fixture
def at_stripe(stripe_gateway: StripeGateway, localstripe: LocalStripe) -> AtStripe:
    service = AtStripe(stripe_gateway.client.v1.payment_intents, localstripe)
    stripe_gateway.client.v1.payment_intents = service  # type: ignore[assignment]
    return service


@pytest.fixture
def gateway(stripe_gateway: StripeGateway, at_stripe: AtStripe) -> RecordingGateway:
    return RecordingGateway(stripe_gateway)


@pytest.fixture
def refill(
    db_url: str, gateway: RecordingGateway, stripe_gateway: StripeGateway, clock: FrozenClock
) -> Iterator[Refill]:
    service = build(
        Settings(database_url=db_url),
        gateway=gateway,
        webhooks=stripe_gateway,
        clock=clock,
        in_process_worker=False,
    )
    service.process_new_attempts_inline()
    service.processor.lease = LEASE
    yield service
    service.close()


@dataclass
class Wallet:
    """An agency at Stripe whose cards have names, and what became of its auto-reloads."""

    owner: Owner
    refill: Refill
    localstripe: LocalStripe
    gateway: RecordingGateway
    at_stripe: AtStripe
    clock: FrozenClock
    cards: dict[str, str] = field(default_factory=dict)  # name → Refill's card id
    tokens: dict[str, str] = field(default_factory=dict)  # name → Stripe's PaymentMethod

    def arm(self, **cards: str) -> None:
        """Save the cards (a localstripe token or a test card number), in this order as the
        auto-reload list; 30.00 in the wallet, below 20.00 reload 50.00."""
        for name, card in cards.items():
            token = card if card.startswith("pm_") else self.localstripe.card(card)
            self.cards[name] = self.owner.card(token)
            self.tokens[name] = self.refill.db.read(
                partial(self._token_of, card_id=self.cards[name])
            )
        services.grant_credits(
            self.refill.db, agency_id=self.owner.agency_id, amount=30_000_000, reference="start"
        )
        self.owner.auto_reload(
            enabled=True,
            threshold="20.00",
            reload_amount="50.00",
            payment_method_ids=[self.cards[name] for name in cards],
        )

    def _token_of(self, tx: Tx, card_id: str) -> str:
        return get_payment_method(tx, self.owner.agency_id, card_id).token

    def declines_with(self, name: str, code: str) -> None:
        self.at_stripe.decline_codes[self.tokens[name]] = code

    def lose_answer_of(self, name: str) -> None:
        self.at_stripe.lose_answer_for.add(self.tokens[name])

    def name_of(self, card_id: str) -> str:
        return next(name for name, cid in self.cards.items() if cid == card_id)

    def attempts(self) -> list[dict[str, Any]]:
        """Auto-reload attempts, oldest first."""
        data = self.owner.get("/v1/reloads?limit=200")["data"]
        return [r for r in reversed(data) if r["trigger"] == "auto"]

    def story(self) -> list[tuple[str, str | None, str, int, list[str]]]:
        """Each attempt: status, failure code, the card charged, its round, and the status
        of every PaymentIntent localstripe holds for it (on that card)."""
        intents: dict[str, list[Any]] = defaultdict(list)
        for intent in self.localstripe.payment_intents(refill_agency_id=self.owner.agency_id):
            intents[intent.metadata["refill_reload_id"]].append(intent)
        told = []
        for a in self.attempts():
            name = self.name_of(a["payment_method_id"])
            assert all(i.payment_method == self.tokens[name] for i in intents[a["id"]])
            statuses = [str(i.status) for i in intents[a["id"]]]
            told.append((a["status"], a["failure_code"], name, a["retry_number"], statuses))
        return told

    def charged(self) -> list[str]:
        """The cards auto-reload sent charges for, in order."""
        names = {token: name for name, token in self.tokens.items()}
        return [names[req.token] for req, _ in self.gateway.calls if req.trigger == "auto"]

    def intents(self) -> int:
        return len(self.localstripe.payment_intents(refill_agency_id=self.owner.agency_id))

    def credits(self) -> int:
        kinds = [t["kind"] for t in self.owner.get("/v1/transactions?limit=200")["data"]]
        return kinds.count("auto_reload")

    def auto_reload(self) -> Any:
        return self.owner.get("/v1/wallet")["auto_reload"]

    def run_worker(self, after: timedelta = timedelta(0)) -> int:
        self.clock.advance(after)
        return self.refill.processor.run_due_work()

    def assert_ledger_balanced(self) -> None:
        check = self.refill.db.read(ledger_check.check_ledger)
        assert check.balanced, check


@pytest.fixture
def wallet(
    client: TestClient,
    refill: Refill,
    localstripe: LocalStripe,
    gateway: RecordingGateway,
    at_stripe: AtStripe,
    clock: FrozenClock,
) -> Wallet:
    agency, key = services.create_agency(refill.db, name="Backup Cards at Stripe")
    headers = {"Authorization": f"Bearer {key.secret}"}
    subteam = client.post("/v1/subteams", json={"name": "Sales"}, headers=headers).json()
    owner = Owner(client, agency.id, headers, subteam["id"])
    return Wallet(owner, refill, localstripe, gateway, at_stripe, clock)


FAILED = ["requires_payment_method"]  # a declined PaymentIntent at Stripe
PAID = ["succeeded"]


@pytest.mark.parametrize(
    ("code", "skipped", "next_time"),
    [
        pytest.param("card_declined", False, ["primary", "backup"], id="soft"),
        pytest.param("lost_card", True, ["backup"], id="hard-then-skipped"),
    ],
)
def test_a_declined_primary_hands_over_to_the_backup_which_pays_once(
    wallet: Wallet, code: str, skipped: bool, next_time: list[str]
) -> None:
    wallet.arm(primary=DECLINED, backup=VISA)
    if code != "card_declined":
        wallet.declines_with("primary", code)

    wallet.owner.use("10.01", "call-1")

    first, backup = wallet.attempts()
    assert wallet.story() == [
        ("failed", code, "primary", 0, FAILED),
        ("succeeded", None, "backup", 0, PAID),
    ]
    assert backup["retry_of"] == first["id"]
    assert wallet.charged() == ["primary", "backup"]
    assert wallet.owner.balance() == "69.99"
    assert wallet.credits() == 1
    auto = wallet.auto_reload()
    assert auto["status"] == "active"
    assert [c["skipped"] for c in auto["cards"]] == [skipped, False]

    # The next reload: a hard-declined primary is not charged again.
    wallet.owner.use("50.00", "call-2")
    assert wallet.charged() == ["primary", "backup", *next_time]
    assert wallet.owner.balance() == "69.99"
    assert wallet.credits() == 2
    assert wallet.intents() == 2 + len(next_time)
    wallet.assert_ledger_balanced()


def test_every_card_hard_declined_suspends_auto_reload_and_nothing_more_is_charged(
    wallet: Wallet,
) -> None:
    wallet.arm(first=DECLINED, second=DECLINED)
    wallet.declines_with("first", "expired_card")
    wallet.declines_with("second", "lost_card")

    wallet.owner.use("10.01", "call-1")

    assert wallet.story() == [
        ("failed", "expired_card", "first", 0, FAILED),
        ("failed", "lost_card", "second", 0, FAILED),
    ]
    auto = wallet.auto_reload()
    assert auto["status"] == "suspended"
    assert "every card was declined and will not work again" in auto["suspended_reason"]
    assert [(c["skipped"], c["skip_reason"]) for c in auto["cards"]] == [
        (True, "expired_card"),
        (True, "lost_card"),
    ]
    wallet.owner.use("1.00", "call-2")
    assert wallet.run_worker(timedelta(days=2)) == 0
    assert wallet.charged() == ["first", "second"]
    assert wallet.intents() == 2
    assert len(wallet.attempts()) == 2
    assert wallet.owner.balance() == "18.99"
    assert wallet.credits() == 0
    wallet.assert_ledger_balanced()


def test_soft_declines_on_every_card_retry_the_whole_chain_on_the_schedule(
    wallet: Wallet, clock: FrozenClock
) -> None:
    wallet.arm(first=DECLINED, second=DECLINED)
    start = clock.now()

    wallet.owner.use("10.01", "call-1")

    *_, waiting = wallet.attempts()
    assert wallet.story()[-1] == ("pending", None, "first", 1, [])
    assert waiting["not_before"] == (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert wallet.run_worker(timedelta(minutes=59)) == 0  # not due yet: nothing charged
    assert wallet.charged() == ["first", "second"]
    wallet.clock.advance(timedelta(minutes=1))
    for wait in (timedelta(0), timedelta(hours=6), timedelta(hours=24)):
        assert wallet.run_worker(wait) == 1

    attempts = wallet.attempts()
    assert wallet.story() == [
        ("failed", "card_declined", name, round_, FAILED)
        for round_ in range(4)
        for name in ("first", "second")
    ]
    assert [a["retry_of"] for a in attempts] == [None] + [a["id"] for a in attempts[:-1]]
    assert wallet.charged() == ["first", "second"] * 4
    auto = wallet.auto_reload()
    assert auto["status"] == "suspended"
    assert "every card was declined, 4 times in a row" in auto["suspended_reason"]
    assert [c["skipped"] for c in auto["cards"]] == [False, False]
    assert wallet.owner.balance() == "19.99"
    assert wallet.credits() == 0
    assert wallet.intents() == 8


@pytest.mark.parametrize(
    ("primary", "story", "charged"),
    [
        pytest.param(
            DECLINED,
            [
                ("failed", "card_declined", "primary", 0, FAILED),
                ("succeeded", None, "backup", 0, PAID),
            ],
            ["primary", "backup"],
            id="primary-in-fact-declined",
        ),
        pytest.param(
            VISA,
            [("succeeded", None, "primary", 0, PAID)],
            ["primary"],
            id="primary-in-fact-paid",
        ),
    ],
)
def test_an_unknown_outcome_on_the_primary_holds_the_backup_until_the_reconciler_resolves_it(
    wallet: Wallet,
    primary: str,
    story: list[tuple[str, str | None, str, int, list[str]]],
    charged: list[str],
) -> None:
    wallet.arm(primary=primary, backup=GOOD)
    wallet.lose_answer_of("primary")

    wallet.owner.use("10.01", "call-1")

    # The charge reached Stripe; its answer did not come back.
    [(status, _, card, _, at_stripe)] = wallet.story()
    assert (status, card, len(at_stripe)) == ("charging", "primary", 1)
    assert wallet.run_worker() == 0  # the lease still holds: the backup waits
    assert wallet.charged() == ["primary"]
    assert wallet.owner.balance() == "19.99"

    assert wallet.run_worker(LEASE + timedelta(seconds=1)) == 1  # the reconciler asks

    assert len(wallet.at_stripe.searches) == 1
    assert wallet.story() == story
    assert wallet.charged() == charged
    assert [a["status"] for a in wallet.attempts()].count("succeeded") == 1
    assert wallet.owner.balance() == "69.99"
    assert wallet.credits() == 1
    assert wallet.run_worker(LEASE + timedelta(seconds=1)) == 0  # nothing left to do
    assert wallet.intents() == len(story)
    wallet.assert_ledger_balanced()


@pytest.mark.parametrize(
    "backup_charged", [False, True], ids=["after-the-decline", "after-the-backup-was-charged"]
)
def test_a_crash_between_the_two_charges_is_finished_by_a_restarted_processor_once(
    wallet: Wallet, refill: Refill, backup_charged: bool
) -> None:
    wallet.arm(primary=DECLINED, backup=VISA)
    refill.db.after_commit.clear()  # this process charges only what the test tells it
    wallet.owner.use("10.01", "call-1")
    [primary] = wallet.attempts()
    refill.processor.process(primary["id"])
    # The decline and the backup's attempt committed together; then the process died...
    assert [a["status"] for a in wallet.attempts()] == ["failed", "pending"]
    if backup_charged:
        # ...or it lived long enough to charge the backup at Stripe, not to record it.
        backup = wallet.attempts()[1]
        claimed = refill.db.write(
            lambda tx: claim_attempt(tx, refill.policy, backup["id"], lease=LEASE)
        )
        assert claimed is not None
        result = refill.gateway.charge(refill.processor.charge_request(claimed))
        assert result.status is ChargeStatus.SUCCEEDED
        assert [a["status"] for a in wallet.attempts()] == ["failed", "charging"]

    wallet.clock.advance(LEASE + timedelta(seconds=1))
    restarted = ReloadProcessor(refill.db, refill.gateway, refill.policy, lease=LEASE)
    try:
        assert restarted.run_due_work() == 1
        assert restarted.run_due_work() == 0  # twice: nothing more
    finally:
        restarted.close()

    assert wallet.story() == [
        ("failed", "card_declined", "primary", 0, FAILED),
        ("succeeded", None, "backup", 0, PAID),
    ]
    assert wallet.charged() == ["primary", "backup"]
    assert wallet.owner.balance() == "69.99"
    assert wallet.credits() == 1
    wallet.assert_ledger_balanced()


def test_a_primary_needing_authentication_is_canceled_at_stripe_then_the_backup_pays(
    wallet: Wallet,
) -> None:
    wallet.arm(primary=NEEDS_3DS, backup=VISA)

    wallet.owner.use("10.01", "call-1")

    assert wallet.story() == [
        ("failed", "authentication_required", "primary", 0, ["canceled"]),
        ("succeeded", None, "backup", 0, PAID),
    ]
    [(_, canceled)] = wallet.gateway.cancels
    assert canceled.status is ChargeStatus.CANCELED
    assert wallet.charged() == ["primary", "backup"]
    assert wallet.owner.balance() == "69.99"
    assert wallet.credits() == 1
    assert wallet.owner.get("/v1/events?type=auto_reload.requires_action")["data"] == []
    # Authentication is no fault of the card: it is not skipped.
    assert [c["skipped"] for c in wallet.auto_reload()["cards"]] == [False, False]
    wallet.assert_ledger_balanced()
