"""A process that dies mid-charge: its claim's lease runs out within seconds and another
process takes the charge over, asks the gateway, and re-sends under the same idempotency
key only while the gateway still remembers that key. A live process whose gateway call is
slow keeps its claim however long the call takes."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from refill import alerts, ledger, ledger_check, services
from refill.bootstrap import Refill, build
from refill.clock import FrozenClock
from refill.config import Settings
from refill.gateway.base import ChargeRequest, ChargeResult, ChargeStatus
from refill.reload.attempt import charge_request, get_attempt
from refill.reload.machine import claim_attempt
from refill.reload.settlement import settle_by_operator
from refill.worker import ReloadProcessor
from tests.support import takeover
from tests.support.arming import armed_agency
from tests.support.doubles import FaultyGateway
from tests.support.stripe_peer import LocalStripe


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("gateway", ["sandbox", "stripe"])
def test_a_charging_process_killed_mid_charge_is_taken_over_and_credited_once(
    db_url: str, gateway: str, localstripe: LocalStripe, tmp_path: Path
) -> None:
    figures = takeover.run(
        db_url,
        gateway=gateway,
        rate=20.0,
        give_up_after=60.0,
        extra_env={"REFILL_CHARGE_LEASE_SECONDS": "1"},
        stripe_base=localstripe.base,
        work_dir=tmp_path,
    )
    assert figures.seconds_to_credit is not None, figures.notes
    assert figures.credits == 1
    if gateway == "stripe":
        # localstripe behind the idempotency proxy: the re-send was answered with the
        # first PaymentIntent, not a second charge.
        assert figures.payment_intents == 1


class Unsearchable(FaultyGateway):
    """A gateway that cannot be asked what became of a charge (Stripe without Search)."""

    def find_charge(self, request: ChargeRequest, payment_id: str | None) -> ChargeResult | None:
        return ChargeResult(ChargeStatus.UNKNOWN, payment_id, failure_message="cannot search")


def _armed(
    db_url: str, gateway: FaultyGateway, clock: FrozenClock | None = None
) -> tuple[Refill, str, str]:
    service = build(
        Settings(database_url=db_url), gateway=gateway, clock=clock, in_process_worker=False
    )
    service.processor.pending_grace = timedelta(0)
    armed = armed_agency(service, "Leased")
    services.record_usage(
        service.db,
        agency_id=armed.agency_id,
        subteam_id=armed.subteam_id,
        amount=6_000_000,
        reference="cross",
    )
    [attempt] = services.list_reloads(service.db, agency_id=armed.agency_id).data
    return service, armed.agency_id, attempt.id


def test_a_live_claimer_with_a_slow_gateway_call_keeps_its_charge(
    db_url: str, tmp_path: Path
) -> None:
    gateway = FaultyGateway(tmp_path / "bank.db", script=["hang_before"], hang_seconds=2.5)
    service, agency_id, attempt_id = _armed(db_url, gateway)
    service.processor.lease = timedelta(seconds=0.5)  # renewed every 0.1 s while it lives
    other = ReloadProcessor(service.db, gateway, service.policy, lease=timedelta(seconds=0.5))
    charging = threading.Thread(target=service.processor.process, args=(attempt_id,))
    charging.start()
    taken_over = 0
    try:
        while charging.is_alive():  # five leases long: it would lapse without renewal
            taken_over += other.run_due_work()
            time.sleep(0.05)
    finally:
        charging.join(30)
        other.close()
    attempt = service.db.read(lambda tx: get_attempt(tx, agency_id, attempt_id))
    check = service.db.read(ledger_check.check_ledger)
    service.close()
    assert taken_over == 0
    assert attempt.status == "succeeded"
    assert check.balanced
    assert len(gateway.succeeded()) == 1


@pytest.mark.parametrize(
    ("since_first_send", "resent"),
    [(timedelta(hours=22, minutes=59), True), (timedelta(hours=23, minutes=1), False)],
    ids=["within-23-hours-re-sends-under-the-same-key", "after-23-hours-alerts-instead"],
)
def test_a_charge_the_gateway_cannot_be_asked_about_is_re_sent_only_while_its_key_is_remembered(
    db_url: str, tmp_path: Path, since_first_send: timedelta, resent: bool
) -> None:
    clock = FrozenClock(datetime(2026, 3, 10, 15, 0, tzinfo=UTC))
    gateway = Unsearchable(tmp_path / "bank.db")
    service, agency_id, attempt_id = _armed(db_url, gateway, clock)
    # The claimer sent the charge (the bank took it), then died before hearing back.
    claimed = service.db.write(
        lambda tx: claim_attempt(tx, service.policy, attempt_id, lease=timedelta(0))
    )
    assert claimed is not None
    gateway.charge(charge_request(claimed))
    clock.advance(since_first_send)

    service.processor.run_due_work()

    attempt = service.db.read(lambda tx: get_attempt(tx, agency_id, attempt_id))
    open_alerts = service.db.read(alerts.open_alerts)
    if resent:
        assert attempt.status == "succeeded"  # the same key: the bank's first answer
        assert open_alerts == []
    else:
        assert attempt.status == "charging"
        assert [(a.kind, a.subject) for a in open_alerts] == [("charge_unresolvable", attempt_id)]
        # An operator checks the bank and settles it: credited once.
        service.db.write(
            lambda tx: settle_by_operator(
                tx,
                service.policy,
                attempt_id=attempt_id,
                paid=True,
                reason="seen at the bank",
                actor="cli",
            )
        )
    assert len(gateway.succeeded()) == 1
    balance = service.db.read(lambda tx: ledger.wallet_balance(tx, agency_id))
    assert balance == 25_000_000 - 6_000_000 + 50_000_000
    assert service.db.read(ledger_check.check_ledger).balanced
    service.close()
