"""Runway and burn rate, from the wallet's own usage (``recommendation`` builds on it).

The arithmetic is pure (no database): ``basis_start`` and ``usage_basis`` turn usage points
into sums per local hour over the basis, and ``forecast`` computes the figures. The readers
at the end (``read_usage``, ``wallet_forecast``) read the usage in one grouped query (per
quarter hour, as ``subteam_usage`` does, so a local hour of any time zone is a whole number
of them).

**The basis** runs from the start of the local hour of the wallet's first usage ever, or 30
days back, whichever is later, to now; it is never shorter than an hour (a first call a
second ago is not a rate of 86,400 calls a day). ``basis_days`` says how long it is, and
every figure is None when the basis holds no usage: there is nothing to base it on. Money
is integer micro-units; a rate is rounded half up to the micro-unit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from refill.db.database import Database, Tx
from refill.db.schema import accounts, transfers
from refill.ids import wallet_id_for
from refill.reload.trigger import agency_zone
from refill.services.subteam_usage import quarter_hour

WINDOW = timedelta(days=30)
MIN_BASIS = timedelta(hours=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
HOURS_OF_WEEK = 7 * 24
# A run-out moment further ahead than this is no date anyone can use (None).
FAR = timedelta(days=36_500)


def _micros(span: timedelta) -> int:
    return span // timedelta(microseconds=1)


def _ratio(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half up (a positive denominator)."""
    return (2 * numerator + denominator) // (2 * denominator)


def local_hour(moment: datetime, zone: ZoneInfo) -> datetime:
    """The start (in UTC) of the local hour of ``zone`` that ``moment`` is in."""
    return moment.astimezone(zone).replace(minute=0, second=0, microsecond=0).astimezone(UTC)


def hour_of_week(moment: datetime, zone: ZoneInfo) -> int:
    """0 for Monday 00:00-01:00 in ``zone``, ..., 167 for Sunday 23:00-24:00."""
    local = moment.astimezone(zone)
    return local.weekday() * 24 + local.hour


@dataclass(frozen=True, slots=True)
class UsageBasis:
    """What the wallet spent per local hour over the basis [start, end]: hour ``i`` is
    ``[first_hour + i h, first_hour + (i + 1) h)``. ``start`` None: never any usage."""

    start: datetime | None
    end: datetime
    zone: ZoneInfo
    first_hour: datetime
    hourly: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.hourly)

    @property
    def span(self) -> timedelta:
        return timedelta(0) if self.start is None else self.end - self.start

    def hour_start(self, index: int) -> datetime:
        return self.first_hour + index * HOUR

    def is_complete(self, index: int) -> bool:
        """The hour lies wholly inside the basis (not its first or current part-hour)."""
        begins = self.hour_start(index)
        return self.start is not None and self.start <= begins and begins + HOUR <= self.end


def basis_start(end: datetime, first_usage: datetime | None, zone: ZoneInfo) -> datetime | None:
    """The start of the local hour of the first usage ever, or ``end`` - 30 days, whichever is
    later, and at least ``MIN_BASIS`` before ``end``; None when there never was usage."""
    if first_usage is None:
        return None
    return min(max(end - WINDOW, local_hour(first_usage, zone)), end - MIN_BASIS)


def usage_basis(
    points: Iterable[tuple[datetime, int]],
    *,
    start: datetime | None,
    end: datetime,
    zone: ZoneInfo,
) -> UsageBasis:
    """Usage points (moment, amount) summed per local hour of ``zone`` from ``start`` to
    ``end``; a point outside [start, end] is not the basis's and is left out."""
    if start is None:
        return UsageBasis(None, end, zone, end, ())
    first_hour = local_hour(start, zone)
    count = max(1, -((first_hour - end) // HOUR))
    hourly = [0] * count
    for moment, amount in points:
        if start <= moment <= end:
            hourly[min((moment - first_hour) // HOUR, count - 1)] += amount
    return UsageBasis(start, end, zone, first_hour, tuple(hourly))


@dataclass(frozen=True, slots=True)
class Forecast:
    since: datetime | None  # the basis's start
    basis_days: float
    burn_rate_per_day: int | None
    # 168 values, Monday 00:00 local first: the average spent in that hour of the week.
    burn_rate_by_hour_of_week: tuple[int | None, ...]
    available: int
    runway_hours: float | None
    runs_out_at: datetime | None
    timezone: str


def burn_rate_per_day(basis: UsageBasis) -> int | None:
    """The basis's usage per day on average; None without usage."""
    total = basis.total
    if total <= 0:
        return None
    return _ratio(total * _micros(DAY), _micros(basis.span))


def hour_of_week_profile(basis: UsageBasis) -> tuple[int | None, ...]:
    """What the wallet spends in each hour of the week (agency time), averaged over that
    hour's complete occurrences in the basis: the unfinished current hour (and a part-hour
    at the start) is left out, so a minute's usage is not taken for an hour's. None where
    the hour never occurred whole in the basis, and everywhere when there is no usage."""
    sums = [0] * HOURS_OF_WEEK
    seen = [0] * HOURS_OF_WEEK
    if basis.total > 0:
        for index, spent in enumerate(basis.hourly):
            if basis.is_complete(index):
                slot = hour_of_week(basis.hour_start(index), basis.zone)
                sums[slot] += spent
                seen[slot] += 1
    return tuple(_ratio(s, n) if n else None for s, n in zip(sums, seen, strict=True))


def forecast(basis: UsageBasis, *, available: int) -> Forecast:
    """Burn rate and runway. The runway is ``available / (burn_rate_per_day / 24)``: the
    average rate over the basis (unrounded), not the hour-of-week profile projected forward,
    because the profile of a young wallet is mostly None and a few weeks of one hour are
    noisy, while the average is what the page's sentences ("credits last about 3.2 days",
    "a reload covers about 5 days") say. Runway and run-out moment are None without usage
    in the basis, 0 and now when nothing is available."""
    rate = burn_rate_per_day(basis)
    profile = hour_of_week_profile(basis)
    runway_hours: float | None = None
    runs_out_at = None
    if rate is not None:
        left = max(available, 0)
        span = _micros(basis.span)
        runway_hours = left * span / (basis.total * _micros(HOUR))
        runway = left * span // basis.total
        if runway <= _micros(FAR):
            runs_out_at = basis.end + timedelta(microseconds=runway)
    return Forecast(
        since=basis.start,
        basis_days=basis.span / DAY,
        burn_rate_per_day=rate,
        burn_rate_by_hour_of_week=profile,
        available=available,
        runway_hours=runway_hours,
        runs_out_at=runs_out_at,
        timezone=basis.zone.key,
    )


# --- reading ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WalletUsage:
    basis: UsageBasis
    available: int  # balance - held: active holds count
    currency: str


def read_usage(tx: Tx, agency_id: str) -> WalletUsage:
    """The wallet's available credits and its usage basis up to ``tx.now``: three reads (the
    wallet, its first usage, the basis's usage per quarter hour with its first moment)."""
    end = tx.now
    zone = agency_zone(tx, agency_id)
    wallet = tx.conn.execute(
        select(accounts.c.balance, accounts.c.held, accounts.c.currency).where(
            accounts.c.id == wallet_id_for(agency_id)
        )
    ).one()
    usage = (transfers.c.agency_id == agency_id) & (transfers.c.kind == "usage")
    first = tx.conn.execute(
        select(transfers.c.occurred_at).where(usage).order_by(transfers.c.occurred_at).limit(1)
    ).scalar()
    start = basis_start(end, first, zone)
    points = [] if start is None else usage_per_quarter(tx, agency_id, start, end)
    basis = usage_basis(points, start=start, end=end, zone=zone)
    return WalletUsage(basis, int(wallet.balance) - int(wallet.held), wallet.currency)


def usage_per_quarter(
    tx: Tx, agency_id: str, start: datetime, end: datetime
) -> list[tuple[datetime, int]]:
    """The agency's usage from ``start`` to ``end`` summed per quarter hour, as (the first
    moment in it, the sum): one row per quarter hour with usage, whatever the events."""
    quarter = quarter_hour(tx)
    usage = (transfers.c.agency_id == agency_id) & (transfers.c.kind == "usage")
    rows = tx.conn.execute(
        select(quarter, func.min(transfers.c.occurred_at), func.sum(transfers.c.amount))  # type: ignore[call-overload]
        .where(usage, transfers.c.occurred_at >= start, transfers.c.occurred_at <= end)
        .group_by(quarter)
    ).all()
    return [(moment, int(amount)) for _, moment, amount in rows]


def wallet_forecast(db: Database, *, agency_id: str) -> Forecast:
    """The wallet's burn rate and runway now (``forecast``)."""

    def work(tx: Tx) -> Forecast:
        wallet = read_usage(tx, agency_id)
        return forecast(wallet.basis, available=wallet.available)

    return db.read(work)
