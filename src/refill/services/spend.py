"""A subteam's rules inside the shared wallet: pause, and spend limits per day and month in
the agency's time zone.

A wallet none of whose subteams is paused or limited runs the hot path's two statements
(``ledger.post_usage``). Otherwise its usage comes here, under the wallet's lock (the lock
order of everything that writes a subteam's counters or held credits: wallet, then hold,
then subteam), and the subteam's row is read, checked and, when it has a limit, has its
counters moved in the same transaction as the debit.

The counters count the agency-local day and month named beside them (``spend_day``,
``spend_month``); a counter for another day or month counts zero. They are kept only while
the subteam has a limit: setting one from none (or changing the agency's time zone) clears
them, and the next debit counts the period again from the ledger, once. Credits held by
the subteam's live calls count toward its limits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from refill.db.database import SqlTx, bind_time, prepared
from refill.errors import Forbidden, RefillError
from refill.money import format_amount
from refill.reload.policy import local_day, local_month


class SubteamPaused(Forbidden):
    code = "subteam_paused"


class SubteamLimitReached(RefillError):
    code = "subteam_limit_reached"
    status = 402
    title = "Subteam spend limit reached"


def paused_refusal(subteam_id: str) -> SubteamPaused:
    return SubteamPaused(
        f"subteam {subteam_id} is paused by the agency owner: its calls and usage are refused "
        "until it is resumed"
    )


@dataclass(frozen=True, slots=True)
class Period:
    """The agency-local day and month a moment falls in, and when each ends."""

    day: str
    month: str
    day_starts: datetime
    day_ends: datetime
    month_starts: datetime
    month_ends: datetime

    @classmethod
    def at(cls, now: datetime, zone: ZoneInfo) -> Period:
        day_start, day_end = local_day(now, zone)
        month_start, month_end = local_month(now, zone)
        return cls(
            f"{day_start.year:04d}-{day_start.month:02d}-{day_start.day:02d}",
            f"{day_start.year:04d}-{day_start.month:02d}",
            day_start,
            day_end,
            month_start,
            month_end,
        )


@dataclass(frozen=True, slots=True)
class SubteamRules:
    """What the checked path reads of a subteam's row."""

    archived: bool
    paused: bool
    daily_limit: int | None
    monthly_limit: int | None
    held: int
    spend_day: str | None
    spent_day: int
    spend_month: str | None
    spent_month: int

    @property
    def limited(self) -> bool:
        return self.daily_limit is not None or self.monthly_limit is not None

    @property
    def counted(self) -> bool:
        """The counters are known (not cleared by a new limit or time zone)."""
        return self.spend_day is not None and self.spend_month is not None

    def spent_in(self, period: Period) -> tuple[int, int]:
        """Spent today and this month by the counters (an earlier day or month counts zero;
        a later one, which only a clock set back could meet, is kept: counters never go
        back)."""
        today = self.spent_day if (self.spend_day or "") >= period.day else 0
        month = self.spent_month if (self.spend_month or "") >= period.month else 0
        return today, month


def rules_of(row: tuple[Any, ...]) -> SubteamRules:
    """The nine rule columns, in the order ``_READ_RULES`` selects them."""
    archived_at, paused_at, daily, monthly, held, day, spent_day, month, spent_month = row
    return SubteamRules(
        archived_at is not None,
        paused_at is not None,
        None if daily is None else int(daily),
        None if monthly is None else int(monthly),
        int(held),
        day,
        int(spent_day),
        month,
        int(spent_month),
    )


_READ_RULES = prepared(
    "SELECT g.timezone, g.currency, s.archived_at, s.paused_at, s.daily_spend_limit, "
    "s.monthly_spend_limit, s.held, s.spend_day, s.spent_day, s.spend_month, s.spent_month "
    "FROM subteams s JOIN agencies g ON g.id = s.agency_id WHERE s.id = {p} AND s.agency_id = {p}"
)


@dataclass(frozen=True, slots=True)
class RulesNow:
    rules: SubteamRules
    period: Period | None  # only for a limited subteam: the rest need no date
    currency: str
    zone: str = "UTC"


def in_period(
    tx: SqlTx, agency_id: str, subteam_id: str, rules: SubteamRules, zone: str | None
) -> tuple[SubteamRules, Period | None]:
    """A limited subteam's agency-local day and month, its counters counted from the ledger
    if a new limit or time zone cleared them; an unlimited one needs neither."""
    if not rules.limited:
        return rules, None
    period = Period.at(tx.now, ZoneInfo(zone or "UTC"))
    if not rules.counted:
        rules = count_from_ledger(
            tx, agency_id=agency_id, subteam_id=subteam_id, period=period, rules=rules
        )
    return rules, period


def read_rules(tx: SqlTx, agency_id: str, subteam_id: str) -> RulesNow | None:
    """The subteam's rules now (None: no such subteam in the agency), with the agency's
    currency. The caller holds the wallet's lock when it will write them."""
    row = tx.execute_raw(_READ_RULES[tx.dialect], (subteam_id, agency_id))
    if row is None:
        return None
    rules, period = in_period(tx, agency_id, subteam_id, rules_of(row[2:]), row[0])
    return RulesNow(rules, period, row[1], row[0] or "UTC")


def limit_refusal(
    subteam_id: str,
    rules: SubteamRules,
    period: Period | None,
    *,
    amount: int,
    currency: str,
) -> SubteamLimitReached | None:
    """Would spending ``amount`` more take the subteam past a limit, counting what its live
    calls hold? Pure: the day's limit first. (Settling a hold is never refused.)"""
    if period is None:  # no limit, nothing to pass
        return None
    today, month = rules.spent_in(period)
    return _first_limit_passed(
        subteam_id, rules, period, (today, month), held=rules.held, amount=amount, currency=currency
    )


def _first_limit_passed(
    subteam_id: str,
    rules: SubteamRules,
    period: Period,
    spent: tuple[int, int],
    *,
    held: int,
    amount: int,
    currency: str,
) -> SubteamLimitReached | None:
    """The refusal of the first limit (the day's, then the month's) that ``amount`` more
    would pass, given what ``period``'s day and month have ``spent`` and ``held``."""
    checks = (
        ("daily", rules.daily_limit, spent[0], period.day_ends),
        ("monthly", rules.monthly_limit, spent[1], period.month_ends),
    )
    for name, limit, used, resets_at in checks:
        if limit is not None and used + held + amount > limit:
            return _limit_reached(subteam_id, name, limit, used, held, resets_at, currency)
    return None


def room_left(rules: SubteamRules, period: Period | None) -> int | None:
    """What the subteam may still spend now (None: no limit; an unlimited subteam needs
    no period)."""
    if not rules.limited:
        return None
    if period is None:
        raise ValueError("a limited subteam's room is counted in a period")
    today, month = rules.spent_in(period)
    rooms = [
        limit - spent - rules.held
        for limit, spent in ((rules.daily_limit, today), (rules.monthly_limit, month))
        if limit is not None
    ]
    return min(rooms) if rooms else None


def settle_room(rules: SubteamRules, period: Period | None, *, hold: int) -> int | None:
    """The most a call that holds ``hold`` may cost under the subteam's limits (None: no
    limit): its hold, and what the limits leave besides. Never less than the hold, even
    if the owner lowered a limit since the call started."""
    room = room_left(rules, period)
    return None if room is None else hold + max(room, 0)


def _limit_reached(
    subteam_id: str,
    name: str,
    limit: int,
    spent: int,
    held: int,
    resets_at: datetime,
    currency: str,
) -> SubteamLimitReached:
    word = "today" if name == "daily" else "this month"
    local = f"{resets_at:%Y-%m-%d %H:%M} {resets_at.tzname()}"
    return SubteamLimitReached(
        f"subteam {subteam_id} has reached its {name} spend limit of "
        f"{format_amount(limit, currency)} {currency} ({format_amount(spent, currency)} spent "
        f"{word}, {format_amount(held, currency)} held by live calls); it resets at {local}",
        limit=name,
        spend_limit=format_amount(limit, currency),
        spent=format_amount(spent, currency),
        held=format_amount(held, currency),
        resets_at=resets_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    )


_SPENT_SINCE = prepared(
    "SELECT COALESCE(SUM(amount), 0) FROM transfers WHERE agency_id = {p} AND kind = 'usage' "
    "AND subteam_id = {p} AND occurred_at >= {p}"
)
_SPENT_BETWEEN = prepared(
    "SELECT COALESCE(SUM(amount), 0) FROM transfers WHERE agency_id = {p} AND kind = 'usage' "
    "AND subteam_id = {p} AND occurred_at >= {p} AND occurred_at < {p}"
)
_ADD_TO_MONTH = prepared(
    "UPDATE subteams SET spent_month = spent_month + {p} WHERE id = {p} AND spend_month = {p}"
)


def past_day(now: RulesNow, occurred_at: datetime | None) -> Period | None:
    """The agency-local day and month of usage reported late, when that day is over (None:
    it is today's, or the subteam has no limit to count it against)."""
    if occurred_at is None or now.period is None:
        return None
    then = Period.at(occurred_at, ZoneInfo(now.zone))
    return then if then.day < now.period.day else None


def past_limit_refusal(
    tx: SqlTx,
    *,
    agency_id: str,
    subteam_id: str,
    rules: SubteamRules,
    then: Period,
    amount: int,
    currency: str,
) -> SubteamLimitReached | None:
    """Usage reported late for a day that is over counts against that day's and month's
    limits, as recorded in the ledger (live calls' held credits are today's, not then's)."""
    spent = []
    for start, end in ((then.day_starts, then.day_ends), (then.month_starts, then.month_ends)):
        bounds = (bind_time(tx.dialect, start), bind_time(tx.dialect, end))
        row = tx.execute_raw(_SPENT_BETWEEN[tx.dialect], (agency_id, subteam_id, *bounds))
        spent.append(int(row[0]) if row else 0)
    return _first_limit_passed(
        subteam_id, rules, then, (spent[0], spent[1]), held=0, amount=amount, currency=currency
    )


def record_past_spend(tx: SqlTx, subteam_id: str, now: Period, then: Period, *, spent: int) -> None:
    """A past day's usage moves this month's counter only, when it is this month's."""
    if then.month == now.month:
        tx.execute_raw(_ADD_TO_MONTH[tx.dialect], (spent, subteam_id, now.month))


def count_from_ledger(
    tx: SqlTx, *, agency_id: str, subteam_id: str, period: Period, rules: SubteamRules
) -> SubteamRules:
    """The counters counted again from the subteam's usage transfers (once, after a limit
    was set or the time zone changed)."""
    spent = []
    for since in (period.day_starts, period.month_starts):
        row = tx.execute_raw(
            _SPENT_SINCE[tx.dialect], (agency_id, subteam_id, bind_time(tx.dialect, since))
        )
        spent.append(int(row[0]) if row else 0)
    return replace(
        rules,
        spend_day=period.day,
        spent_day=spent[0],
        spend_month=period.month,
        spent_month=spent[1],
    )


_WRITE_COUNTERS = prepared(
    "UPDATE subteams SET held = held + {p}, spend_day = {p}, spent_day = {p}, "
    "spend_month = {p}, spent_month = {p} WHERE id = {p}"
)
_WRITE_HELD = prepared("UPDATE subteams SET held = held + {p} WHERE id = {p}")


def record_spend(
    tx: SqlTx,
    subteam_id: str,
    rules: SubteamRules,
    period: Period | None,
    *,
    spent: int,
    held_delta: int,
) -> None:
    """Add ``spent`` to the counters (a limited subteam's only) and ``held_delta`` to its
    held credits; caller holds the wallet's lock and has counted the period."""
    if not rules.limited or period is None:
        if held_delta:
            tx.execute_raw(_WRITE_HELD[tx.dialect], (held_delta, subteam_id))
        return
    today, month = rules.spent_in(period)
    day = max(period.day, rules.spend_day or "")
    month_key = max(period.month, rules.spend_month or "")
    tx.execute_raw(
        _WRITE_COUNTERS[tx.dialect],
        (held_delta, day, today + spent, month_key, month + spent, subteam_id),
    )
