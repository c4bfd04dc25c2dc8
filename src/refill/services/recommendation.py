"""Recommended auto-reload settings, from the wallet's own usage (``forecast``'s basis).

``recommend`` is pure: a threshold that covers the most the wallet spent in any window as
long as a reload can take (the charge and, after a soft decline, the first retry and its
charge), and a reload of ``cover_days`` of typical usage, both rounded up to whole minor
units and fitted to the currency's rails, with the reasoning in sentences. The readers at
the end (``insights``, ``recommend_auto_reload``) read the basis once and call it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from refill.db.database import Database, Tx
from refill.errors import ValidationFailed
from refill.money import currency_info, format_amount, minor_unit_micros, round_up_to_minor_units
from refill.reload.policy import ReloadPolicy
from refill.reload.settings import AutoReloadSettings
from refill.reload.states import Mode
from refill.services.forecast import (
    DAY,
    HOUR,
    Forecast,
    UsageBasis,
    burn_rate_per_day,
    forecast,
    read_usage,
)

# What a charge is given: the gateway answers within seconds (the Stripe client gives up
# after 30 s; a claimer that died is taken over after its 10 s lease).
CHARGE_TIME = timedelta(minutes=1)
DEFAULT_COVER_DAYS = 7
MAX_COVER_DAYS = 90


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
    """ "the last hour", "the last 5.5 hours", "the last day", "the last 30 days"."""
    words = _hours(span / HOUR) if span < DAY else _days(span / DAY)
    return words.removeprefix("1 ")


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
