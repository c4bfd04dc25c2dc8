"""Read models of the billing page: the balance over time and usage by subteam.

Both read a bounded window (the last 30 days) with aggregates in SQL, so a busy wallet
with hundreds of thousands of transfers still sends the page a few hundred points.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, DateTime, Select, bindparam, func, select
from sqlalchemy.dialects import postgresql

from refill.db.database import Database, Tx
from refill.db.schema import UTCDateTime, accounts, reload_attempts, subteams, transfers
from refill.ids import wallet_id_for

WINDOW = timedelta(days=30)
# The last day is drawn at a finer step, so a 24-hour view shows each reload's rise: five
# minutes, or finer for a wallet younger than a day (about 150 points, at least 10 s apart).
FINE_WINDOW = timedelta(hours=24)
FINE_STEP = timedelta(minutes=5)
FINEST_STEP = timedelta(seconds=10)


@dataclass(frozen=True, slots=True)
class BalancePoint:
    at: datetime
    balance: int


@dataclass(frozen=True, slots=True)
class ReloadMark:
    at: datetime
    amount: int
    status: str
    trigger: str
    # The wallet's balance right after the credit (None when nothing was credited).
    balance_after: int | None


@dataclass(frozen=True, slots=True)
class SubteamUsage:
    subteam_id: str
    name: str
    amount: int
    events: int


@dataclass(frozen=True, slots=True)
class BalanceHistory:
    since: datetime
    until: datetime
    points: list[BalancePoint]
    reloads: list[ReloadMark]


def _whole_steps(since: datetime, until: datetime, step: timedelta) -> list[datetime]:
    """The moments strictly between ``since`` and ``until`` that are whole multiples of
    ``step`` (whole hours, whole five minutes) in UTC."""
    seconds = int(step.total_seconds())
    start = int(since.timestamp()) // seconds * seconds + seconds
    moment = datetime.fromtimestamp(start, tz=since.tzinfo)
    steps = []
    while moment < until:
        steps.append(moment)
        moment += step
    return steps


def _fine_step(span: timedelta) -> timedelta:
    step = timedelta(seconds=int(span.total_seconds() / 150))
    return min(FINE_STEP, max(FINEST_STEP, step))


def _seek(agency_id: str, before: ColumnElement[datetime]) -> Select[int]:
    """The wallet's balance just before a moment: the last transfer's
    ``wallet_balance_after``, one seek on ix_transfers_agency_created."""
    return (
        select(transfers.c.wallet_balance_after)
        .where(transfers.c.agency_id == agency_id, transfers.c.created_at < before)
        .order_by(transfers.c.created_at.desc(), transfers.c.id.desc())
        .limit(1)
    )


def _balances_before(tx: Tx, agency_id: str, moments: list[datetime]) -> list[int]:
    """The wallet's balance just before each moment (0 before its first transfer).

    One index seek per moment, so the cost follows the number of points (~720), not the
    number of transfers: a wallet with 100k usage events a month costs the same.
    """
    if tx.dialect == "postgresql":
        # One round trip: the moments as an array, each with a correlated LIMIT 1 seek.
        given = (
            func.unnest(
                bindparam("moments", moments, type_=postgresql.ARRAY(DateTime(timezone=True)))
            )
            .table_valued("at", with_ordinality="n")
            .render_derived(name="moment")
        )
        balance = _seek(agency_id, given.c.at).scalar_subquery()
        rows = tx.conn.execute(select(balance).select_from(given).order_by(given.c.n)).scalars()
        return [int(value or 0) for value in rows]
    # SQLite runs in this process: one cached prepared statement per moment costs microseconds.
    seek = _seek(agency_id, bindparam("at", type_=UTCDateTime()))
    return [int(tx.conn.execute(seek, {"at": moment}).scalar() or 0) for moment in moments]


def balance_history(db: Database, *, agency_id: str) -> BalanceHistory:
    """The wallet's balance at the start of the window (its opening, or 30 days back), at
    every whole hour since, every five minutes in the last day, and now; and the reloads of
    the window (with the balance each credit left)."""

    def work(tx: Tx) -> BalanceHistory:
        until = tx.now
        opened = tx.conn.execute(
            select(accounts.c.created_at).where(accounts.c.id == wallet_id_for(agency_id))
        ).scalar()
        # From the wallet's opening (a new wallet is not 30 days of zero) or 30 days back.
        since = max(until - WINDOW, opened or until)
        fine_from = max(since, until - FINE_WINDOW)
        moments = [
            since,
            *_whole_steps(since, fine_from, timedelta(hours=1)),
            *([fine_from] if fine_from > since else []),
            *_whole_steps(fine_from, until, _fine_step(until - fine_from)),
        ]
        balances = _balances_before(tx, agency_id, moments)
        points = [BalancePoint(at, balance) for at, balance in zip(moments, balances, strict=True)]
        points.append(BalancePoint(until, _balance_now(tx, agency_id)))
        credit = transfers.alias("credit")
        marks = tx.conn.execute(
            select(
                reload_attempts.c.updated_at,
                reload_attempts.c.amount,
                reload_attempts.c.status,
                reload_attempts.c.trigger,
                credit.c.wallet_balance_after,
            )
            # The credit's reference is the attempt's id: a unique-index lookup per reload.
            .outerjoin(
                credit,
                (credit.c.agency_id == reload_attempts.c.agency_id)
                & credit.c.kind.in_(("auto_reload", "manual_reload"))
                & (credit.c.reference == reload_attempts.c.id),
            )
            .where(
                reload_attempts.c.agency_id == agency_id,
                reload_attempts.c.created_at >= since,
                reload_attempts.c.status.in_(("succeeded", "failed")),
            )
            .order_by(reload_attempts.c.updated_at)
        ).all()
        return BalanceHistory(
            since,
            until,
            points,
            [
                ReloadMark(
                    m.updated_at,
                    int(m.amount),
                    m.status,
                    m.trigger,
                    None if m.wallet_balance_after is None else int(m.wallet_balance_after),
                )
                for m in marks
            ],
        )

    return db.read(work)


def _balance_now(tx: Tx, agency_id: str) -> int:
    return int(
        tx.conn.execute(
            select(accounts.c.balance).where(accounts.c.id == wallet_id_for(agency_id))
        ).scalar()
        or 0
    )


def usage_by_subteam(db: Database, *, agency_id: str) -> list[SubteamUsage]:
    """What each subteam spent in the window, biggest first (subteams with none included)."""

    def work(tx: Tx) -> list[SubteamUsage]:
        since = tx.now - WINDOW
        spent = (
            select(
                transfers.c.subteam_id,
                func.sum(transfers.c.amount).label("amount"),
                func.count().label("events"),
            )
            .where(
                transfers.c.agency_id == agency_id,
                transfers.c.kind == "usage",
                transfers.c.created_at >= since,
            )
            .group_by(transfers.c.subteam_id)
            .subquery()
        )
        rows = tx.conn.execute(
            select(subteams.c.id, subteams.c.name, spent.c.amount, spent.c.events)
            .outerjoin(spent, spent.c.subteam_id == subteams.c.id)
            .where(subteams.c.agency_id == agency_id)
        ).all()
        usage = [
            SubteamUsage(row.id, row.name, int(row.amount or 0), int(row.events or 0))
            for row in rows
        ]
        return sorted(usage, key=lambda u: (-u.amount, u.name))

    return db.read(work)
