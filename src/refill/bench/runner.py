"""`refill bench`: Refill's hot paths measured against the database's own limit.

Every scenario runs Refill and its baseline in the same run, interleaved in alternating
rounds on the same database, driver and number of clients, and reports the ratio. Load
loops are bounded by time and count, and talk only to this machine.
"""

from __future__ import annotations

import os
import platform
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import text

from refill import services
from refill.bench.baseline import BaselineInsufficient, BaselineSQL
from refill.bench.batch import SIZES, measure_batches
from refill.bench.fixtures import BenchAgency, RawPool, fill_history, make_agency
from refill.bench.holds import measure_holds
from refill.bench.http_scenario import measure_http
from refill.bench.measure import (
    ROUNDS,
    Measurement,
    Result,
    interleaved,
    run_clients,
)
from refill.bench.webhooks import measure_webhooks
from refill.bootstrap import Refill, build
from refill.config import Settings
from refill.db.database import create_db_engine
from refill.db.migrate import upgrade
from refill.ids import system_account_id

MAX_LATENCY_SAMPLES = 500


@dataclass
class BenchConfig:
    database_url: str | None = None
    seconds: float = 5.0
    clients: list[int] = field(default_factory=lambda: [1, 4, 16])
    history_sizes: list[int] = field(default_factory=lambda: [10_000, 100_000, 1_000_000])
    http: bool = True
    webhooks: bool = True


class Bench:
    def __init__(self, config: BenchConfig, *, on_progress: Callable[[str], None]) -> None:
        self.config = config
        self.on_progress = on_progress
        self.results: list[Result] = []
        self.run_id = secrets.token_hex(3)

    # --- the run ----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        with self._database() as url:
            settings = Settings(database_url=url, reload_threads=4, poll_interval_seconds=1.0)
            refill = build(settings)
            if refill.worker is None:
                raise RuntimeError("the benchmark needs the in-process worker")
            refill.worker.start()
            self.sql = BaselineSQL(refill.db.dialect)
            self.raw = RawPool(refill)
            try:
                machine = self._machine(refill)
                for clients in self.config.clients:
                    self.usage_hot(refill, clients)
                for clients in self.config.clients:
                    self.usage_spread(refill, clients)
                self.authorize(refill)
                measure_batches(self, refill)
                measure_holds(self, refill)
                self.reload_latency(refill)
                if self.config.http:
                    measure_http(self, refill, url)
                if self.config.webhooks:
                    self.webhooks(url)
                self.history_scale(refill)
            finally:
                self.raw.close()
                refill.close()
        return {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine,
            "settings": {
                "database": refill.db.dialect,
                "seconds_per_scenario": self.config.seconds,
                "clients": self.config.clients,
                "history_sizes": self.config.history_sizes,
                "rounds": ROUNDS,
            },
            "results": [asdict(r) for r in self.results],
        }

    @staticmethod
    def phases(config: BenchConfig) -> int:
        """How many progress ticks a run makes (for the progress bar)."""
        per_usage = ROUNDS * len(config.clients) * 4  # usage-hot, -spread, authorize-hold, settle
        batches = ROUNDS * len(SIZES)
        on_postgresql = (config.database_url or "").startswith("postgresql")
        http = ROUNDS * (2 if on_postgresql else 1) if config.http else 0  # 1 and 2 processes
        return per_usage + batches + ROUNDS + 1 + http + config.webhooks + len(config.history_sizes)

    @contextmanager
    def _database(self) -> Iterator[str]:
        if self.config.database_url:
            engine = create_db_engine(self.config.database_url)
            upgrade(engine)
            engine.dispose()
            yield self.config.database_url
            return
        with tempfile.TemporaryDirectory(prefix="refill-bench-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            engine = create_db_engine(url)
            upgrade(engine)
            engine.dispose()
            yield url

    def _machine(self, refill: Refill) -> dict[str, Any]:
        version = refill.db.read(
            lambda tx: tx.conn.execute(
                text("SELECT sqlite_version()" if tx.dialect == "sqlite" else "SHOW server_version")
            ).scalar()
        )
        return {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "database": f"{refill.db.dialect} {version}",
        }

    def _tick(self, label: str) -> Callable[[], None]:
        return lambda: self.on_progress(label)

    def _record(
        self,
        scenario: str,
        clients: int | None,
        mine: Measurement,
        base: Measurement | None,
        target: str,
        ratio_floor: float | None,
        *,
        note: str = "",
    ) -> Result:
        ratio = None
        met = None
        if base is not None and base.throughput > 0:
            ratio = round(mine.throughput / base.throughput, 3)
            met = ratio >= ratio_floor if ratio_floor is not None else None
        result = Result(
            scenario,
            clients,
            mine.summary(),
            None if base is None else base.summary(),
            ratio,
            target,
            met,
            note,
        )
        self.results.append(result)
        return result

    # --- scenarios --------------------------------------------------------------------

    def _usage_ops(
        self,
        refill: Refill,
        agencies: list[BenchAgency],
        baseline_agencies: list[BenchAgency],
        tag: str,
        *,
        amount: int = 100_000,  # 0.10 per event
    ) -> tuple[Callable[[int, int], None], Callable[[int, int], None]]:
        revenue = system_account_id("usage_revenue", "USD")

        # What POST /v1/usage runs: the coalescer when on (PostgreSQL), else the single path.
        record = refill.usage.record

        def refill_op(n: int, i: int) -> None:
            agency = agencies[(n * 7919 + i) % len(agencies)]
            record(
                agency_id=agency.agency_id,
                subteam_id=agency.subteams[i % len(agency.subteams)],
                amount=amount,
                reference=f"{tag}-r-{n}-{i}",
            )

        def baseline_op(n: int, i: int) -> None:
            agency = baseline_agencies[(n * 7919 + i) % len(baseline_agencies)]
            try:
                with self.raw.connection(n) as conn:
                    self.sql.record_usage(
                        conn,
                        agency_id=agency.agency_id,
                        wallet_id=agency.wallet_id,
                        revenue_id=revenue,
                        subteam_id=agency.subteams[i % len(agency.subteams)],
                        amount=amount,
                        reference=f"{tag}-b-{n}-{i}",
                    )
            except BaselineInsufficient:
                raise RuntimeError("baseline wallet ran dry") from None

        return refill_op, baseline_op

    def usage_hot(self, refill: Refill, clients: int) -> None:
        # One wallet, many subteams, auto-reload on: every 10,100 events of 0.01 cross the
        # threshold (a few reloads a second at most, within the daily limit's 50).
        hot = make_agency(
            refill,
            f"hot-{self.run_id}-{clients}",
            subteams=16,
            grant=150_000_000,
            auto_reload=(100_000_000, 101_000_000),
        )
        base = make_agency(refill, f"hot-base-{self.run_id}-{clients}", subteams=16, grant=10**15)
        refill_op, baseline_op = self._usage_ops(
            refill, [hot], [base], f"hot{clients}", amount=10_000
        )
        mine, theirs = interleaved(
            refill_op,
            baseline_op,
            clients,
            self.config.seconds,
            self._tick(f"usage-hot x{clients}"),
        )
        reloads = services.list_reloads(refill.db, agency_id=hot.agency_id, limit=200).data
        self._record(
            "usage-hot",
            clients,
            mine,
            theirs,
            ">= 0.8 of baseline",
            0.8,
            note=f"{len(reloads)} auto-reloads during the run",
        )

    def usage_spread(self, refill: Refill, clients: int) -> None:
        if not hasattr(self, "_spread"):
            self._spread = [
                make_agency(
                    refill,
                    f"spread-{self.run_id}-{k}",
                    subteams=2,
                    grant=10**13,
                    auto_reload=(1_000_000, 50_000_000),
                )
                for k in range(1000)
            ]
        refill_op, baseline_op = self._usage_ops(
            refill, self._spread, self._spread, f"spread{clients}"
        )
        mine, theirs = interleaved(
            refill_op,
            baseline_op,
            clients,
            self.config.seconds,
            self._tick(f"usage-spread x{clients}"),
        )
        self._record(
            "usage-spread", clients, mine, theirs, ">= 0.8 of baseline", 0.8, note="1,000 agencies"
        )

    def authorize(self, refill: Refill) -> None:
        agencies = self._spread[:100]

        def refill_op(n: int, i: int) -> None:
            agency = agencies[i % len(agencies)]
            services.authorize_call(
                refill.db, agency_id=agency.agency_id, subteam_id=agency.subteams[0]
            )

        def baseline_op(n: int, i: int) -> None:
            agency = agencies[i % len(agencies)]
            with self.raw.connection(n) as conn:
                self.sql.authorize_call(
                    conn, agency_id=agency.agency_id, subteam_id=agency.subteams[0]
                )

        mine, theirs = interleaved(
            refill_op, baseline_op, 1, self.config.seconds, self._tick("authorize")
        )
        result = self._record("authorize", 1, mine, theirs, "p99 < 2 ms (SQLite, in process)", None)
        if refill.db.dialect == "sqlite":
            result.met = mine.percentile(99) < 2.0

    def reload_latency(self, refill: Refill) -> None:
        """From the usage that crosses the threshold to the credit being committed."""
        agency = make_agency(
            refill,
            f"latency-{self.run_id}",
            subteams=1,
            grant=30_000_000,
            auto_reload=(20_000_000, 50_000_000),
        )
        done: dict[str, float] = {}
        processor = refill.processor
        original = processor.process
        lock = threading.Condition()

        def timed_process(attempt_id: str) -> Any:
            outcome = original(attempt_id)
            with lock:
                done[attempt_id] = time.perf_counter()
                lock.notify_all()
            return outcome

        processor.process = timed_process  # type: ignore[method-assign]
        latencies: list[float] = []
        deadline = time.perf_counter() + self.config.seconds
        i = 0
        try:
            # Bounded below the wallet's daily limit, which would (rightly) block reloads.
            while time.perf_counter() < deadline and i < MAX_LATENCY_SAMPLES:
                balance = services.get_wallet(
                    refill.db, refill.policy, agency_id=agency.agency_id
                ).balance
                # Bring the balance to just above the threshold, then cross it.
                if balance > 20_010_000:
                    services.record_usage(
                        refill.db,
                        agency_id=agency.agency_id,
                        subteam_id=agency.subteams[0],
                        amount=balance - 20_010_000,
                        reference=f"lat-fill-{i}",
                    )
                started = time.perf_counter()
                services.record_usage(
                    refill.db,
                    agency_id=agency.agency_id,
                    subteam_id=agency.subteams[0],
                    amount=20_000,
                    reference=f"lat-cross-{i}",
                )
                attempt = services.list_reloads(
                    refill.db, agency_id=agency.agency_id, limit=1
                ).data[0]
                with lock:
                    lock.wait_for(partial(done.__contains__, attempt.id), timeout=10)
                finished = services.get_reload(
                    refill.db, agency_id=agency.agency_id, attempt_id=attempt.id
                )
                if attempt.id in done and finished.status == "succeeded":
                    latencies.append((done[attempt.id] - started) * 1000)
                i += 1
        finally:
            processor.process = original  # type: ignore[method-assign]
        self.on_progress("reload-latency")
        mine = Measurement(len(latencies), self.config.seconds, latencies)
        result = self._record(
            "reload-latency",
            1,
            mine,
            None,
            "p99 < 100 ms (sandbox)",
            None,
            note="usage commit -> credit commit, instant processing",
        )
        result.met = bool(latencies) and mine.percentile(99) < 100.0

    def webhooks(self, url: str) -> None:
        """Events to a local receiver: deliveries per second against plain POSTs to it, and
        the lag from each event's commit to its arrival."""
        clients = 4
        figures = measure_webhooks(url, clients, self.config.seconds)
        self.on_progress("webhooks")
        undelivered = f"; {figures.undelivered} undelivered" if figures.undelivered else ""
        self._record(
            "webhooks",
            clients,
            figures.deliveries,
            figures.baseline,
            "report (baseline: plain POSTs to the receiver)",
            None,
            note=f"p50/p99: event commit -> receiver has it{undelivered}",
        )

    def history_scale(self, refill: Refill) -> None:
        agency = make_agency(refill, f"history-{self.run_id}", subteams=1, grant=1)
        present = 0
        figures: dict[int, Measurement] = {}
        for size in self.config.history_sizes:
            fill_history(refill, agency, size - present, start=present)
            present = size
            figures[size] = self._history_latency(refill, agency)
            self.on_progress(f"history-scale {size:,}")
        smallest, largest = min(figures), max(figures)
        for size, measurement in figures.items():
            ratio = round(measurement.percentile(50) / figures[smallest].percentile(50), 3)
            self.results.append(
                Result(
                    "history-scale",
                    None,
                    {**measurement.summary(), "transfers": size},
                    None,
                    ratio,
                    f"{largest:,} within 2x of {smallest:,}",
                    (ratio <= 2.0) if size == largest else None,
                    note="GET /v1/wallet + first page of /v1/transactions; ratio = p50 / p50 at "
                    f"{smallest:,}",
                )
            )

    def _history_latency(self, refill: Refill, agency: BenchAgency) -> Measurement:
        def op(n: int, i: int) -> None:
            services.get_wallet(refill.db, refill.policy, agency_id=agency.agency_id)
            page = services.list_transfers(refill.db, agency_id=agency.agency_id, limit=50)
            if len(page.data) != 50:
                raise RuntimeError("the history scenario lost its ledger")

        return run_clients(op, 1, max(self.config.seconds / 2, 0.5))
