"""Backup cards in the sandbox, on SQLite and PostgreSQL: the ordered list, the chain of
charges after a decline, skips, the chain's retries, suspension, and what the owner is told.
The same flows against Stripe (localstripe) are in ``test_stripe_backup_cards``; crashes
between two charges are at the end of this file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from refill import ledger_check, services
from refill.bootstrap import build
from refill.clock import FrozenClock
from refill.config import Settings
from refill.db.schema import events, reload_attempts
from refill.gateway.base import (
    CardReport,
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    EventKind,
    GatewayEvent,
)
from refill.gateway.sandbox import SandboxGateway
from refill.gateway_events import handle_gateway_event
from refill.reload.machine import claim_attempt, record_charge_outcome
from refill.reload.settings import SettingsChange
from tests.support.arming import armed_agency
from tests.support.doubles import FaultyGateway
from tests.support.reload_world import START, World, world_on

OK = "pm_card_visa"
OK_TOO = "pm_card_mastercard"
SOFT = "pm_card_chargeCustomerFail"  # card_declined
BROKE = "pm_card_visa_chargeDeclinedInsufficientFunds"  # insufficient_funds
EXPIRED = "pm_card_chargeDeclinedExpiredCard"  # expired_card (hard)
LOST = "pm_card_visa_chargeDeclinedLostCard"  # lost_card (hard)
SCA = "pm_card_authenticationRequired"


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    with world_on(db_url) as w:
        yield w


def arm(w: World, *cards: str, **extra: Any) -> Any:
    """25.00 in the wallet, auto-reload on with ``cards`` in that order."""
    w.top_up("25.00")
    return w.settings(
        enabled=True,
        threshold="20.00",
        reload_amount="50.00",
        payment_method_ids=[w.cards[c] for c in cards],
        **extra,
    )


def charged_tokens(w: World) -> list[str]:
    """The cards the auto-reloads charged, in order (the top-up is the first charge)."""
    return [req.token for req, _ in w.gateway.calls if req.trigger == "auto"]


def event_data(w: World, kind: str) -> list[dict[str, Any]]:
    rows = w.refill.db.read(
        lambda tx: tx.conn.execute(
            select(events.c.data).where(events.c.type == kind).order_by(events.c.id)
        ).all()
    )
    return [json.loads(r.data) if isinstance(r.data, str) else r.data for r in rows]


# --- the list ---------------------------------------------------------------------------


def test_the_cards_are_saved_in_order_with_the_first_as_the_primary(world: World) -> None:
    wallet = arm(world, OK, OK_TOO, SOFT)
    listed = [world.cards[c] for c in (OK, OK_TOO, SOFT)]
    assert wallet["auto_reload"]["payment_method_ids"] == listed
    assert wallet["auto_reload"]["payment_method_id"] == listed[0]
    assert [c["skipped"] for c in wallet["auto_reload"]["cards"]] == [False] * 3
    reordered = world.settings(payment_method_ids=list(reversed(listed)))
    assert reordered["auto_reload"]["payment_method_ids"] == list(reversed(listed))


def test_payment_method_id_is_a_shorthand_for_a_list_of_one(world: World) -> None:
    arm(world, OK, OK_TOO)
    wallet = world.settings(payment_method_id=world.cards[OK_TOO])
    assert wallet["auto_reload"]["payment_method_ids"] == [world.cards[OK_TOO]]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param(
            lambda c: {"payment_method_ids": [c[OK], c[OK]]},
            422,
            "invalid_auto_reload_settings",
            id="listed-twice",
        ),
        pytest.param(
            lambda c: {"payment_method_ids": [c[t] for t in list(c)[:6]]},
            422,
            "validation_error",
            id="more-than-five",
        ),
        pytest.param(
            lambda c: {"payment_method_ids": [c[OK]], "payment_method_id": c[OK]},
            422,
            "invalid_auto_reload_settings",
            id="both-fields",
        ),
        pytest.param(
            lambda c: {"payment_method_ids": [c[OK], "pay_nope"]},
            404,
            "payment_method_not_found",
            id="not-a-saved-card",
        ),
        pytest.param(
            lambda c: {"payment_method_ids": [], "enabled": True},
            422,
            "invalid_auto_reload_settings",
            id="empty-while-on",
        ),
    ],
)
def test_a_wrong_list_is_refused_and_changes_nothing(
    world: World, body: Any, status: int, code: str
) -> None:
    arm(world, OK, OK_TOO)
    before = world.wallet()
    response = world.client.put(
        "/v1/wallet/auto-reload", json=body(world.cards), headers=world.headers
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code
    assert world.wallet() == before


def test_a_listed_card_cannot_be_removed_and_the_refusal_names_its_place(world: World) -> None:
    arm(world, OK, OK_TOO)
    response = world.client.delete(
        f"/v1/payment-methods/{world.cards[OK_TOO]}", headers=world.headers
    )
    assert response.status_code == 409
    problem = response.json()
    assert problem["code"] == "payment_method_in_use"
    assert "backup card 1 of 1" in problem["detail"]
    assert problem["position"] == 1


def test_with_auto_reload_off_removing_a_listed_card_takes_it_out_of_the_list(
    world: World,
) -> None:
    arm(world, OK, OK_TOO)
    world.settings(enabled=False)
    world.call("DELETE", f"/v1/payment-methods/{world.cards[OK]}", status=204)
    auto = world.wallet()["auto_reload"]
    assert auto["payment_method_ids"] == [world.cards[OK_TOO]]
    assert auto["payment_method_id"] == world.cards[OK_TOO]


def card_event(w: World, kind: EventKind, token: str, **details: Any) -> str:
    event = GatewayEvent(
        id=f"evt_{kind}_{token}",
        gateway="sandbox",
        type=str(kind),
        kind=kind,
        card=CardReport(token=token, **details),
    )
    return handle_gateway_event(w.refill.db, w.refill.policy, event)


def test_a_card_detached_at_the_gateway_leaves_the_list_and_the_backup_becomes_primary(
    world: World,
) -> None:
    arm(world, OK, OK_TOO)
    assert card_event(world, EventKind.CARD_DETACHED, OK) == "handled"
    auto = world.wallet()["auto_reload"]
    assert auto["payment_method_ids"] == [world.cards[OK_TOO]]
    assert (auto["payment_method_id"], auto["status"]) == (world.cards[OK_TOO], "active")
    world.use("6.00")
    assert charged_tokens(world) == [OK_TOO]
    card_event(world, EventKind.CARD_DETACHED, OK_TOO)  # the last one: suspended
    auto = world.wallet()["auto_reload"]
    assert (auto["payment_method_ids"], auto["status"]) == ([], "suspended")


def test_a_skipped_card_updated_at_the_gateway_is_charged_again(world: World) -> None:
    arm(world, LOST, OK)
    world.use("6.00")  # the lost card declines: skipped
    assert world.wallet()["auto_reload"]["cards"][0]["skipped"]
    card_event(
        world, EventKind.CARD_UPDATED, LOST, brand="visa", last4="9987", exp_month=1, exp_year=2031
    )
    assert not world.wallet()["auto_reload"]["cards"][0]["skipped"]


# --- the chain --------------------------------------------------------------------------


def test_a_declined_primary_hands_over_to_the_backup_which_pays_once(world: World) -> None:
    arm(world, BROKE, OK)
    world.use("6.00")
    first, backup = world.auto_reloads()
    assert (first["status"], first["failure_code"]) == ("failed", "insufficient_funds")
    assert (backup["status"], backup["payment_method_id"]) == ("succeeded", world.cards[OK])
    assert backup["retry_of"] == first["id"]
    assert backup["retry_number"] == 0
    assert charged_tokens(world) == [BROKE, OK]
    assert world.balance() == "69.00"  # 25 - 6 + 50: one credit
    failed = event_data(world, "auto_reload.failed")[-1]
    assert failed["card"]["last4"] == "9995"
    assert failed["next_card"]["last4"] == "4242"
    assert failed["will_retry_at"] is None
    paid = event_data(world, "auto_reload.succeeded")[-1]
    assert paid["card"]["last4"] == "4242"
    assert world.wallet()["auto_reload"]["status"] == "active"


def test_a_hard_declined_card_is_skipped_by_later_reloads_until_named_again(
    world: World,
) -> None:
    arm(world, LOST, OK)
    world.use("6.00")  # 19.00: the lost card declines, the Visa pays (69.00)
    cards = world.wallet()["auto_reload"]["cards"]
    assert [(c["skipped"], c["skip_reason"]) for c in cards] == [
        (True, "lost_card"),
        (False, None),
    ]
    world.use("50.00")  # 19.00 again: straight to the Visa
    assert charged_tokens(world) == [LOST, OK, OK]
    explained = world.call("GET", "/v1/wallet/auto-reload/explain")
    card_check = next(c for c in explained["checks"] if c["name"] == "card_usable")
    assert card_check["passed"]
    assert "backup" in card_check["detail"]
    # Naming the card again counts as a change and clears its skip.
    again = world.settings(payment_method_ids=[world.cards[LOST], world.cards[OK]])
    assert [c["skipped"] for c in again["auto_reload"]["cards"]] == [False, False]


def test_every_card_hard_declined_suspends_auto_reload(world: World) -> None:
    arm(world, LOST, EXPIRED)
    world.use("6.00")
    assert [a["status"] for a in world.auto_reloads()] == ["failed", "failed"]
    auto = world.wallet()["auto_reload"]
    assert auto["status"] == "suspended"
    assert "every card was declined" in auto["suspended_reason"]
    world.run_worker(timedelta(days=2))
    world.use("1.00")
    assert charged_tokens(world) == [LOST, EXPIRED]  # nothing more
    assert world.balance() == "18.00"


def test_soft_declines_on_every_card_retry_the_whole_chain_on_the_schedule(
    world: World,
) -> None:
    arm(world, SOFT, BROKE)
    world.use("6.00")
    assert charged_tokens(world) == [SOFT, BROKE]
    waiting = world.auto_reloads()[-1]
    assert (waiting["status"], waiting["payment_method_id"]) == ("pending", world.cards[SOFT])
    assert waiting["not_before"] == (START + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for wait in (timedelta(hours=1), timedelta(hours=6), timedelta(hours=24)):
        world.run_worker(wait)
    attempts = world.auto_reloads()
    assert [a["retry_number"] for a in attempts] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert charged_tokens(world) == [SOFT, BROKE] * 4
    auto = world.wallet()["auto_reload"]
    assert auto["status"] == "suspended"
    assert "every card was declined, 4 times" in auto["suspended_reason"]
    assert world.balance() == "19.00"


def test_a_card_needing_authentication_is_canceled_first_then_the_backup_pays(
    world: World,
) -> None:
    arm(world, SCA, OK)
    world.use("6.00")
    first, backup = world.auto_reloads()
    assert (first["status"], first["failure_code"]) == ("failed", "authentication_required")
    assert backup["status"] == "succeeded"
    assert len(world.gateway.cancels) == 1  # the first payment canceled before the backup
    assert world.gateway.cancels[0][1].status is ChargeStatus.CANCELED
    assert event_data(world, "auto_reload.requires_action") == []
    assert world.balance() == "69.00"
    # Authentication is not a fault of the card: it is not skipped.
    assert [c["skipped"] for c in world.wallet()["auto_reload"]["cards"]] == [False, False]


def test_without_a_backup_a_card_needing_authentication_waits_for_the_owner(
    world: World,
) -> None:
    arm(world, SCA)
    world.use("6.00")
    (only,) = world.auto_reloads()
    assert only["status"] == "requires_action"
    assert world.gateway.cancels == []


@dataclass
class UnknownFirst:
    """The sandbox, except that the first charge of ``token`` loses its answer (the bank
    acted; the reconciler finds the outcome later)."""

    token: str
    inner: SandboxGateway
    lost: list[str] = field(default_factory=list)
    name: str = "sandbox"

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    def charge(self, request: ChargeRequest) -> ChargeResult:
        result = self.inner.charge(request)
        if request.token == self.token and not self.lost:
            self.lost.append(request.idempotency_key)
            return ChargeResult(ChargeStatus.UNKNOWN, failure_message="timeout")
        return result

    def find_charge(self, request: ChargeRequest, payment_id: str | None) -> ChargeResult | None:
        if request.idempotency_key in self.lost:
            return self.inner.charge(request)  # what the bank did
        return self.inner.find_charge(request, payment_id)


def test_an_unknown_outcome_on_the_primary_holds_the_backup_until_it_is_resolved(
    db_url: str,
) -> None:
    clock = FrozenClock(START)
    gateway = UnknownFirst(BROKE, SandboxGateway(clock))
    with world_on(db_url, gateway, clock) as w:
        arm(w, BROKE, OK)
        w.use("6.00")
        (first,) = w.auto_reloads()
        assert first["status"] == "charging"
        w.run_worker()  # the lease still holds: nothing moves, the backup is not charged
        assert charged_tokens(w) == [BROKE]
        w.run_worker(timedelta(seconds=11))  # the lease ran out: the reconciler asks
        first, backup = w.auto_reloads()
        assert first["status"] == "failed"
        assert backup["status"] == "succeeded"
        assert charged_tokens(w) == [BROKE, OK]
        assert w.balance() == "69.00"


# --- a crash between the two charges -----------------------------------------------------


@pytest.fixture
def crashy(db_url: str, tmp_path: Path) -> Iterator[tuple[Any, FaultyGateway, str]]:
    gateway = FaultyGateway(tmp_path / "bank.db")
    service = build(Settings(database_url=db_url), gateway=gateway, in_process_worker=False)
    service.processor.pending_grace = timedelta(0)
    service.processor.lease = timedelta(0)  # every claim here is a dead claimer's
    armed = armed_agency(service, "Backup Co")  # its Visa becomes the backup
    primary, _ = services.save_payment_method(
        service.db, gateway, agency_id=armed.agency_id, token=BROKE, actor="test"
    )
    services.update_auto_reload(
        service.db,
        gateway,
        service.policy,
        agency_id=armed.agency_id,
        currency="USD",
        change=SettingsChange(payment_method_ids=(primary.id, armed.card_id)),
        actor="test",
    )
    services.record_usage(
        service.db,
        agency_id=armed.agency_id,
        subteam_id=armed.subteam_id,
        amount=6_000_000,
        reference="cross",
    )
    yield service, gateway, armed.agency_id
    service.close()


def _attempts(service: Any, agency_id: str) -> list[Any]:
    rows: list[Any] = service.db.read(
        lambda tx: tx.conn.execute(
            select(reload_attempts)
            .where(reload_attempts.c.agency_id == agency_id, reload_attempts.c.trigger == "auto")
            .order_by(reload_attempts.c.created_at, reload_attempts.c.retry_number)
        ).all()
    )
    return rows


def _one_success(service: Any, gateway: FaultyGateway, agency_id: str) -> None:
    assert len(gateway.succeeded()) == 1
    statuses = sorted(a.status for a in _attempts(service, agency_id))
    assert statuses == ["failed", "succeeded"]
    check = service.db.read(ledger_check.check_ledger)
    assert check.balanced, check
    wallet = services.get_wallet(service.db, service.policy, agency_id=agency_id)
    assert wallet.balance == 25_000_000 - 6_000_000 + 50_000_000


def test_a_crash_after_the_decline_is_recorded_leaves_the_backup_for_the_poller(
    crashy: tuple[Any, FaultyGateway, str],
) -> None:
    service, gateway, agency_id = crashy
    (pending,) = _attempts(service, agency_id)
    claimed = service.db.write(
        lambda tx: claim_attempt(tx, service.policy, pending.id, lease=timedelta(0))
    )
    result = gateway.charge(service.processor.charge_request(claimed))
    assert result.status is ChargeStatus.DECLINED
    # The decline and the backup's attempt commit together; then the process dies.
    service.db.write(lambda tx: record_charge_outcome(tx, service.policy, pending.id, result))
    assert [a.status for a in _attempts(service, agency_id)] == ["failed", "pending"]
    service.processor.run_due_work()  # a restarted worker
    _one_success(service, gateway, agency_id)


def test_a_crash_after_the_backup_was_charged_credits_it_once(
    crashy: tuple[Any, FaultyGateway, str],
) -> None:
    service, gateway, agency_id = crashy
    (pending,) = _attempts(service, agency_id)
    claimed = service.db.write(
        lambda tx: claim_attempt(tx, service.policy, pending.id, lease=timedelta(0))
    )
    result = gateway.charge(service.processor.charge_request(claimed))
    service.db.write(lambda tx: record_charge_outcome(tx, service.policy, pending.id, result))
    backup = _attempts(service, agency_id)[1]
    claimed = service.db.write(
        lambda tx: claim_attempt(tx, service.policy, backup.id, lease=timedelta(0))
    )
    gateway.charge(service.processor.charge_request(claimed))  # the bank took it; then died
    service.processor.run_due_work()
    service.processor.run_due_work()  # twice: nothing more
    _one_success(service, gateway, agency_id)
