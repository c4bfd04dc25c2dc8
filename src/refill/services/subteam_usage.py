"""A subteam's usage over time: what it spent and how many usage events, per hour or per
day of the agency's time zone.

The database sums usage per quarter hour (every time zone's offset is a whole number of
quarter hours), and the quarters are folded into the agency's local hours or days here: one
grouped read however long the range, and no engine-specific time zone arithmetic.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, cast, extract, func, select

from refill.db.database import Database, Tx
from refill.db.schema import transfers
from refill.errors import ValidationFailed
from refill.reload.trigger import agency_zone
from refill.services.history_filters import parse_moment
from refill.services.subteams import get_subteam

QUARTER = 900  # seconds


class Granularity(StrEnum):
    HOUR = "hour"
    DAY = "day"


# The longest range each granularity answers, and the range when none is given.
MAX_RANGE = {Granularity.HOUR: timedelta(days=31), Granularity.DAY: timedelta(days=366)}
DEFAULT_RANGE = {Granularity.HOUR: timedelta(hours=24), Granularity.DAY: timedelta(days=30)}


@dataclass(frozen=True, slots=True)
class UsagePoint:
    start: datetime  # the local hour's or day's start, in UTC
    spent: int
    events: int


@dataclass(frozen=True, slots=True)
class UsageSeries:
    subteam_id: str
    granularity: Granularity
    timezone: str
    start: datetime
    end: datetime
    points: list[UsagePoint]


def bucket_starts(
    start: datetime, end: datetime, granularity: Granularity, zone: ZoneInfo
) -> list[datetime]:
    """The starts of the local hours or days that meet [start, end), the first at or
    before ``start``. Hours step in UTC (an hour is an hour across a clock change); days
    start at each local midnight."""
    local = start.astimezone(zone)
    if granularity is Granularity.HOUR:
        first = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        count = int((end - first) / timedelta(hours=1)) + 1
        starts = [first + timedelta(hours=i) for i in range(count)]
    else:
        day = local.date()
        starts = []
        while True:
            midnight = datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
            if midnight >= end and starts:
                break
            starts.append(midnight)
            day += timedelta(days=1)
    return [s for s in starts if s < end] or starts[:1]


def _bucket_end(now: datetime, granularity: Granularity, zone: ZoneInfo) -> datetime:
    """The end of the local hour or day ``now`` is in."""
    if granularity is Granularity.HOUR:
        local = now.astimezone(zone).replace(minute=0, second=0, microsecond=0)
        return local.astimezone(UTC) + timedelta(hours=1)
    tomorrow = now.astimezone(zone).date() + timedelta(days=1)
    return datetime.combine(tomorrow, time(), tzinfo=zone).astimezone(UTC)


def quarter_hour(tx: Tx) -> object:
    """A transfer's quarter hour since the epoch, in this engine's SQL (the forecast
    groups by it too). On SQLite a floor division (``//``): SQLAlchemy writes ``/`` of two
    integers as a true division, which made every event a group of its own."""
    if tx.dialect == "postgresql":
        return func.floor(extract("epoch", transfers.c.occurred_at) / QUARTER)
    return cast(func.strftime("%s", transfers.c.occurred_at), Integer) // QUARTER


def usage_series(
    db: Database,
    *,
    agency_id: str,
    subteam_id: str,
    since: str | None,
    until: str | None,
    granularity: str,
) -> UsageSeries:
    """Spend and usage events per local hour or day between ``since`` and ``until`` (ISO
    dates or date-times as the history filters take them; default: the 24 hours or 30 days
    up to the end of the current hour or day). 422 for an unknown granularity, an empty range, or
    more than 31 days by the hour or 366 by the day."""
    try:
        step = Granularity(granularity)
    except ValueError:
        raise ValidationFailed(
            "granularity must be hour or day", code="invalid_granularity", field="granularity"
        ) from None

    def work(tx: Tx) -> UsageSeries:
        get_subteam(tx, agency_id, subteam_id)  # 404 when not the agency's
        zone = agency_zone(tx, agency_id)
        # By default up to the end of the current hour or day, so "now" is in the series.
        end = parse_moment(until, field="to", zone=zone) or _bucket_end(tx.now, step, zone)
        start = parse_moment(since, field="from", zone=zone) or end - DEFAULT_RANGE[step]
        if start >= end:
            raise ValidationFailed("from must be before to", code="invalid_range", field="from")
        if end - start > MAX_RANGE[step]:
            raise ValidationFailed(
                f"at most {MAX_RANGE[step].days} days by the {step.value}",
                code="invalid_range",
                field="from",
            )
        starts = bucket_starts(start, end, step, zone)
        quarter = quarter_hour(tx)
        rows = tx.conn.execute(
            select(quarter, func.sum(transfers.c.amount), func.count())  # type: ignore[call-overload]
            .where(
                transfers.c.agency_id == agency_id,
                transfers.c.kind == "usage",
                transfers.c.subteam_id == subteam_id,
                transfers.c.occurred_at >= starts[0],
                transfers.c.occurred_at < end,
            )
            .group_by(quarter)
        ).all()
        spent = [0] * len(starts)
        events = [0] * len(starts)
        for q, amount, count in rows:
            at = datetime.fromtimestamp(int(q) * QUARTER, UTC)
            index = bisect_right(starts, at) - 1
            if index >= 0:
                spent[index] += int(amount or 0)
                events[index] += int(count)
        points = [UsagePoint(s, spent[i], events[i]) for i, s in enumerate(starts)]
        return UsageSeries(subteam_id, step, zone.key, start, end, points)

    return db.read(work)
