"""Read models of the billing page: the balance over time and usage by subteam.

Both read a bounded window (the last 30 days) with aggregates in SQL, so a busy wallet
with hundreds of thousands of transfers still sends the page a few hundred points.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from refill.db.database import Database, Tx
from refill.db.schema import reload_attempts, subteams, transfers

WINDOW = timedelta(days=30)


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


def _hour_bucket(tx: Tx) -> object:
    if tx.dialect == "postgresql":
        return func.date_trunc("hour", transfers.c.created_at)
    return func.strftime("%Y-%m-%d %H", transfers.c.created_at)


def balance_history(db: Database, *, agency_id: str) -> BalanceHistory:
    """The wallet's balance after its last movement of each hour of the window, the
    balance it entered the window with, and the reloads of the window."""

    def work(tx: Tx) -> BalanceHistory:
        until = tx.now
        since = until - WINDOW
        in_window = (transfers.c.agency_id == agency_id) & (transfers.c.created_at >= since)
        last_of_hour = (
            select(func.max(transfers.c.id)).where(in_window).group_by(_hour_bucket(tx))  # type: ignore[arg-type]
        )
        rows = tx.conn.execute(
            select(transfers.c.created_at, transfers.c.wallet_balance_after)
            .where(transfers.c.id.in_(last_of_hour))
            .order_by(transfers.c.id)
        ).all()
        opening = tx.conn.execute(
            select(transfers.c.wallet_balance_after)
            .where(transfers.c.agency_id == agency_id, transfers.c.created_at < since)
            .order_by(transfers.c.id.desc())
            .limit(1)
        ).scalar()
        points = [BalancePoint(since, int(opening or 0))]
        points += [BalancePoint(row.created_at, int(row.wallet_balance_after)) for row in rows]
        points.append(BalancePoint(until, points[-1].balance))
        credit = (
            select(transfers.c.reference, transfers.c.wallet_balance_after)
            .where(
                transfers.c.agency_id == agency_id,
                transfers.c.kind.in_(("auto_reload", "manual_reload")),
                transfers.c.created_at >= since,
            )
            .subquery()
        )
        marks = tx.conn.execute(
            select(
                reload_attempts.c.updated_at,
                reload_attempts.c.amount,
                reload_attempts.c.status,
                reload_attempts.c.trigger,
                credit.c.wallet_balance_after,
            )
            .outerjoin(credit, credit.c.reference == reload_attempts.c.id)
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
