"""Engine set-up and the unit of work.

``Database.write(work)`` runs ``work(tx)`` in one transaction and commits; services never
commit. When the database refuses the transaction because of its own locking (SQLite's
``database is locked``, PostgreSQL's serialization failures and deadlocks, a dropped
connection), the whole unit of work is run again from the start, so callers never see
those errors. What a transaction ``announce``-d (a new reload attempt, say) is handed to
the ``AfterCommit`` listeners only once the commit is durable; the database layer knows
nothing of what the announcements mean.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Dialect, Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError

from refill.clock import Clock, SystemClock

log = logging.getLogger(__name__)

T = TypeVar("T")
TxT = TypeVar("TxT", "Tx", "RawTx")

MAX_ATTEMPTS = 12
_PG_RETRYABLE = {"40001", "40P01", "55P03"}  # serialization, deadlock, lock not available


def driver_error(dialect: Dialect, statement: str, params: Any, exc: Exception) -> Exception:
    """A driver exception as SQLAlchemy would have raised it (IntegrityError, ...), so raw
    cursor work is retried and handled exactly like Core statements."""
    return DBAPIError.instance(statement, params, exc, dialect.loaded_dbapi.Error, dialect=dialect)


def _execute_on(
    dialect: Dialect, cursor: Any, statement: str, params: tuple[Any, ...]
) -> tuple[Any, ...] | None:
    try:
        cursor.execute(statement, params)
        row: tuple[Any, ...] | None = cursor.fetchone() if cursor.description else None
        return row
    except dialect.loaded_dbapi.Error as exc:
        raise driver_error(dialect, statement, params, exc) from exc
    finally:
        cursor.close()


def _insert_on(
    dialect: Dialect, cursor: Any, statement: str, params: tuple[Any, ...]
) -> int | None:
    try:
        cursor.execute(statement, params)
        if dialect.name == "sqlite":  # no RETURNING: SQLite's own count and rowid are free
            return int(cursor.lastrowid) if cursor.rowcount == 1 else None
        row = cursor.fetchone()
        return None if row is None else int(row[0])
    except dialect.loaded_dbapi.Error as exc:
        raise driver_error(dialect, statement, params, exc) from exc
    finally:
        cursor.close()


def inserted_id(template: str) -> dict[str, str]:
    """Prepared SQL for ``SqlTx.insert_raw`` from an ``INSERT ... ON CONFLICT DO NOTHING``
    template: PostgreSQL returns the new row's id; SQLite reports it through the cursor
    (its row count and last rowid), cheaper than a RETURNING clause, whose row it buffers
    and hands back (measured: a share of the usage hot path's gap to the baseline)."""
    return {
        "sqlite": template.format(p="?"),
        "postgresql": template.format(p="%s") + " RETURNING id",
    }


def dialect_insert(tx: Tx) -> Any:
    """``insert`` of this transaction's dialect, which supports ``ON CONFLICT``."""
    return postgresql.insert if tx.dialect == "postgresql" else sqlite.insert


def prepared(template: str) -> dict[str, str]:
    """Prepared SQL for each driver, from a template with ``{p}`` for every parameter."""
    return {"sqlite": template.format(p="?"), "postgresql": template.format(p="%s")}


def bind_time(dialect: str, moment: datetime) -> Any:
    """An aware datetime as raw SQL binds it: SQLite gets the text SQLAlchemy's DateTime
    type writes (and compares correctly as text), PostgreSQL a timestamptz."""
    if dialect == "sqlite":  # "YYYY-MM-DD HH:MM:SS.ffffff" (isoformat: a fifth of strftime)
        if moment.tzinfo is not UTC:  # the clock's own time is UTC already
            moment = moment.astimezone(UTC)
        return moment.replace(tzinfo=None).isoformat(" ", "microseconds")
    return moment


class SqlTx(Protocol):
    """What the hot path needs of a transaction; both Tx and RawTx provide it."""

    now: datetime

    @property
    def dialect(self) -> str: ...

    def execute_raw(self, statement: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None: ...

    def insert_raw(self, statement: str, params: tuple[Any, ...]) -> int | None: ...

    def announce(self, item: object) -> None: ...

    def read_clock(self) -> None: ...


class AfterCommit:
    """Who is told what committed transactions announced, by the announcement's type.

    Given to the ``Database`` at construction; the parts that act on announcements (the
    reload worker) listen once they exist. A listener's failure never undoes the commit:
    whatever it missed, the poller finds later.
    """

    def __init__(self) -> None:
        self._listeners: dict[type, list[Callable[[Any], None]]] = {}

    def listen(self, kind: type[T], listener: Callable[[T], None]) -> None:
        self._listeners.setdefault(kind, []).append(listener)

    def clear(self) -> None:
        self._listeners.clear()

    def __call__(self, announced: list[object]) -> None:
        for item in announced:
            for listener in self._listeners.get(type(item), ()):
                try:
                    listener(item)
                except Exception:
                    log.exception("acting on %r after commit failed", item)


@dataclass
class Tx:
    """One transaction: its connection, its time, and what it announces after commit."""

    conn: Connection
    now: datetime
    announced: list[object] = field(default_factory=list)
    clock: Clock | None = None

    def announce(self, item: object) -> None:
        self.announced.append(item)

    def read_clock(self) -> None:
        """Take the time again, after waiting for a lock (``ledger.lock_wallet``): what
        the transaction records then happens in the order the lock was granted, so an
        agency's day or month never goes back for a transaction that waited."""
        if self.clock is not None:
            self.now = self.clock.now()

    @property
    def dialect(self) -> str:
        return self.conn.dialect.name

    def execute_raw(self, statement: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """Run prepared SQL on this transaction's DBAPI cursor; return the first row.

        For the hot path only: no statement building, driver errors wrapped as SQLAlchemy's.
        """
        return _execute_on(self.conn.dialect, self.conn.connection.cursor(), statement, params)

    def insert_raw(self, statement: str, params: tuple[Any, ...]) -> int | None:
        """Run an ``inserted_id`` statement: the new row's id, None when it conflicted."""
        return _insert_on(self.conn.dialect, self.conn.connection.cursor(), statement, params)


@dataclass
class RawTx:
    """A transaction on a pooled driver connection, without SQLAlchemy's Connection.

    The usage hot path runs here: SQLAlchemy's per-transaction machinery cost more than
    the database's whole transaction (see the benchmark notes in the README).
    """

    dbapi: Any
    sa_dialect: Dialect
    now: datetime
    announced: list[object] = field(default_factory=list)
    clock: Clock | None = None

    def read_clock(self) -> None:
        """As ``Tx.read_clock``."""
        if self.clock is not None:
            self.now = self.clock.now()

    @property
    def dialect(self) -> str:
        return str(self.sa_dialect.name)

    def announce(self, item: object) -> None:
        self.announced.append(item)

    def execute_raw(self, statement: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        return _execute_on(self.sa_dialect, self.dbapi.cursor(), statement, params)

    def insert_raw(self, statement: str, params: tuple[Any, ...]) -> int | None:
        """As ``Tx.insert_raw``."""
        return _insert_on(self.sa_dialect, self.dbapi.cursor(), statement, params)

    def count_raw(self, statement: str, params: tuple[Any, ...]) -> int:
        """Run a statement that returns no rows; how many rows it changed."""
        cursor = self.dbapi.cursor()
        try:
            cursor.execute(statement, params)
            return int(cursor.rowcount)
        except self.sa_dialect.loaded_dbapi.Error as exc:
            raise driver_error(self.sa_dialect, statement, params, exc) from exc
        finally:
            cursor.close()

    def fetch_raw(self, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Like ``execute_raw``, every row (a batch's set-based reads and writes)."""
        cursor = self.dbapi.cursor()
        try:
            cursor.execute(statement, params)
            return list(cursor.fetchall()) if cursor.description else []
        except self.sa_dialect.loaded_dbapi.Error as exc:
            raise driver_error(self.sa_dialect, statement, params, exc) from exc
        finally:
            cursor.close()


def is_retryable(exc: BaseException) -> bool:
    """Errors caused by the database's own concurrency control, safe to run again."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in _PG_RETRYABLE:
        return True
    if isinstance(exc, OperationalError):
        message = str(orig).lower()
        return "database is locked" in message or "database is busy" in message
    return False


def create_db_engine(url: str, *, pool_size: int = 10) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=pool_size * 2,
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size * 2, pool_recycle=1800)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event decide how each transaction starts.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL keeps the file consistent on a crash; a transaction lost to power
        # failure is recovered like any crash: the reload state machine re-reads its state.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front: a deferred transaction that upgrades from
        # read to write can fail with "database is locked" without waiting.
        statement = "BEGIN " + conn.get_execution_options().get("refill_begin", "IMMEDIATE")
        # On the driver connection directly: this runs once per transaction.
        try:
            conn.connection.dbapi_connection.execute(statement)  # type: ignore[union-attr]
        except conn.dialect.loaded_dbapi.Error as exc:
            raise driver_error(conn.dialect, statement, (), exc) from exc


class SqliteWriteGate:
    """Gives this process's rare write transactions (reloads, settings) priority over the
    stream of usage debits on SQLite, which has a single writer.

    Without it a reload can be starved: its BEGIN IMMEDIATE keeps finding the lock taken by
    back-to-back debits, SQLite's busy handler backs off in growing sleeps, and the wallet
    runs dry while the reload waits. Debits only check an Event before they begin (cheap
    when open); a priority writer closes it for the length of its transaction.
    """

    def __init__(self) -> None:
        self._priority = threading.Lock()
        self._open = threading.Event()
        self._open.set()

    @contextmanager
    def priority(self) -> Iterator[None]:
        with self._priority:
            self._open.clear()
            try:
                yield
            finally:
                self._open.set()

    def wait_turn(self) -> None:
        if not self._open.is_set():  # a plain read while open (the usual case)
            self._open.wait()


class Database:
    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        pool_size: int = 10,
        after_commit: AfterCommit | None = None,
    ) -> None:
        self.url = url
        self.engine = create_db_engine(url, pool_size=pool_size)
        self.clock: Clock = clock or SystemClock()
        self.after_commit = after_commit or AfterCommit()
        self._gate = SqliteWriteGate() if self.dialect == "sqlite" else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Tx]:
        gate = self._gate.priority() if write and self._gate else nullcontext()
        with gate, self.engine.connect() as conn:
            if self.dialect == "sqlite" and not write:
                conn = conn.execution_options(refill_begin="DEFERRED")
            with conn.begin():
                yield Tx(conn=conn, now=self.clock.now(), clock=self.clock)

    def _raw_once(self, work: Callable[[RawTx], T], *, write: bool) -> tuple[RawTx, T]:
        """One try of ``work`` on a bare driver connection: explicit BEGIN (SQLite) and
        COMMIT, rolled back on any error. Plain code, not a context manager: on the hot
        path the generator's cost was measurable."""
        dialect = self.engine.dialect
        if write and self._gate is not None:
            self._gate.wait_turn()
        dbapi = self.engine.raw_connection()
        try:
            tx = RawTx(dbapi=dbapi, sa_dialect=dialect, now=self.clock.now(), clock=self.clock)
            if dialect.name == "sqlite":
                _execute_on(dialect, dbapi.cursor(), "BEGIN IMMEDIATE" if write else "BEGIN", ())
            result = work(tx)
            try:
                dbapi.commit()
            except dialect.loaded_dbapi.Error as exc:
                raise driver_error(dialect, "COMMIT", (), exc) from exc
        except BaseException:
            dbapi.rollback()
            raise
        finally:
            dbapi.close()  # back to the pool
        return tx, result

    def _in_transaction(self, work: Callable[[Tx], T], *, write: bool) -> tuple[Tx, T]:
        with self._transaction(write=write) as tx:
            return tx, work(tx)

    def _run(self, once: Callable[[], tuple[Tx | RawTx, T]]) -> T:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                tx, result = once()
            except DBAPIError as exc:
                if attempt == MAX_ATTEMPTS or not is_retryable(exc):
                    raise
                # Jittered exponential back-off so contending writers spread out.
                delay = min(0.2, 0.002 * 2**attempt) * (0.5 + random.random())  # noqa: S311  jitter, not a secret
                log.debug("retrying transaction after %s (attempt %d)", exc.orig, attempt)
                time.sleep(delay)
                continue
            if tx.announced:
                self.after_commit(tx.announced)
            return result
        raise AssertionError("unreachable")

    def write(self, work: Callable[[Tx], T]) -> T:
        """Run ``work`` in a write transaction, retrying on the database's own lock errors."""
        return self._run(partial(self._in_transaction, work, write=True))

    def read(self, work: Callable[[Tx], T]) -> T:
        """Run ``work`` in a read transaction (on SQLite, one that does not lock writers out)."""
        return self._run(partial(self._in_transaction, work, write=False))

    def write_raw(self, work: Callable[[RawTx], T]) -> T:
        """Like ``write``, on a bare driver connection: for the hot path's prepared SQL."""
        return self._run(partial(self._raw_once, work, write=True))

    def read_raw(self, work: Callable[[RawTx], T]) -> T:
        """Like ``read``, on a bare driver connection: for hot lookups (keys, balances)."""
        return self._run(partial(self._raw_once, work, write=False))
