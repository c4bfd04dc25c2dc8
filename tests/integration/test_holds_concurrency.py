"""Holds under concurrency, proven on real databases: many clients (threads on SQLite,
several processes of threads on PostgreSQL) authorize calls with holds on a few wallets,
then settle them (sometimes for more than the hold, sometimes twice with the same
reference), release them or abandon them to expire, while auto-reloads run, a subteam is
paused and resumed, and sweepers expire what was abandoned.

A monitor samples, on its own engine, in one statement (one snapshot on both engines):
every wallet's held credits equal its active holds and never exceed its balance, every
subteam's held credits equal its active holds, and no limited subteam's usage in its
period plus what its live calls hold passes its limit.

Afterwards: the ledger balances (``check_ledger``, which also compares held credits with
the active holds); every hold placed is in the database, in the end state its client
drove it to; each settled hold links the one transfer its usage created and no reference
has two transfers; every recorded usage is a settle a client was told succeeded; each
limited subteam's usage per agency-local day (and month) stays within its limit; every
successful charge is credited exactly once. Bounded in count; no wall-clock assertions.

Clients settle above the hold on every subteam: ``settling.settle`` never refuses an active
hold, and debits at most what the credits and the subteam's limits leave.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import BigInteger, String, func, literal, select, union_all
from sqlalchemy.sql import Select

from refill import ledger_check, services
from refill.bootstrap import Refill, build
from refill.config import Settings
from refill.db.database import Database, Tx
from refill.db.schema import accounts, holds, reload_attempts, subteams, transfers
from refill.gateway.sandbox import SandboxGateway
from refill.reload.policy import local_day, local_month
from refill.reload.settings import SettingsChange
from refill.services.agencies import AgencyChange, update_agency
from refill.services.holds import expire_due_holds
from refill.services.subteams import SubteamChange, update_subteam
from tests.support import holds_load
from tests.support.doubles import RecordingGateway
from tests.support.holds_load import ClientLog, Placed, ProcessResult, Target

logger = logging.getLogger(__name__)

THRESHOLD = 10_000_000
RELOAD = 15_000_000
START = 12_000_000
DAILY_LIMIT = 8_000_000
MONTHLY_LIMIT = 9_000_000

# (agency, time zone, auto-reloads a day, [(subteam, daily limit, monthly limit)]).
# "support" is paused midway; West may reload twice a day only, so its wallet runs dry and
# its calls compete for the last credits (refused, or settled partly uncovered).
AGENCIES: list[tuple[str, str, int, list[tuple[str, int | None, int | None]]]] = [
    (
        "North",
        "UTC",
        50,
        [("calls", None, None), ("sales", DAILY_LIMIT, None), ("support", None, None)],
    ),
    ("East", "Asia/Kolkata", 50, [("ops", None, MONTHLY_LIMIT), ("dev", None, None)]),
    ("West", "America/Los_Angeles", 2, [("web", None, None), ("app", None, None)]),
]
PAUSED = "support"

SQLITE_CLIENTS, SQLITE_ITERATIONS = 8, 80
PG_PROCESSES, PG_CLIENTS, PG_ITERATIONS = 3, 2, 60


@dataclass(frozen=True, slots=True)
class Team:
    id: str
    agency_id: str
    zone: ZoneInfo
    daily_limit: int | None
    monthly_limit: int | None

    @property
    def target(self) -> Target:
        limited = self.daily_limit is not None or self.monthly_limit is not None
        return Target(self.agency_id, self.id, limited)


@dataclass(frozen=True, slots=True)
class World:
    zones: dict[str, ZoneInfo]  # agency id -> its time zone
    teams: list[Team]
    paused: Team

    @property
    def targets(self) -> list[Target]:
        return [t.target for t in self.teams]

    @property
    def limited(self) -> list[Team]:
        return [t for t in self.teams if t.target.limited]


def build_world(refill: Refill) -> World:
    db = refill.db
    zones: dict[str, ZoneInfo] = {}
    teams: list[Team] = []
    paused: Team | None = None
    for name, zone, reloads_a_day, specs in AGENCIES:
        agency, _ = services.create_agency(db, name=f"{name} Agency")
        update_agency(db, agency_id=agency.id, change=AgencyChange(timezone=zone), actor="test")
        zones[agency.id] = ZoneInfo(zone)
        for sub_name, daily, monthly in specs:
            sub = services.create_subteam(db, agency_id=agency.id, name=sub_name)
            if daily is not None or monthly is not None:
                update_subteam(
                    db,
                    agency_id=agency.id,
                    subteam_id=sub.id,
                    change=SubteamChange(daily_spend_limit=daily, monthly_spend_limit=monthly),
                    actor="test",
                )
            teams.append(Team(sub.id, agency.id, ZoneInfo(zone), daily, monthly))
            if sub_name == PAUSED:
                paused = teams[-1]
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
                enabled=True,
                threshold=THRESHOLD,
                reload_amount=RELOAD,
                payment_method_id=card.id,
                daily_limit=reloads_a_day,
            ),
            actor="test",
        )
    assert paused is not None
    return World(zones, teams, paused)


# --- the monitor ---------------------------------------------------------------------------


def period_starts(world: World, now: datetime) -> dict[str, tuple[datetime, datetime]]:
    """Each limited subteam's agency-local day and month starts at ``now``."""
    return {t.id: (local_day(now, t.zone)[0], local_month(now, t.zone)[0]) for t in world.limited}


def _active(column: Any, value: Any) -> Any:
    return (
        select(func.coalesce(func.sum(holds.c.amount), 0))
        .where(column == value, holds.c.status == "active")
        .scalar_subquery()
    )


def sample_statement(world: World, starts: dict[str, tuple[datetime, datetime]]) -> Any:
    """One statement (one snapshot): (what, id, a, b, c) rows.

    wallet: balance, held, active holds; subteam: 0, held, active holds; daily/monthly:
    usage since the period's start, active holds, the limit."""

    def kind(name: str) -> Any:
        return literal(name, String)

    def number(value: int) -> Any:
        return literal(value, BigInteger)

    parts: list[Select[Any]] = [
        select(
            kind("wallet"),
            accounts.c.id,
            accounts.c.balance,
            accounts.c.held,
            _active(holds.c.wallet_id, accounts.c.id),
        ).where(accounts.c.kind == "wallet"),
        select(
            kind("subteam"),
            subteams.c.id,
            number(0),
            subteams.c.held,
            _active(holds.c.subteam_id, subteams.c.id),
        ),
    ]
    for team in world.limited:
        day_start, month_start = starts[team.id]
        for period, since, limit in (
            ("daily", day_start, team.daily_limit),
            ("monthly", month_start, team.monthly_limit),
        ):
            if limit is None:
                continue
            spent = (
                select(func.coalesce(func.sum(transfers.c.amount), 0))
                .where(
                    transfers.c.agency_id == team.agency_id,
                    transfers.c.kind == "usage",
                    transfers.c.subteam_id == team.id,
                    transfers.c.created_at >= since,
                )
                .scalar_subquery()
            )
            parts.append(
                select(
                    kind(period),
                    literal(team.id, String),
                    spent,
                    _active(holds.c.subteam_id, literal(team.id, String)),
                    number(limit),
                )
            )
    return union_all(*parts)


def sample_violations(rows: list[Any], *, check_limits: bool) -> list[str]:
    found = []
    for what, row_id, a, b, c in rows:
        a, b, c = int(a), int(b), int(c)
        if what == "wallet":
            balance, held, active = a, b, c
            if held > balance or active > balance or held != active:
                found.append(f"wallet {row_id}: balance {balance} held {held} active {active}")
        elif what == "subteam":
            if b != c:
                found.append(f"subteam {row_id}: held {b} active holds {c}")
        elif check_limits and a + b > c:
            found.append(f"{what} limit of {row_id}: spent {a} + held {b} > {c}")
    return found


class HoldMonitor:
    """Samples every wallet and subteam, on an engine of its own, while the load runs."""

    def __init__(self, url: str, world: World) -> None:
        self.db = Database(url, pool_size=1)
        self.world = world
        self.samples = 0
        self.violations: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        before = period_starts(self.world, datetime.now(UTC))
        rows = self.db.read(
            lambda tx: list(tx.conn.execute(sample_statement(self.world, before)).all())
        )
        # A period that turned while sampling would count two days: skip its limits.
        same_period = period_starts(self.world, datetime.now(UTC)) == before
        self.violations += sample_violations(rows, check_limits=same_period)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            try:
                self._sample()
            except Exception as exc:
                self.violations.append(f"sampling failed: {exc!r}")

    def __enter__(self) -> HoldMonitor:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()  # and once more at rest
        self.db.dispose()


# --- the sweeper and the owner who pauses a subteam ------------------------------------------


class Sweeper:
    """The worker's expiry sweep, on a thread of its own (the pollers sweep too)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.expired = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.expired += expire_due_holds(self.db)
            except Exception as exc:
                self.errors.append(repr(exc))

    def __enter__(self) -> Sweeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Pauser:
    """The owner pauses one subteam once holds for a tenth of the attempts are placed, and
    resumes it at a quarter: midway through the holds the load places, since many attempts
    are refused. While paused, a new call is refused, and the call placed before settles."""

    refill: Refill
    team: Team
    attempts: int
    done: threading.Event
    log: ClientLog = field(default_factory=ClientLog)
    prepared: Placed | None = None
    refused_while_paused: str | None = None
    holds_at_pause: int = 0
    holds_at_resume: int = 0
    team_holds_at_resume: int = 0
    _thread: threading.Thread | None = None

    def prepare(self) -> None:
        self.prepared = holds_load.place(
            self.refill.db,
            self.log,
            self.team.target,
            500_000,
            holds_load.SETTLE,
            holds_load.LONG_HOLD_SECONDS,
        )

    def _holds(self, subteam_id: str | None = None) -> int:
        stmt = select(func.count()).select_from(holds)
        if subteam_id is not None:
            stmt = stmt.where(holds.c.subteam_id == subteam_id)
        return int(self.refill.db.read(lambda tx: tx.conn.execute(stmt).scalar_one()))

    def _wait_for(self, count: int) -> int:
        placed = self._holds()
        while placed < count and not self.done.wait(0.02):
            placed = self._holds()
        return placed

    def _pause(self, paused: bool) -> None:
        update_subteam(
            self.refill.db,
            agency_id=self.team.agency_id,
            subteam_id=self.team.id,
            change=SubteamChange(paused=paused),
            actor="owner",
        )

    def _run(self) -> None:
        try:
            self.holds_at_pause = self._wait_for(self.attempts // 10)
            self._pause(True)
            refused = services.authorize_call(
                self.refill.db,
                agency_id=self.team.agency_id,
                subteam_id=self.team.id,
                expected_cost=100_000,
                hold=True,
            )
            self.refused_while_paused = refused.reason if not refused.allowed else "allowed"
            if refused.hold is not None:
                self.log.placed.append(
                    Placed(refused.hold.id, self.team.agency_id, self.team.id, 100_000, "paused")
                )
            assert self.prepared is not None
            holds_load.settle(
                self.refill.db,
                self.log,
                self.prepared,
                amount=self.prepared.amount,
                reference="owner-settles-while-paused",
            )
            self.holds_at_resume = self._wait_for(self.attempts // 4)
            self._pause(False)
            self.team_holds_at_resume = self._holds(self.team.id)
        except Exception as exc:
            self.log.anomalies.append(f"pauser: {exc!r}")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def join(self) -> None:
        assert self._thread is not None
        self._thread.join(120)
        assert not self._thread.is_alive()


# --- afterwards ------------------------------------------------------------------------------


def count_active(db: Database) -> int:
    return int(
        db.read(
            lambda tx: tx.conn.execute(
                select(func.count()).select_from(holds).where(holds.c.status == "active")
            ).scalar_one()
        )
    )


def end_abandoned_holds(db: Database) -> int:
    """Sweep until every abandoned hold (a second long) has expired; bounded."""
    for _ in range(100):
        if count_active(db) == 0:
            break
        expire_due_holds(db)
        time.sleep(0.1)
    return count_active(db)


def drain(refill: Refill) -> None:
    """Finish whatever the load left pending, as the poller would."""
    refill.processor.pending_grace = timedelta(0)
    while refill.processor.run_due_work():
        pass


@dataclass
class Books:
    check: ledger_check.LedgerCheck
    wallets: dict[str, tuple[int, int]]  # agency id -> (balance, held)
    subteam_held: dict[str, int]
    holds: dict[str, Any]  # id -> row
    transfers: dict[int, Any]  # id -> row
    duplicates: list[Any]
    attempts: list[Any]


def read_books(db: Database) -> Books:
    def work(tx: Tx) -> Books:
        c = tx.conn
        return Books(
            ledger_check.check_ledger(tx),
            {
                row.agency_id: (int(row.balance), int(row.held))
                for row in c.execute(
                    select(accounts.c.agency_id, accounts.c.balance, accounts.c.held).where(
                        accounts.c.kind == "wallet"
                    )
                )
            },
            {row.id: int(row.held) for row in c.execute(select(subteams.c.id, subteams.c.held))},
            {row.id: row for row in c.execute(select(holds))},
            {row.id: row for row in c.execute(select(transfers))},
            list(
                c.execute(
                    select(transfers.c.agency_id, transfers.c.kind, transfers.c.reference)
                    .group_by(transfers.c.agency_id, transfers.c.kind, transfers.c.reference)
                    .having(func.count() > 1)
                )
            ),
            list(c.execute(select(reload_attempts))),
        )

    return db.read(work)


@dataclass
class Tally:
    placed: int
    settled: int
    released: int
    expired: int
    late_settled: int
    late_as_usage: int
    uncovered: int
    reloads: int


def assert_holds_and_books(world: World, books: Books, log: ClientLog) -> Tally:
    assert books.check.balanced, books.check
    assert books.duplicates == []  # no reference has two transfers

    # No hold lost, none made up: the database holds exactly what the clients were given.
    placed = {p.hold_id: p for p in log.placed}
    assert len(placed) == len(log.placed)
    assert set(books.holds) == set(placed)
    for hold_id, p in placed.items():
        row = books.holds[hold_id]
        assert (row.agency_id, row.subteam_id, int(row.amount)) == (
            p.agency_id,
            p.subteam_id,
            p.amount,
        )

    # Every hold ended, in the end its client drove it to; held credits are all given back.
    statuses = Counter(row.status for row in books.holds.values())
    assert statuses["active"] == 0
    assert all(held == 0 for _, held in books.wallets.values())
    assert all(held == 0 for held in books.subteam_held.values())
    expected = {holds_load.SETTLE: {"settled"}, holds_load.RELEASE: {"released"}}
    expected[holds_load.ABANDON] = {"expired"}
    expected[holds_load.LATE] = {"settled", "expired"}
    for hold_id, p in placed.items():
        assert books.holds[hold_id].status in expected[p.intent], (p, books.holds[hold_id])
    assert {h for h, p in placed.items() if p.intent == holds_load.RELEASE} == set(log.released)

    # A settled hold links the one usage transfer its settle created; no other hold links.
    settles = {s.hold_id: s for s in log.settled}
    assert len(settles) == len(log.settled)  # one successful settle per hold
    linked: set[int] = set()
    for hold_id, row in books.holds.items():
        if row.status != "settled":
            assert row.transfer_id is None, row
            continue
        assert row.transfer_id not in linked  # no transfer settles two holds
        linked.add(row.transfer_id)
        s = settles[hold_id]
        transfer = books.transfers[row.transfer_id]
        assert row.transfer_id == s.transfer_id
        assert (transfer.kind, transfer.reference, transfer.subteam_id) == (
            "usage",
            s.reference,
            s.subteam_id,
        )
        assert transfer.amount + (transfer.uncovered or 0) == s.amount
    # A late usage of an expired hold is plain usage, linked to no hold.
    late_as_usage = [s for s in log.settled if s.late and s.transfer_id not in linked]
    for s in late_as_usage:
        assert books.holds[s.hold_id].status == "expired"
        assert books.transfers[s.transfer_id].uncovered is None
    # Successful settles are exactly the settled holds, and with the late plain usage they
    # are every usage the ledger holds.
    assert statuses["settled"] == len(log.settled) - len(late_as_usage)
    usage = {i: t for i, t in books.transfers.items() if t.kind == "usage"}
    assert set(usage) == {s.transfer_id for s in log.settled}
    refused_refs = {(agency, ref) for agency, ref, _ in log.late_refused}
    assert not refused_refs & {(t.agency_id, t.reference) for t in usage.values()}

    # Each wallet equals its transfers: the start, its reloads, less its usage.
    reload_count = Counter[str]()
    for agency_id, (balance, _) in books.wallets.items():
        moved = 0
        for t in books.transfers.values():
            if t.agency_id != agency_id:
                continue
            if t.kind == "usage":
                moved -= t.amount
            else:
                assert t.kind in ("grant", "auto_reload"), t
                moved += t.amount
                reload_count[agency_id] += t.kind == "auto_reload"
        assert balance == moved

    # Limits: each limited subteam's usage per agency-local day and month, from the ledger.
    for team in world.limited:
        days: defaultdict[str, int] = defaultdict(int)
        months: defaultdict[str, int] = defaultdict(int)
        for t in usage.values():
            if t.subteam_id == team.id:
                local = t.created_at.astimezone(team.zone)
                days[local.strftime("%Y-%m-%d")] += t.amount
                months[local.strftime("%Y-%m")] += t.amount
        if team.daily_limit is not None:
            assert max(days.values(), default=0) <= team.daily_limit, (team, dict(days))
        if team.monthly_limit is not None:
            assert max(months.values(), default=0) <= team.monthly_limit, (team, dict(months))

    return Tally(
        placed=len(placed),
        settled=statuses["settled"],
        released=statuses["released"],
        expired=statuses["expired"],
        late_settled=sum(s.late for s in log.settled) - len(late_as_usage),
        late_as_usage=len(late_as_usage),
        uncovered=sum(t.uncovered is not None for t in usage.values()),
        reloads=sum(reload_count.values()),
    )


def assert_reloads_credited_once(world: World, books: Books, gateway_keys: set[str]) -> None:
    """No reload left open; every successful charge credited exactly once, and only those;
    each agency reloaded while the calls ran."""
    assert [a.id for a in books.attempts if a.status in ("pending", "charging")] == []
    succeeded = {a.id: a for a in books.attempts if a.status == "succeeded"}
    credited = {t.reference: t for t in books.transfers.values() if t.kind == "auto_reload"}
    assert set(credited) == set(succeeded)
    assert all(t.amount == RELOAD for t in credited.values())
    assert {a.idempotency_key for a in succeeded.values()} == gateway_keys
    for agency_id in world.zones:
        assert any(a.agency_id == agency_id for a in succeeded.values()), agency_id


# --- the proof -------------------------------------------------------------------------------


@pytest.fixture
def live_refill(db_url: str) -> Iterator[Refill]:
    """The service as `refill serve` runs it: reloads on background threads plus a poller
    (which also expires holds)."""
    gateway = RecordingGateway(SandboxGateway())
    service = build(Settings(database_url=db_url, poll_interval_seconds=0.1), gateway=gateway)
    assert service.worker is not None
    service.worker.start()
    yield service
    service.close()


def run_processes(url: str, targets: list[Target]) -> tuple[ClientLog, set[str]]:
    """PG_PROCESSES spawned processes, each with its own engine and client threads."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=holds_load.process_main,
            args=(url, targets, f"p{n}", PG_CLIENTS, PG_ITERATIONS, n + 1, out),
        )
        for n in range(PG_PROCESSES)
    ]
    for p in procs:
        p.start()
    results: list[ProcessResult] = [out.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    log = ClientLog()
    keys: set[str] = set()
    for result in results:
        log.merge(result.log)
        keys.update(result.succeeded_keys)
    return log, keys


def test_concurrent_holds_settles_releases_and_expiries_keep_books_held_credits_and_limits(
    db_url: str, live_refill: Refill, record_property: Any
) -> None:
    started = time.monotonic()
    refill = live_refill
    world = build_world(refill)
    on_postgres = refill.db.dialect == "postgresql"
    attempts = (
        PG_PROCESSES * PG_CLIENTS * PG_ITERATIONS
        if on_postgres
        else SQLITE_CLIENTS * SQLITE_ITERATIONS
    )
    done = threading.Event()
    pauser = Pauser(refill, world.paused, attempts, done)
    pauser.prepare()
    with HoldMonitor(db_url, world) as monitor, Sweeper(refill.db) as sweeper:
        pauser.start()
        try:
            if on_postgres:
                log, keys = run_processes(db_url, world.targets)
            else:
                log = holds_load.run_clients(
                    refill.db,
                    world.targets,
                    name="t",
                    clients=SQLITE_CLIENTS,
                    iterations=SQLITE_ITERATIONS,
                    seed=1,
                )
                keys = set()
        finally:
            done.set()
            pauser.join()
        assert end_abandoned_holds(refill.db) == 0
    assert refill.worker is not None
    refill.worker.stop()
    drain(refill)

    log.merge(pauser.log)
    assert log.anomalies == []
    assert sweeper.errors == []
    # The monitor saw held credits equal to the active holds, within the balance, and no
    # limit passed, at every sample.
    assert monitor.violations == []
    assert monitor.samples > 0
    # The owner's pause refused new calls and still let the live one settle.
    assert pauser.refused_while_paused == "subteam_paused"
    assert pauser.prepared is not None
    assert pauser.prepared.hold_id in {s.hold_id for s in pauser.log.settled}
    assert log.refused["subteam_paused"] > 0

    books = read_books(refill.db)
    tally = assert_holds_and_books(world, books, log)
    # ... and the load went on after the resume, the resumed subteam taking calls again.
    resumed = sum(row.subteam_id == world.paused.id for row in books.holds.values())
    assert resumed > pauser.team_holds_at_resume
    gateway = refill.gateway
    assert isinstance(gateway, RecordingGateway)
    assert_reloads_credited_once(world, books, keys | gateway.succeeded_keys())

    # The load did what it is meant to: limits were reached, repeats answered, holds
    # settled above their amount, released and expired.
    assert log.refused["subteam_limit_reached"] > 0
    assert log.repeats > 0
    assert log.above_hold > 0
    assert tally.released > 0
    assert tally.expired > 0
    figures: dict[str, Any] = {
        **asdict(tally),
        "refused": dict(log.refused),
        "repeats": log.repeats,
        "above_hold": log.above_hold,
        "second_settles_refused": log.second_settles_refused,
        "late_refused": dict(Counter(code for _, _, code in log.late_refused)),
        "samples": monitor.samples,
        "swept_by_sweeper": sweeper.expired,
        "holds_at_pause": pauser.holds_at_pause,
        "holds_at_resume": pauser.holds_at_resume,
        "seconds": round(time.monotonic() - started, 1),
    }
    for name, value in figures.items():
        record_property(name, value)
    logger.info("holds under load on %s: %s", refill.db.dialect, figures)


def test_settling_above_the_hold_never_takes_a_limited_subteam_past_its_daily_limit(
    refill: Refill,
) -> None:
    db = refill.db
    agency, _ = services.create_agency(db, name="Limited Agency")
    sub = services.create_subteam(db, agency_id=agency.id, name="limited")
    services.grant_credits(db, agency_id=agency.id, amount=100_000_000, reference="start")
    update_subteam(
        db,
        agency_id=agency.id,
        subteam_id=sub.id,
        change=SubteamChange(daily_spend_limit=10_000_000),
        actor="test",
    )
    auth = services.authorize_call(
        db, agency_id=agency.id, subteam_id=sub.id, expected_cost=10_000_000, hold=True
    )
    assert auth.allowed
    assert auth.hold is not None
    settled, _ = services.record_usage(
        db,
        agency_id=agency.id,
        subteam_id=sub.id,
        amount=25_000_000,
        reference="call-1",
        hold_id=auth.hold.id,
    )
    assert (settled.amount, settled.uncovered) == (10_000_000, 15_000_000)
    spent = db.read(
        lambda tx: tx.conn.execute(
            select(func.coalesce(func.sum(transfers.c.amount), 0)).where(
                transfers.c.subteam_id == sub.id, transfers.c.kind == "usage"
            )
        ).scalar_one()
    )
    assert spent <= 10_000_000
