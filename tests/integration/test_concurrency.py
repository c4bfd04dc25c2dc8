"""Concurrency, proven on real databases: many threads (both engines) and many processes
(PostgreSQL) record usage on one wallet while crossing the threshold again and again.

Afterwards: no lost update, never more than one active auto-reload, the ledger balances,
and every successful charge is credited exactly once. Bounded in count; no wall-clock
assertions.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from refill import ledger, ledger_check, services
from refill.bootstrap import Refill, build
from refill.config import Settings
from refill.db.database import Database, Tx
from refill.db.schema import reload_attempts, transfers
from refill.errors import InsufficientCredits
from refill.gateway.sandbox import SandboxGateway
from refill.ids import wallet_id_for
from refill.reload.settings import SettingsChange
from refill.reload.states import ACTIVE_STATUSES
from tests.support.doubles import RecordingGateway

THRESHOLD = 20_000_000
RELOAD = 50_000_000
START = 30_000_000


@dataclass
class Tally:
    accepted: int = 0
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_agency(refill: Refill) -> tuple[str, list[str]]:
    db = refill.db
    agency, _ = services.create_agency(db, name="Busy Agency")
    subteams = [
        services.create_subteam(db, agency_id=agency.id, name=f"line {i}").id for i in range(4)
    ]
    card, _ = services.save_payment_method(
        db, refill.gateway, agency_id=agency.id, token="pm_card_visa", actor="test"
    )

    services.grant_credits(db, agency_id=agency.id, amount=START, reference="start")
    services.update_auto_reload(
        db,
        refill.gateway,
        refill.policy,
        agency_id=agency.id,
        currency="USD",
        change=SettingsChange(
            enabled=True, threshold=THRESHOLD, reload_amount=RELOAD, payment_method_id=card.id
        ),
        actor="test",
    )
    return agency.id, subteams


def record_many(
    service: Refill, agency_id: str, subteams: list[str], prefix: str, count: int, seed: int
) -> tuple[int, int]:
    rng = random.Random(seed)
    accepted = refused = 0
    for i in range(count):
        amount = rng.randint(50, 300) * 10_000 + rng.randint(0, 9_999)
        try:
            services.record_usage(
                service.db,
                agency_id=agency_id,
                subteam_id=rng.choice(subteams),
                amount=amount,
                reference=f"{prefix}-{i}",
            )
            accepted += amount
        except InsufficientCredits:
            refused += 1
    return accepted, refused


class ActiveAttemptMonitor:
    """Samples the number of active auto-reloads per wallet while the load runs."""

    def __init__(self, db: Database, agency_id: str) -> None:
        self.db = db
        self.wallet_id = wallet_id_for(agency_id)
        self.max_seen = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _count(self, tx: Tx) -> int:
        return int(
            tx.conn.execute(
                select(func.count())
                .select_from(reload_attempts)
                .where(
                    reload_attempts.c.wallet_id == self.wallet_id,
                    reload_attempts.c.trigger == "auto",
                    reload_attempts.c.status.in_(ACTIVE_STATUSES),
                )
            ).scalar_one()
        )

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.max_seen = max(self.max_seen, self.db.read(self._count))
            self.samples += 1

    def __enter__(self) -> ActiveAttemptMonitor:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def drain(refill: Refill) -> None:
    """Finish whatever the load left pending, as the poller would."""
    refill.processor.pending_grace = timedelta(0)
    while refill.processor.run_due_work():
        pass


def assert_books_close(
    refill: Refill, agency_id: str, accepted: int, successful_charge_keys: set[str]
) -> int:
    def work(
        tx: Tx,
    ) -> tuple[ledger_check.LedgerCheck, int, dict[str, int], dict[str, str], int, int]:
        check = ledger_check.check_ledger(tx)
        balance = ledger.wallet_balance(tx, agency_id)
        credited = dict(
            tx.conn.execute(
                select(transfers.c.reference, transfers.c.amount).where(
                    transfers.c.agency_id == agency_id, transfers.c.kind == "auto_reload"
                )
            ).all()
        )
        succeeded = dict(
            tx.conn.execute(
                select(reload_attempts.c.id, reload_attempts.c.idempotency_key).where(
                    reload_attempts.c.agency_id == agency_id,
                    reload_attempts.c.status == "succeeded",
                )
            ).all()
        )
        usage = tx.conn.execute(
            select(func.coalesce(func.sum(transfers.c.amount), 0)).where(
                transfers.c.agency_id == agency_id, transfers.c.kind == "usage"
            )
        ).scalar_one()
        open_count = tx.conn.execute(
            select(func.count())
            .select_from(reload_attempts)
            .where(
                reload_attempts.c.agency_id == agency_id,
                reload_attempts.c.status.in_(["pending", "charging"]),
            )
        ).scalar_one()
        return check, balance, credited, succeeded, int(usage), int(open_count)

    check, balance, credited, succeeded, usage, open_count = refill.db.read(work)
    assert check.balanced, check
    assert open_count == 0
    assert usage == accepted  # every accepted usage is in the ledger, nothing else
    # No lost update: the stored balance is exactly what the accepted operations add up to.
    assert balance == START + sum(credited.values()) - accepted
    # Every successful charge is credited exactly once, and only those.
    assert sorted(credited) == sorted(succeeded)
    assert set(succeeded.values()) == successful_charge_keys
    assert all(amount == RELOAD for amount in credited.values())
    return len(credited)


@pytest.fixture
def live_refill(db_url: str) -> Iterator[Refill]:
    """The service as `refill serve` runs it: reloads on background threads plus a poller."""
    gateway = RecordingGateway(SandboxGateway())
    service = build(Settings(database_url=db_url, poll_interval_seconds=0.05), gateway=gateway)
    assert service.worker is not None
    service.worker.start()
    yield service
    service.close()


def test_many_threads_on_one_wallet_lose_no_update_and_never_reload_twice(
    live_refill: Refill,
) -> None:
    agency_id, subteams = make_agency(live_refill)
    tally = Tally()

    def hammer(n: int) -> None:
        accepted, refused = record_many(live_refill, agency_id, subteams, f"t{n}", 150, n)
        with tally.lock:
            tally.accepted += accepted
            tally.refused += refused

    with ActiveAttemptMonitor(live_refill.db, agency_id) as monitor:
        threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert live_refill.worker is not None
        live_refill.worker.stop()
        drain(live_refill)
    assert monitor.samples > 0
    assert monitor.max_seen <= 1
    gateway = live_refill.gateway
    assert isinstance(gateway, RecordingGateway)
    reloads = assert_books_close(live_refill, agency_id, tally.accepted, gateway.succeeded_keys())
    assert reloads >= 5  # the threshold was crossed again and again


def _process_main(
    url: str,
    agency_id: str,
    subteams: list[str],
    n: int,
    out: multiprocessing.Queue[Any],
) -> None:
    gateway = RecordingGateway(SandboxGateway())
    service = build(Settings(database_url=url, poll_interval_seconds=0.05), gateway=gateway)
    assert service.worker is not None
    service.worker.start()
    results: list[tuple[int, int]] = []

    def run(k: int) -> None:
        results.append(record_many(service, agency_id, subteams, f"p{n}t{k}", 100, n * 10 + k))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    service.close()  # graceful: charges in flight finish recording their outcome
    out.put(
        (sum(a for a, _ in results), sum(r for _, r in results), sorted(gateway.succeeded_keys()))
    )


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_many_processes_on_one_postgres_wallet_credit_every_charge_exactly_once(
    db_url: str, refill: Refill
) -> None:
    agency_id, subteams = make_agency(refill)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_process_main, args=(db_url, agency_id, subteams, n, out))
        for n in range(4)
    ]
    with ActiveAttemptMonitor(refill.db, agency_id) as monitor:
        for p in procs:
            p.start()
        results = [out.get(timeout=240) for _ in procs]
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
    drain(refill)
    assert monitor.samples > 0
    assert monitor.max_seen <= 1
    accepted = sum(r[0] for r in results)
    keys = {k for r in results for k in r[2]}
    gateway = refill.gateway
    assert isinstance(gateway, RecordingGateway)
    keys |= gateway.succeeded_keys()
    reloads = assert_books_close(refill, agency_id, accepted, keys)
    assert reloads >= 5
