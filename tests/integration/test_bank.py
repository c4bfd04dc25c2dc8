"""A bank test in the spirit of Jepsen, on PostgreSQL.

Several processes hammer usage, manual top-ups, settings changes and cancellations on a
few wallets for a bounded time, each with its own in-process reload worker and reconciler,
while the gateway randomly declines, loses requests, and succeeds after a timeout. Then the
books must close: the sum of all accounts is zero, every wallet's balance equals its
transfers, the count and sum of charges the gateway made equal the credited reloads, and a
monitor never saw more than one active auto-reload per wallet.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from refill import ledger_check, services
from refill.bootstrap import Refill, build
from refill.config import Settings
from refill.db.database import Tx
from refill.db.schema import reload_attempts, transfers
from refill.errors import RefillError
from refill.reload.settings import SettingsChange
from refill.reload.states import ACTIVE_STATUSES
from tests.support.doubles import FaultyGateway

PROCESSES = 4
SECONDS = 8.0
MAX_OPS_PER_PROCESS = 1500
WALLETS = 3
TOKENS = [
    "pm_card_visa",
    "pm_card_mastercard",
    "pm_card_chargeCustomerFail",
    "pm_card_chargeDeclinedExpiredCard",
    "pm_card_authenticationRequired",
]
FAULTS = {"ok": 0.6, "decline": 0.1, "lost_request": 0.15, "late_success": 0.15}


def bank_settings(url: str) -> Settings:
    # Retries and reconciliation fast enough to happen many times within the run.
    return Settings(
        database_url=url,
        poll_interval_seconds=0.05,
        charge_lease_seconds=0.5,
        retry_delays_seconds=(0.2, 0.5, 1.0),
    )


@dataclass
class Agency:
    agency_id: str
    subteams: list[str]
    cards: dict[str, str]


def make_agencies(service: Refill, gateway: FaultyGateway) -> list[Agency]:
    result = []
    for i in range(WALLETS):
        agency, _ = services.create_agency(service.db, name=f"Bank {i}")
        subteams = [
            services.create_subteam(service.db, agency_id=agency.id, name=f"s{k}").id
            for k in range(3)
        ]
        cards = {
            token: services.save_payment_method(
                service.db, gateway, agency_id=agency.id, token=token, actor="test"
            )[0].id
            for token in TOKENS
        }
        services.update_auto_reload(
            service.db,
            service.gateway,
            service.policy,
            agency_id=agency.id,
            currency="USD",
            actor="test",
            change=SettingsChange(
                enabled=True,
                threshold=20_000_000,
                reload_amount=30_000_000,
                payment_method_id=cards["pm_card_visa"],
                daily_limit=50,
            ),
        )
        result.append(Agency(agency.id, subteams, cards))
    return result


def _client_process(
    url: str, bank: str, agencies_json: str, n: int, out: multiprocessing.Queue[dict[str, int]]
) -> None:
    agencies = [Agency(**a) for a in json.loads(agencies_json)]
    gateway = FaultyGateway(Path(bank), weights=FAULTS, seed=n)
    service = build(bank_settings(url), gateway=gateway)
    assert service.worker is not None
    service.worker.start()
    rng = random.Random(1000 + n)
    ops: Counter[str] = Counter()
    deadline = time.monotonic() + SECONDS
    db, policy = service.db, service.policy
    for i in range(MAX_OPS_PER_PROCESS):
        if time.monotonic() > deadline:
            break
        agency = rng.choice(agencies)
        roll = rng.random()
        try:
            if roll < 0.80:
                ops["usage"] += 1
                services.record_usage(
                    db,
                    agency_id=agency.agency_id,
                    subteam_id=rng.choice(agency.subteams),
                    amount=rng.randint(1, 600) * 10_000 + rng.randint(0, 9_999),
                    reference=f"p{n}-{i}",
                )
            elif roll < 0.85:
                ops["top_up"] += 1
                services.add_credits(
                    db,
                    service.processor,
                    agency_id=agency.agency_id,
                    currency="USD",
                    amount=rng.randint(5, 20) * 1_000_000,
                    payment_method_id=agency.cards[rng.choice(TOKENS[:3])],
                    request_key=f"p{n}-{i}" if rng.random() < 0.5 else None,
                )
            elif roll < 0.95:
                ops["settings"] += 1
                threshold = rng.randint(0, 40) * 1_000_000
                services.update_auto_reload(
                    db,
                    gateway,
                    policy,
                    agency_id=agency.agency_id,
                    currency="USD",
                    actor="test",
                    change=SettingsChange(
                        enabled=rng.random() < 0.9,
                        threshold=threshold,
                        reload_amount=max(threshold, 4_000_000) + rng.randint(1, 30) * 1_000_000,
                        payment_method_id=agency.cards[rng.choice(TOKENS[:2] * 4 + TOKENS[2:])],
                        daily_limit=rng.choice([50] * 7 + [3]),
                        monthly_cap=rng.choice([None] * 7 + [300_000_000]),
                    ),
                )
            else:
                ops["cancel"] += 1
                page = services.list_reloads(db, agency_id=agency.agency_id, limit=5)
                for attempt in page.data:
                    if attempt.status == "requires_action":
                        services.cancel_reload(
                            db, gateway, policy, agency_id=agency.agency_id, attempt_id=attempt.id
                        )
        except RefillError as exc:
            ops[f"refused:{exc.code}"] += 1
    service.close()  # graceful: charges in flight record their outcome or stay for the reconciler
    out.put(dict(ops))


class ActiveMonitor(threading.Thread):
    def __init__(self, service: Refill) -> None:
        super().__init__(daemon=True)
        self.service = service
        self.max_active = 0
        self.samples = 0
        self.stop = threading.Event()

    def _max(self, tx: Tx) -> int:
        counts = tx.conn.execute(
            select(func.count())
            .where(
                reload_attempts.c.trigger == "auto",
                reload_attempts.c.status.in_(ACTIVE_STATUSES),
            )
            .group_by(reload_attempts.c.wallet_id)
        ).scalars()
        return max(counts, default=0)

    def run(self) -> None:
        while not self.stop.wait(0.01):
            self.max_active = max(self.max_active, self.service.db.read(self._max))
            self.samples += 1


def settle(service: Refill) -> None:
    """After the clients stop: reconcile until nothing is in flight or due soon."""
    service.processor.pending_grace = timedelta(0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        service.processor.run_due_work()
        in_flight = service.db.read(
            lambda tx: tx.conn.execute(
                select(func.count())
                .select_from(reload_attempts)
                .where(
                    (reload_attempts.c.status == "charging")
                    | (
                        (reload_attempts.c.status == "pending")
                        & (
                            reload_attempts.c.not_before.is_(None)
                            | (reload_attempts.c.not_before <= tx.now + timedelta(seconds=2))
                        )
                    )
                )
            ).scalar_one()
        )
        if in_flight == 0:
            return
        time.sleep(0.1)
    pytest.fail("reload attempts still in flight a minute after the load stopped")


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_bank_books_close_under_concurrent_chaos(db_url: str, tmp_path: Path) -> None:
    bank = tmp_path / "bank.db"
    gateway = FaultyGateway(bank, weights=FAULTS, seed=0)
    service = build(bank_settings(db_url), gateway=gateway, in_process_worker=False)
    agencies = make_agencies(service, gateway)
    payload = json.dumps([a.__dict__ for a in agencies])
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_client_process, args=(db_url, str(bank), payload, n, out))
        for n in range(PROCESSES)
    ]
    monitor = ActiveMonitor(service)
    monitor.start()
    started = time.monotonic()
    for p in procs:
        p.start()
    results = [out.get(timeout=SECONDS + 120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    duration = time.monotonic() - started
    settle(service)
    monitor.stop.set()
    monitor.join()

    ops: Counter[str] = Counter()
    for r in results:
        ops.update(r)

    def books(
        tx: Tx,
    ) -> tuple[ledger_check.LedgerCheck, dict[str, int], dict[str, str], Counter[str]]:
        credits = dict(
            tx.conn.execute(
                select(transfers.c.reference, transfers.c.amount).where(
                    transfers.c.kind.in_(["auto_reload", "manual_reload"])
                )
            ).all()
        )
        keys = dict(
            tx.conn.execute(
                select(reload_attempts.c.id, reload_attempts.c.idempotency_key).where(
                    reload_attempts.c.status == "succeeded"
                )
            ).all()
        )
        rows = tx.conn.execute(
            select(reload_attempts.c.trigger, reload_attempts.c.status, func.count()).group_by(
                reload_attempts.c.trigger, reload_attempts.c.status
            )
        ).all()
        statuses = Counter({f"{trigger}:{status}": count for trigger, status, count in rows})
        return ledger_check.check_ledger(tx), credits, keys, statuses

    check, credits, keys, statuses = service.db.read(books)
    charged = gateway.succeeded()
    total = sum(n for op, n in ops.items() if not op.startswith("refused:"))
    print(  # noqa: T201  the run's figures, shown with -s
        f"\nbank test: {PROCESSES} processes, {total} operations in "
        f"{duration:.1f}s: {dict(ops)}; attempts by status: {dict(statuses)}; "
        f"{len(charged)} charges at the bank; monitor samples: {monitor.samples}"
    )
    service.close()

    assert check.balanced, check
    assert monitor.samples > 0
    assert monitor.max_active <= 1
    # Count and sum of gateway charges equal the credited reloads, one for one.
    assert sorted(credits) == sorted(keys)
    credited_by_key = {keys[ref]: amount // 10_000 for ref, amount in credits.items()}
    assert credited_by_key == charged
    assert len(credits) == len(charged)
    assert sum(credits.values()) == sum(charged.values()) * 10_000
    # The chaos really happened.
    assert ops["usage"] > 100
    assert ops["settings"] > 10
    assert ops["top_up"] > 10
    assert statuses["auto:failed"] > 0
    assert statuses["auto:succeeded"] > 10
    assert statuses["manual:failed"] > 0
    assert statuses["manual:succeeded"] > 10
