"""Replaying a wallet's recorded movements against auto-reload settings: what would have
happened, decided step by step by the live path's own rule (``trigger.decide``).

Pure: the caller reads the movements (usage and the owner's own credits, never the
auto-reloads that really happened: the replay makes its own), the balance at the start,
and which settings were in effect from when. Each reload is assumed to succeed at the
moment its trigger fires, as a sandbox card does; a usage event the replayed wallet cannot
cover is counted as refused and not applied (a call it would have refused).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from refill.reload.policy import ReloadPolicy, local_day, local_month
from refill.reload.settings import AutoReloadSettings
from refill.reload.states import DecisionAction
from refill.reload.trigger import RailCounts, decide

HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Movement:
    """A recorded change of the wallet: usage (negative) or the owner's own credit."""

    at: datetime
    amount: int  # signed, from the wallet's side
    usage: bool


@dataclass(frozen=True, slots=True)
class SettingsFrom:
    """Settings in effect from ``starts`` until the next entry of the timeline."""

    starts: datetime
    settings: AutoReloadSettings


@dataclass(frozen=True, slots=True)
class Block:
    rail: str
    at: datetime
    until: datetime


@dataclass
class Replay:
    reloads: list[tuple[datetime, int]] = field(default_factory=list)
    lowest_balance: int = 0
    seconds_without_credits: float = 0.0
    refused_calls: int = 0
    blocked_by_rail: Block | None = None
    series: list[tuple[datetime, int]] = field(default_factory=list)

    @property
    def charged(self) -> int:
        return sum(amount for _, amount in self.reloads)

    @property
    def hours_without_credits(self) -> float:
        return round(self.seconds_without_credits / 3600, 2)


@dataclass
class _Wallet:
    """The replayed wallet while it runs: balance, its reloads, the rail's block."""

    policy: ReloadPolicy
    currency: str
    zone: ZoneInfo
    timeline: list[SettingsFrom]
    balance: int
    out: Replay
    blocked_until: datetime | None = None
    blocked_rail: str | None = None
    _starts: list[datetime] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._starts = [s.starts for s in self.timeline]

    def settings_at(self, now: datetime) -> AutoReloadSettings | None:
        index = bisect_right(self._starts, now) - 1
        if index < 0:
            return None
        settings = self.timeline[index].settings
        return replace(settings, blocked_rail=self.blocked_rail, blocked_until=self.blocked_until)

    def may_want_reload(self, now: datetime) -> bool:
        """A cheap first look: below a threshold in effect (the rule itself decides)."""
        index = bisect_right(self._starts, now) - 1
        threshold = self.timeline[index].settings.threshold if index >= 0 else None
        return threshold is not None and self.balance < threshold

    def rails(self, now: datetime) -> RailCounts:
        day_start, day_end = local_day(now, self.zone)
        month_start, month_end = local_month(now, self.zone)
        today = sum(1 for at, _ in self.out.reloads if at >= day_start)
        month = sum(amount for at, amount in self.out.reloads if at >= month_start)
        return RailCounts(today, month, day_end, month_end)

    def evaluate(self, now: datetime) -> None:
        """The trigger, as the debit (or a lifted block) runs it: reload while it says so."""
        if not self.may_want_reload(now):
            return  # decide would say nothing: not below the threshold
        for _ in range(10):  # settings never cascade; a bound all the same
            settings = self.settings_at(now)
            if settings is None:
                return
            decision = decide(
                self.policy,
                settings,
                available=self.balance,
                currency=self.currency,
                active_attempt=False,
                rails=self.rails(now),
                now=now,
            )
            if decision.action is DecisionAction.RELOAD:
                self.balance += decision.amount
                self.out.reloads.append((now, decision.amount))
                continue
            if decision.action is DecisionAction.BLOCKED and decision.rail and decision.until:
                self.blocked_rail, self.blocked_until = decision.rail.value, decision.until
                if self.out.blocked_by_rail is None:
                    self.out.blocked_by_rail = Block(decision.rail.value, now, decision.until)
            return


def replay(
    policy: ReloadPolicy,
    timeline: list[SettingsFrom],
    movements: list[Movement],
    *,
    start: datetime,
    end: datetime,
    opening_balance: int,
    currency: str,
    zone: ZoneInfo,
) -> Replay:
    """What the wallet would have done after ``start`` (its balance then, movements at
    that very moment included, is ``opening_balance``) through ``end``, movements in
    order."""
    out = Replay(lowest_balance=opening_balance)
    wallet = _Wallet(
        policy, currency, zone, sorted(timeline, key=lambda s: s.starts), opening_balance, out
    )
    clock = start
    next_sample = start

    def advance(to: datetime) -> None:
        """Time passes at the current balance: samples, time without credits, a block
        lifting (the worker evaluates the wallet again then)."""
        nonlocal clock, next_sample
        while True:
            lift = wallet.blocked_until
            step = min(to, lift) if lift is not None and lift > clock else to
            while next_sample <= step and next_sample <= end:
                out.series.append((next_sample, wallet.balance))
                next_sample += HOUR
            if wallet.balance <= 0:
                out.seconds_without_credits += (step - clock).total_seconds()
            clock = step
            if lift is not None and lift <= step:
                wallet.blocked_until = wallet.blocked_rail = None
                wallet.evaluate(step)
                continue
            if step >= to:
                return

    wallet.evaluate(start)
    for movement in movements:
        if not start < movement.at <= end:  # what happened at start is in the opening
            continue
        advance(movement.at)
        if movement.usage and wallet.balance + movement.amount < 0:
            out.refused_calls += 1
            continue
        wallet.balance += movement.amount
        out.lowest_balance = min(out.lowest_balance, wallet.balance)
        wallet.evaluate(movement.at)
    advance(end)
    out.series.append((end, wallet.balance))
    return out
