"""Runway, burn rate and recommended auto-reload settings, from the wallet's own usage.

The arithmetic is pure (no database): ``basis_start`` and ``usage_basis`` turn usage points
into sums per local hour over the basis, ``forecast`` and ``recommend`` compute the figures.
The readers at the end (``wallet_forecast``, ``recommend_auto_reload``, ``insights``) read
the usage in one grouped query (per quarter hour, as ``subteam_usage`` does, so a local hour
of any time zone is a whole number of them) and call them.

**The basis** runs from the start of the local hour of the wallet's first usage ever, or 30
days back, whichever is later, to now; it is never shorter than an hour (a first call a
second ago is not a rate of 86,400 calls a day). ``basis_days`` says how long it is, and
every figure is None when the basis holds no usage: there is nothing to base it on. Money
is integer micro-units; a rate is rounded half up to the micro-unit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from refill.db.database import Database, Tx
from refill.db.schema import accounts, transfers
from refill.errors import ValidationFailed
from refill.ids import wallet_id_for
from refill.money import (
    currency_info,
    format_amount,
    minor_unit_micros,
    round_up_to_minor_units,
)
from refill.reload.policy import ReloadPolicy
from refill.reload.settings import AutoReloadSettings
from refill.reload.states import Mode
from refill.reload.trigger import agency_zone
from refill.services.subteam_usage import quarter_hour

WINDOW = timedelta(days=30)
MIN_BASIS = timedelta(hours=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
HOURS_OF_WEEK = 7 * 24
# What a charge is given: the gateway answers within seconds (the Stripe client gives up
# after 30 s; a claimer that died is taken over after its 10 s lease).
CHARGE_TIME = timedelta(minutes=1)
DEFAULT_COVER_DAYS = 7
MAX_COVER_DAYS = 90
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


def busiest_window(hourly: Sequence[int], hours: int) -> tuple[int, int]:
    """The most spent in any ``hours`` consecutive hours (a sliding window), and the index of
    that window's first hour (the earliest such window); all of them when there are fewer."""
    if len(hourly) <= hours:
        return sum(hourly), 0
    spent = best = sum(hourly[:hours])
    at = 0
    for index in range(hours, len(hourly)):
        spent += hourly[index] - hourly[index - hours]
        if spent > best:
            best, at = spent, index - hours + 1
    return best, at


def reload_window_hours(policy: ReloadPolicy) -> int:
    """How long a reload can take, in whole hours: the charge and, after a soft decline, the
    first retry's delay and its charge (just the charge for a policy without retries)."""
    delays = policy.retry_delays
    span = CHARGE_TIME + (delays[0] + CHARGE_TIME if delays else timedelta(0))
    return max(1, -(-span // HOUR))


def check_cover_days(cover_days: int) -> None:
    if not 1 <= cover_days <= MAX_COVER_DAYS:
        raise ValidationFailed(
            f"cover_days must be a whole number of days from 1 to {MAX_COVER_DAYS} "
            f"(got {cover_days})",
            code="invalid_cover_days",
            field="cover_days",
        )


@dataclass(frozen=True, slots=True)
class Recommendation:
    """Fixed mode: each reload adds the same amount, so "it covers N days" holds for every
    reload; target mode would charge target - available, which varies with how far below
    the threshold the wallet is when the charge is made. Amounts None without usage."""

    mode: Mode
    threshold: int | None
    reload_amount: int | None
    target_balance: int | None
    cover_days: int
    window_hours: int
    reasoning: tuple[str, ...]


def _number(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _days(value: float) -> str:
    text = _number(value)
    return "1 day" if text == "1" else f"{text} days"


def _hours(count: float) -> str:
    text = _number(count)
    return "1 hour" if text == "1" else f"{text} hours"


def _span(span: timedelta) -> str:
    return _hours(span / HOUR) if span < DAY else _days(span / DAY)


# How the reasoning writes an amount: the API's spelling (``10000.00 USD``, as everywhere
# in the API), or the billing page's (``display_amount``: ``$10,000.00``).
Spelling = Callable[[int, str], str]


def api_spelling(micros: int, currency: str) -> str:
    return f"{format_amount(micros, currency)} {currency}"


def _window_sentence(policy: ReloadPolicy, hours: int) -> str:
    if not policy.retry_delays:
        return f"A reload can take up to {_hours(hours)}: the charge (no retry after a decline)."
    delay = _number(policy.retry_delays[0] / HOUR)
    return (
        f"A reload can take up to {_hours(hours)}: the charge, and after a soft decline its "
        f"retry {delay} hour{'' if delay == '1' else 's'} later."
    )


def _fit(busiest: int, wanted: int, currency: str, spell: Spelling) -> tuple[int, int, list[str]]:
    """Threshold and reload within the currency's rails, in whole minor units, the reload
    above the threshold (fixed mode); what was changed to fit, in words."""
    bounds = currency_info(currency)
    unit = minor_unit_micros(currency)

    def money(micros: int) -> str:
        return spell(micros, currency)

    notes: list[str] = []
    threshold = round_up_to_minor_units(busiest, currency)
    if threshold > bounds.max_threshold:
        threshold = bounds.max_threshold
        notes.append(f"The threshold is capped at the maximum of {money(threshold)}.")
    reload = round_up_to_minor_units(wanted, currency)
    if reload < bounds.min_reload:
        reload = bounds.min_reload
        notes.append(f"The reload is raised to the minimum reload of {money(reload)}.")
    elif reload > bounds.max_reload:
        reload = bounds.max_reload
        notes.append(f"The reload is capped at the maximum reload of {money(reload)}.")
    if reload <= threshold:
        if threshold + unit <= bounds.max_reload:
            reload = threshold + unit
            notes.append(
                f"The reload is raised to {money(reload)}, just above the threshold: a fixed "
                "reload must be more than the threshold, or it could start the next at once."
            )
        else:
            reload, threshold = bounds.max_reload, bounds.max_reload - unit
            notes.append(
                f"The threshold is lowered to {money(threshold)}, below the maximum reload of "
                f"{money(reload)}: a fixed reload must be more than the threshold."
            )
    return threshold, reload, notes


def recommend(
    basis: UsageBasis,
    *,
    currency: str,
    cover_days: int,
    policy: ReloadPolicy,
    spell: Spelling = api_spelling,
) -> Recommendation:
    """A threshold that covers the most the wallet spent in any window as long as a reload
    can take (``reload_window_hours``, a sliding window over the basis's hours), and a
    reload of ``cover_days`` times the burn rate per day; both rounded up to whole minor
    units and fitted to the currency's rails (``_fit``). 422 ``invalid_cover_days`` unless
    1 <= cover_days <= 90. Without usage: amounts None, and the reasoning says why."""
    check_cover_days(cover_days)
    hours = reload_window_hours(policy)
    rate = burn_rate_per_day(basis)
    if rate is None:
        why = (
            "The wallet has no usage in the last 30 days, so there is nothing yet to base a "
            "threshold or a reload amount on.",
            f"With usage, the threshold covers its busiest {_hours(hours)} (as long as a "
            f"reload can take) and the reload {_days(cover_days)} of typical usage.",
        )
        return Recommendation(Mode.FIXED, None, None, None, cover_days, hours, why)

    def money(micros: int) -> str:
        return spell(micros, currency)

    busiest, at = busiest_window(basis.hourly, hours)
    threshold, reload, notes = _fit(busiest, rate * cover_days, currency, spell)
    began = basis.hour_start(at).astimezone(basis.zone).strftime("%a %Y-%m-%d %H:%M")
    covered = f": a threshold of {money(threshold)} covers that" if threshold >= busiest else ""
    reasoning = (
        f"Over the last {_span(basis.span)} the wallet spent {money(basis.total)}: "
        f"{money(rate)} a day on average.",
        _window_sentence(policy, hours),
        f"The most it spent in any {_hours(hours)} was {money(busiest)} (from {began}, "
        f"{basis.zone.key}){covered}.",
        f"{_days(cover_days)} at {money(rate)} a day come to {money(rate * cover_days)}.",
        *notes,
        f"A fixed reload of {money(reload)} covers about {_days(reload / rate)} of typical usage.",
    )
    return Recommendation(Mode.FIXED, threshold, reload, None, cover_days, hours, reasoning)


def reload_cover_days(settings: AutoReloadSettings, rate: int | None) -> float | None:
    """How many days of typical usage one reload covers: the reload amount (fixed mode), or
    target - threshold (target mode: about what a reload adds), over the burn rate per day;
    None without a rate or without the amounts."""
    if rate is None or rate <= 0:
        return None
    if settings.mode == Mode.TARGET:
        if settings.target_balance is None or settings.threshold is None:
            return None
        adds = settings.target_balance - settings.threshold
    else:
        adds = settings.reload_amount or 0
    return adds / rate if adds > 0 else None


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


@dataclass(frozen=True, slots=True)
class Insights:
    forecast: Forecast
    recommendation: Recommendation


def insights(
    db: Database,
    policy: ReloadPolicy,
    *,
    agency_id: str,
    cover_days: int = DEFAULT_COVER_DAYS,
    spell: Spelling = api_spelling,
) -> Insights:
    """Both, from one read: what the billing page shows (with its own ``spell``)."""
    check_cover_days(cover_days)

    def work(tx: Tx) -> Insights:
        wallet = read_usage(tx, agency_id)
        return Insights(
            forecast(wallet.basis, available=wallet.available),
            recommend(
                wallet.basis,
                currency=wallet.currency,
                cover_days=cover_days,
                policy=policy,
                spell=spell,
            ),
        )

    return db.read(work)


def recommend_auto_reload(
    db: Database, policy: ReloadPolicy, *, agency_id: str, cover_days: int = DEFAULT_COVER_DAYS
) -> Recommendation:
    """Recommended auto-reload settings (``recommend``); 422 before any read for a
    ``cover_days`` outside 1..90."""
    return insights(db, policy, agency_id=agency_id, cover_days=cover_days).recommendation
