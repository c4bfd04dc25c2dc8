"""Pure auto-reload policy: limits, decline classes, charge amounts, rail windows.

Nothing here touches the database, so all of it is tested in the fast tier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from refill.money import currency_info, round_up_to_minor_units

# Auto-reloads a day an owner may allow, for every currency.
MAX_DAILY_LIMIT = 50


class DeclineClass(StrEnum):
    SOFT = "soft"  # may succeed later: retry with back-off
    HARD = "hard"  # will not succeed with this card: stop and tell the owner


# Stripe decline codes that no retry will fix.
HARD_DECLINES = frozenset(
    {
        "expired_card",
        "lost_card",
        "stolen_card",
        "incorrect_number",
        "invalid_account",
        "invalid_payment_method",
        "pickup_card",
        "restricted_card",
        "fraudulent",
    }
)


@dataclass(frozen=True, slots=True)
class ReloadPolicy:
    """Operator-configured failure policy. The bounds of amounts are per currency (the
    money module's table), so a JPY wallet is not held to dollar figures."""

    # Waits before each retry of a soft decline; their number is the retry limit.
    retry_delays: tuple[timedelta, ...] = (
        timedelta(hours=1),
        timedelta(hours=6),
        timedelta(hours=24),
    )
    # do_not_honor is ambiguous (issuers use it for many reasons); hard by default.
    do_not_honor_is_hard: bool = True
    default_daily_limit: int = 10
    hard_declines: frozenset[str] = field(default=HARD_DECLINES)

    def classify(self, decline_code: str | None) -> DeclineClass:
        if decline_code == "do_not_honor":
            return DeclineClass.HARD if self.do_not_honor_is_hard else DeclineClass.SOFT
        if decline_code in self.hard_declines:
            return DeclineClass.HARD
        # insufficient_funds, processing_error, try_again_later, generic card_declined and
        # codes we do not know: worth another try, bounded by the retry limit.
        return DeclineClass.SOFT

    def retry_delay(self, retries_so_far: int) -> timedelta | None:
        """The wait before the next retry, or None when the limit is reached."""
        if retries_so_far < len(self.retry_delays):
            return self.retry_delays[retries_so_far]
        return None

    def target_charge(self, target: int, balance: int, currency: str) -> int:
        """Target mode: what brings the balance back to ``target``, in whole minor units,
        never below the minimum reload nor above the maximum."""
        bounds = currency_info(currency)
        needed = round_up_to_minor_units(max(target - balance, 0), currency)
        return min(max(needed, bounds.min_reload), bounds.max_reload)


def local_day(now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Start of today and of tomorrow in ``tz``, as aware datetimes."""
    local = now.astimezone(tz)
    start = datetime.combine(local.date(), time.min, tzinfo=tz)
    end = datetime.combine(local.date() + timedelta(days=1), time.min, tzinfo=tz)
    return start, end


def local_month(now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Start of this calendar month and of the next in ``tz``."""
    local = now.astimezone(tz)
    start = datetime(local.year, local.month, 1, tzinfo=tz)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return start, datetime(year, month, 1, tzinfo=tz)
