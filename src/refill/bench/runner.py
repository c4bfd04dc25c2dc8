"""`refill bench`: Refill's hot paths measured against the database's own limit.

Every scenario runs Refill and its baseline in the same run, interleaved in alternating
rounds on the same database, driver and number of clients, and reports the ratio. Load
loops are bounded by time and count, and talk only to this machine.
"""

from __future__ import annotations

import json
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

from refill import ledger, services
from refill.bench.baseline import BaselineInsufficient, BaselineSQL
from refill.bootstrap import Refill, build
from refill.config import Settings
from refill.db.database import Tx, create_db_engine
from refill.db.migrate import upgrade
from refill.ids import system_account_id, wallet_id_for
from refill.reload import SettingsChange
from refill.reload.policy import MAX_DAILY_LIMIT

MAX_OPS_PER_CLIENT = 2_000_000  # a bound besides time, so no loop can run away
ROUNDS = 4  # alternating Refill / baseline rounds per measurement
MAX_LATENCY_SAMPLES = 500


@dataclass
class BenchConfig:
    database_url: str | None = None
    seconds: float = 5.0
    clients: list[int] = field(default_factory=lambda: [1, 4, 16])
    history_sizes: list[int] = field(default_factory=lambda: [10_000, 100_000, 1_000_000])
    http: bool = True


@dataclass
class Measurement:
    ops: int
    seconds: float
    latencies_ms: list[float]
    errors: int = 0

    @property
    def throughput(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
        return ordered[index]

    def summary(self) -> dict[str, float]:
        return {
            "ops": self.ops,
            "seconds": round(self.seconds, 3),
            "ops_per_s": round(self.throughput, 1),
            "p50_ms": round(self.percentile(50), 3),
            "p99_ms": round(self.percentile(99), 3),
            "errors": self.errors,
        }


@dataclass
class Result:
    scenario: str
    clients: int | None
    refill: dict[str, float]
    baseline: dict[str, float] | None
    ratio: float | None
    target: str
    met: bool | None
    note: str = ""


def merge(parts: list[Measurement]) -> Measurement:
    return Measurement(
        ops=sum(p.ops for p in parts),
        seconds=sum(p.seconds for p in parts),
        latencies_ms=[x for p in parts for x in p.latencies_ms],
        errors=sum(p.errors for p in parts),
    )


def run_clients(op: Callable[[int, int], None], clients: int, seconds: float) -> Measurement:
    """Run ``op(client, i)`` on ``clients`` threads for ``seconds``; count and time each."""
    stop_at = time.perf_counter() + seconds
    counts = [0] * clients
    errors = [0] * clients
    samples: list[list[float]] = [[] for _ in range(clients)]

    def loop(n: int) -> None:
        for i in range(MAX_OPS_PER_CLIENT):
            start = time.perf_counter()
            if start >= stop_at:
                return
            try:
                op(n, i)
            except Exception:
                errors[n] += 1
                continue
            samples[n].append((time.perf_counter() - start) * 1000)
            counts[n] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return Measurement(sum(counts), elapsed, [x for s in samples for x in s], sum(errors))


def _shifted(op: Callable[[int, int], None], offset: int, n: int, i: int) -> None:
    """Each round continues the numbering, so references stay unique across rounds."""
    op(n, offset + i)


def interleaved(
    refill_op: Callable[[int, int], None],
    baseline_op: Callable[[int, int], None],
    clients: int,
    seconds: float,
    tick: Callable[[], None],
) -> tuple[Measurement, Measurement]:
    """Alternate short rounds of each so drift (caches, WAL, autovacuum) hits both alike."""
    mine: list[Measurement] = []
    theirs: list[Measurement] = []
    per_round = seconds / ROUNDS
    offset = 0
    for _ in range(ROUNDS):
        mine.append(run_clients(partial(_shifted, refill_op, offset), clients, per_round))
        theirs.append(run_clients(partial(_shifted, baseline_op, offset), clients, per_round))
        offset += MAX_OPS_PER_CLIENT
        tick()
    return merge(mine), merge(theirs)


class RawPool:
    """Baseline connections: checked out of the same engine pool as Refill's for every
    transaction, as a server shares its pool among request threads. (``dedicated=True``
    keeps one connection per client instead: the floor without any pool.)"""

    def __init__(self, refill: Refill, *, dedicated: bool = False) -> None:
        self._engine = refill.db.engine
        self._dedicated = dedicated
        self._conns: dict[int, Any] = {}
        self._lock = threading.Lock()

    @contextmanager
    def connection(self, client: int) -> Iterator[Any]:
        if not self._dedicated:
            pooled = self._engine.raw_connection()
            try:
                yield pooled
            finally:
                pooled.close()
            return
        with self._lock:
            if client not in self._conns:
                self._conns[client] = self._engine.raw_connection()
        yield self._conns[client]

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


@dataclass
class BenchAgency:
    agency_id: str
    subteams: list[str]

    @property
    def wallet_id(self) -> str:
        return wallet_id_for(self.agency_id)


def make_agency(
    refill: Refill,
    name: str,
    *,
    subteams: int,
    grant: int,
    auto_reload: tuple[int, int] | None = None,
) -> BenchAgency:
    db = refill.db
    agency, _ = services.create_agency(db, name=name)
    subteam_ids = [
        services.create_subteam(db, agency_id=agency.id, name=f"line {i}").id
        for i in range(subteams)
    ]

    services.grant_credits(db, agency_id=agency.id, amount=grant, reference="bench-grant")
    if auto_reload is not None:
        threshold, amount = auto_reload
        card, _ = services.save_payment_method(
            db, refill.gateway, agency_id=agency.id, token="pm_card_visa", actor="bench"
        )
        services.update_auto_reload(
            db,
            refill.gateway,
            refill.policy,
            agency_id=agency.id,
            currency="USD",
            actor="bench",
            change=SettingsChange(
                enabled=True,
                threshold=threshold,
                reload_amount=amount,
                payment_method_id=card.id,
                daily_limit=MAX_DAILY_LIMIT,
            ),
        )
    return BenchAgency(agency.id, subteam_ids)


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
            assert refill.worker is not None
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
                self.reload_latency(refill)
                if self.config.http:
                    self.http_usage(refill, url)
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
        per_usage = ROUNDS * len(config.clients) * 2
        return per_usage + ROUNDS + 1 + (ROUNDS if config.http else 0) + len(config.history_sizes)

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

        def refill_op(n: int, i: int) -> None:
            agency = agencies[(n * 7919 + i) % len(agencies)]
            services.record_usage(
                refill.db,
                refill.policy,
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

        assert refill.worker is not None
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
                        refill.policy,
                        agency_id=agency.agency_id,
                        subteam_id=agency.subteams[0],
                        amount=balance - 20_010_000,
                        reference=f"lat-fill-{i}",
                    )
                started = time.perf_counter()
                services.record_usage(
                    refill.db,
                    refill.policy,
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

    def http_usage(self, refill: Refill, url: str) -> None:
        from refill.bench.http_load import measure_http_usage

        agency_key = services.create_agency(refill.db, name=f"http-{self.run_id}")
        agency, key = agency_key
        subteam = services.create_subteam(refill.db, agency_id=agency.id, name="line").id

        services.grant_credits(
            refill.db, agency_id=agency.id, amount=10**15, reference="bench-grant"
        )
        clients = max(self.config.clients)
        mine, theirs = measure_http_usage(
            url,
            api_key=key.secret,
            agency_id=agency.id,
            subteam_id=subteam,
            seconds=self.config.seconds,
            clients=clients,
            rounds=ROUNDS,
            tick=self._tick("http-usage"),
        )
        self._record(
            "http-usage",
            clients,
            mine,
            theirs,
            ">= 0.6 of bare route",
            0.6,
            note="separate load process, loopback, keep-alive",
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
            assert len(page.data) == 50

        return run_clients(op, 1, max(self.config.seconds / 2, 0.5))


def fill_history(refill: Refill, agency: BenchAgency, count: int, *, start: int) -> None:
    """Append ``count`` one-micro usage transfers (and fund them) straight in SQL.

    Set-based inserts keep a 1M-row ledger cheap to build; the wallet's balance and the
    ledger still agree (a grant of the same total comes first).
    """
    if count <= 0:
        return
    wallet = agency.wallet_id
    revenue = system_account_id("usage_revenue", "USD")

    def work(tx: Tx) -> None:
        now = tx.now
        ledger.credit_wallet(
            tx,
            agency_id=agency.agency_id,
            source=ledger.SystemAccount.GRANTED_CREDITS,
            amount=count,
            kind=ledger.TransferKind.GRANT,
            reference=f"history-{start}",
        )
        series = (
            "WITH RECURSIVE n(x) AS (SELECT :first UNION ALL SELECT x + 1 FROM n "
            "WHERE x < :last) SELECT x FROM n"
            if tx.dialect == "sqlite"
            else "SELECT generate_series(CAST(:first AS BIGINT), CAST(:last AS BIGINT)) AS x"
        )
        tx.conn.execute(
            text(
                "INSERT INTO transfers (agency_id, debit_account_id, credit_account_id, amount, "
                "kind, reference, subteam_id, wallet_balance_after, created_at) "
                f"SELECT :agency, :wallet, :revenue, 1, 'usage', 'h-' || CAST(x AS TEXT), "
                ":subteam, "
                f"1, :now FROM ({series}) AS s"
            ),
            {
                "agency": agency.agency_id,
                "wallet": wallet,
                "revenue": revenue,
                "subteam": agency.subteams[0],
                "now": now.replace(tzinfo=None) if tx.dialect == "sqlite" else now,
                "first": start,
                "last": start + count - 1,
            },
        )
        tx.conn.execute(
            text("UPDATE accounts SET balance = balance - :n WHERE id = :wallet"),
            {"n": count, "wallet": wallet},
        )

    refill.db.write(work)


def describe(report: dict[str, Any]) -> list[list[str]]:
    """Rows for the summary table."""
    rows = []
    for r in report["results"]:
        mine = r["refill"]
        base = r["baseline"]
        if r["scenario"] == "history-scale":
            figure = f"{mine['transfers']:,} transfers: p50 {mine['p50_ms']:.2f} ms"
            baseline = "-"
        elif r["scenario"] == "reload-latency":
            figure = f"p50 {mine['p50_ms']:.1f} ms, p99 {mine['p99_ms']:.1f} ms"
            baseline = "-"
        elif r["scenario"] == "authorize":
            figure = (
                f"{mine['ops_per_s']:,.0f}/s, p50 {mine['p50_ms']:.3f}, p99 {mine['p99_ms']:.3f} ms"
            )
            baseline = f"{base['ops_per_s']:,.0f}/s, p99 {base['p99_ms']:.3f} ms"
        else:
            figure = f"{mine['ops_per_s']:,.0f}/s"
            baseline = f"{base['ops_per_s']:,.0f}/s" if base else "-"
        met = {True: "yes", False: "NO", None: ""}[r["met"]]
        rows.append(
            [
                r["scenario"],
                "" if r["clients"] is None else str(r["clients"]),
                figure,
                baseline,
                "" if r["ratio"] is None else f"{r['ratio']:.2f}",
                r["target"],
                met,
            ]
        )
    return rows


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
