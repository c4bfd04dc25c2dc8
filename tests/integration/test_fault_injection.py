"""Crash at every step of the reload path; after a restart and one reconciler pass, every
charge the gateway made is credited exactly once and nothing is credited that was not
charged. On SQLite and PostgreSQL; the "kill" cases kill a real process with SIGKILL.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from refill import ledger, ledger_check, services
from refill.bootstrap import Refill, build
from refill.config import Settings
from refill.db.database import Tx
from refill.db.schema import reload_attempts, transfers
from refill.reload.attempt import get_attempt
from refill.reload.machine import claim_attempt
from tests.support.arming import armed_agency
from tests.support.doubles import FaultyGateway


class InjectedCrash(Exception):
    """Stands in for the process dying at this exact point."""


@dataclass
class Setup:
    refill: Refill
    gateway: FaultyGateway
    agency_id: str
    subteam_id: str


def build_service(db_url: str, gateway: FaultyGateway) -> Refill:
    service = build(Settings(database_url=db_url), gateway=gateway, in_process_worker=False)
    service.processor.pending_grace = timedelta(0)
    # Every claim here is a dead claimer's: its lease is over at once.
    service.processor.lease = timedelta(0)
    return service


@pytest.fixture
def setup(db_url: str, tmp_path: Path) -> Iterator[Setup]:
    gateway = FaultyGateway(tmp_path / "bank.db")
    service = build_service(db_url, gateway)
    armed = armed_agency(service, "Crashy")
    yield Setup(service, gateway, armed.agency_id, armed.subteam_id)
    service.close()


def cross_threshold(s: Setup) -> str:
    """Usage that crosses the threshold; the attempt is left pending (no instant path)."""
    services.record_usage(
        s.refill.db,
        agency_id=s.agency_id,
        subteam_id=s.subteam_id,
        amount=6_000_000,
        reference=f"u-{time.monotonic_ns()}",
    )
    attempt_id = s.refill.db.read(
        lambda tx: tx.conn.execute(
            select(reload_attempts.c.id).where(
                reload_attempts.c.agency_id == s.agency_id, reload_attempts.c.status == "pending"
            )
        ).scalar_one()
    )
    return str(attempt_id)


def assert_charged_once_and_credited_once(s: Setup) -> None:
    def work(tx: Tx) -> tuple[dict[str, int], dict[str, str], ledger_check.LedgerCheck]:
        credits = dict(
            tx.conn.execute(
                select(transfers.c.reference, transfers.c.amount).where(
                    transfers.c.agency_id == s.agency_id, transfers.c.kind == "auto_reload"
                )
            ).all()
        )
        keys = dict(
            tx.conn.execute(
                select(reload_attempts.c.id, reload_attempts.c.idempotency_key).where(
                    reload_attempts.c.agency_id == s.agency_id,
                    reload_attempts.c.status == "succeeded",
                )
            ).all()
        )
        return credits, keys, ledger_check.check_ledger(tx)

    credits, keys, check = s.refill.db.read(work)
    charged = s.gateway.succeeded()
    assert check.balanced, check
    assert len(charged) == 1, charged  # one charge at the bank
    assert sorted(credits) == sorted(keys)  # one credit per succeeded attempt
    assert {keys[ref]: amount // 10_000 for ref, amount in credits.items()} == charged
    balance = s.refill.db.read(lambda tx: ledger.wallet_balance(tx, s.agency_id))
    assert balance == 25_000_000 - 6_000_000 + 50_000_000


def reconcile(s: Setup) -> None:
    """A restarted worker: one pass of the poller and the reconciler."""
    s.refill.processor.run_due_work()


def test_crash_before_the_gateway_call_charges_once_after_restart(setup: Setup) -> None:
    attempt_id = cross_threshold(setup)
    claimed = setup.refill.db.write(
        lambda tx: claim_attempt(tx, setup.refill.policy, attempt_id, lease=timedelta(0))
    )
    assert claimed is not None  # committed 'charging', then the process died
    assert setup.gateway.succeeded() == {}
    reconcile(setup)
    assert_charged_once_and_credited_once(setup)


def test_crash_after_the_gateway_charged_but_before_the_credit_credits_once(
    setup: Setup,
) -> None:
    attempt_id = cross_threshold(setup)
    claimed = setup.refill.db.write(
        lambda tx: claim_attempt(tx, setup.refill.policy, attempt_id, lease=timedelta(0))
    )
    assert claimed is not None
    setup.gateway.charge(setup.refill.processor.charge_request(claimed))  # then died
    reconcile(setup)
    assert_charged_once_and_credited_once(setup)


def test_crash_after_the_credit_but_before_the_status_update_credits_once(
    setup: Setup,
) -> None:
    attempt_id = cross_threshold(setup)
    engine = setup.refill.db.engine

    def die_before_status_update(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        values = params.values() if isinstance(params, dict) else params
        if statement.startswith("UPDATE reload_attempts SET status") and "succeeded" in values:
            raise InjectedCrash("process died between the credit and the status update")

    event.listen(engine, "before_cursor_execute", die_before_status_update)
    try:
        with pytest.raises(InjectedCrash):
            setup.refill.processor.process(attempt_id)
    finally:
        event.remove(engine, "before_cursor_execute", die_before_status_update)
    # The credit rolled back with the failed transaction: charged, not yet credited.
    assert len(setup.gateway.succeeded()) == 1
    assert setup.refill.db.read(lambda tx: ledger.wallet_balance(tx, setup.agency_id)) == 19_000_000
    reconcile(setup)
    assert_charged_once_and_credited_once(setup)


def test_timeout_on_a_charge_that_went_through_is_credited_once(setup: Setup) -> None:
    attempt_id = cross_threshold(setup)
    setup.gateway.script = ["late_success"]
    outcome = setup.refill.processor.process(attempt_id)
    assert outcome is not None
    assert outcome.status == "charging"
    reconcile(setup)
    assert_charged_once_and_credited_once(setup)


def test_timeout_before_the_bank_saw_the_request_charges_once_on_reconcile(setup: Setup) -> None:
    attempt_id = cross_threshold(setup)
    setup.gateway.script = ["lost_request"]
    outcome = setup.refill.processor.process(attempt_id)
    assert outcome is not None
    assert outcome.status == "charging"
    assert setup.gateway.succeeded() == {}
    reconcile(setup)
    assert_charged_once_and_credited_once(setup)


def test_reconciling_twice_or_from_two_workers_changes_nothing_more(setup: Setup) -> None:
    attempt_id = cross_threshold(setup)
    setup.gateway.script = ["late_success"]
    setup.refill.processor.process(attempt_id)
    other = build_service(setup.refill.db.url, setup.gateway)
    try:
        reconcile(setup)
        other.processor.run_due_work()
        reconcile(setup)
    finally:
        other.close()
    assert_charged_once_and_credited_once(setup)


def _worker_that_hangs(db_url: str, bank: str, attempt_id: str, fault: str) -> None:
    service = build(
        Settings(database_url=db_url, charge_lease_seconds=0.5),
        gateway=FaultyGateway(Path(bank), script=[fault]),
        in_process_worker=False,
    )
    service.processor.process(attempt_id)  # hangs inside the gateway call until killed


@pytest.mark.parametrize(
    "fault",
    ["hang_before", "hang_after"],
    ids=["killed-before-the-bank-acted", "killed-after-the-bank-charged"],
)
def test_a_worker_killed_mid_charge_leaves_the_attempt_for_the_reconciler(
    setup: Setup, fault: str
) -> None:
    attempt_id = cross_threshold(setup)
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(
        target=_worker_that_hangs,
        args=(setup.refill.db.url, str(setup.gateway.bank), attempt_id, fault),
    )
    proc.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = setup.refill.db.read(
                lambda tx: get_attempt(tx, setup.agency_id, attempt_id).status
            )
            charged = bool(setup.gateway.succeeded())
            if status == "charging" and (charged or fault == "hang_before"):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the worker never reached the gateway call")
    finally:
        proc.kill()  # SIGKILL: no cleanup, no graceful shutdown
        proc.join(timeout=30)
    assert proc.exitcode is not None
    assert proc.exitcode < 0
    assert (len(setup.gateway.succeeded()) == 1) == (fault == "hang_after")
    # The dead claimer's lease (0.5 s) runs out; only then does the reconciler take over.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reconcile(setup)
        status = setup.refill.db.read(
            lambda tx: get_attempt(tx, setup.agency_id, attempt_id).status
        )
        if status != "charging":
            break
        time.sleep(0.1)
    assert_charged_once_and_credited_once(setup)
