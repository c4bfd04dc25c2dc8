"""Why did it (not) reload? The trigger rule evaluated now, itemized for the owner.

``explain`` asks ``trigger.decide`` for the verdict and never decides by itself: the
verdict is ``would_reload`` exactly when ``decide`` says RELOAD and ``blocked`` exactly
when it says BLOCKED. When ``decide`` says nothing, the verdict names the first reason that
applies, in this order (each one is a check that did not pass):

    off → suspended → reload_in_progress | waiting_for_retry → paused_by_limit
        → incomplete → not_needed → card_unusable

The checks are the rule's conditions one by one, each ``{name, passed, detail}``, with
amounts as decimal strings (``format_amount``) and times in ISO 8601 UTC. Pure: computed on
request from what the caller read; nothing is written to answer it.

Verdicts:

- ``would_reload``: a reload would start now (``decide``: RELOAD).
- ``blocked``: a reload is due, but a safety rail stops it now (``decide``: BLOCKED).
- ``off``: Auto Reload is off.
- ``suspended``: stopped after declines until the owner chooses a card or re-enables it.
- ``reload_in_progress``: an auto-reload is already pending, charging or waiting for 3-D
  Secure.
- ``waiting_for_retry``: a declined auto-reload waits for its retry time.
- ``paused_by_limit``: an earlier reload hit a rail, which holds reloads until a time.
- ``incomplete``: on, but without a threshold or a reload amount.
- ``not_needed``: available credits are not below the threshold.
- ``card_unusable``: no card is chosen.

``decide`` does not look at the card's expiry, so an expired or removed card with a reload
due still says ``would_reload`` (the charge would be sent, and likely declined);
``card_usable`` then fails, and ``summary`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum

from refill.cards import PaymentMethod
from refill.money import format_amount
from refill.reload.attempt import ReloadAttempt
from refill.reload.policy import ReloadPolicy
from refill.reload.settings import AutoReloadSettings
from refill.reload.states import AttemptStatus, DecisionAction, SettingsStatus
from refill.reload.trigger import Decision, RailCounts, decide, reload_amount


class Verdict(StrEnum):
    WOULD_RELOAD = "would_reload"
    BLOCKED = "blocked"
    OFF = "off"
    SUSPENDED = "suspended"
    RELOAD_IN_PROGRESS = "reload_in_progress"
    WAITING_FOR_RETRY = "waiting_for_retry"
    PAUSED_BY_LIMIT = "paused_by_limit"
    INCOMPLETE = "incomplete"
    NOT_NEEDED = "not_needed"
    CARD_UNUSABLE = "card_unusable"


class CheckName(StrEnum):
    ENABLED = "enabled"
    BELOW_THRESHOLD = "below_threshold"
    NO_ACTIVE_ATTEMPT = "no_active_attempt"
    NOT_SUSPENDED = "not_suspended"
    NOT_BLOCKED = "not_blocked"
    CARD_USABLE = "card_usable"
    NO_RETRY_WAITING = "no_retry_waiting"


# The checks in words, as the billing page lists them.
CHECK_LABELS = {
    CheckName.ENABLED: "Auto Reload is on",
    CheckName.BELOW_THRESHOLD: "Available credits are below the threshold",
    CheckName.NO_ACTIVE_ATTEMPT: "No auto-reload is already under way",
    CheckName.NOT_SUSPENDED: "Auto Reload is not suspended",
    CheckName.NOT_BLOCKED: "No safety limit holds reloads",
    CheckName.CARD_USABLE: "The card can be charged",
    CheckName.NO_RETRY_WAITING: "No declined charge waits for its retry",
}

SUMMARIES = {
    Verdict.WOULD_RELOAD: "A reload would start now.",
    Verdict.BLOCKED: "A reload is due, but a safety limit stops it.",
    Verdict.OFF: "Auto Reload is off.",
    Verdict.SUSPENDED: "Auto Reload is suspended.",
    Verdict.RELOAD_IN_PROGRESS: "A reload is already under way.",
    Verdict.WAITING_FOR_RETRY: "A declined reload waits for its retry.",
    Verdict.PAUSED_BY_LIMIT: "A safety limit holds reloads for now.",
    Verdict.INCOMPLETE: "Auto Reload is missing a setting.",
    Verdict.NOT_NEEDED: "No reload is needed: available credits are not below the threshold.",
    Verdict.CARD_UNUSABLE: "Auto Reload has no card to charge.",
}

RAIL_WORDS = {"daily_limit": "daily reload limit", "monthly_cap": "monthly spending cap"}

_STATUS_WORDS = {
    AttemptStatus.PENDING: "pending",
    AttemptStatus.CHARGING: "charging",
    AttemptStatus.REQUIRES_ACTION: "waiting for the owner to authenticate it (requires_action)",
}


@dataclass(frozen=True, slots=True)
class Check:
    name: CheckName
    passed: bool
    detail: str

    @property
    def label(self) -> str:
        return CHECK_LABELS[self.name]


@dataclass(frozen=True, slots=True)
class Explanation:
    evaluated_at: datetime
    verdict: Verdict
    checks: tuple[Check, ...]

    def check(self, name: CheckName | str) -> Check:
        return next(c for c in self.checks if c.name == name)

    @property
    def failed(self) -> tuple[CheckName, ...]:
        return tuple(c.name for c in self.checks if not c.passed)

    @property
    def summary(self) -> str:
        """The verdict in one or two sentences."""
        words = SUMMARIES[self.verdict]
        if self.verdict is Verdict.WOULD_RELOAD and CheckName.CARD_USABLE in self.failed:
            words += " The card may be declined: choose another one."
        return words


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC, to the second: ``2026-12-04T00:00:00Z``."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def explain(
    policy: ReloadPolicy,
    settings: AutoReloadSettings,
    *,
    available: int,
    currency: str,
    active: ReloadAttempt | None,
    rails: RailCounts,
    card: PaymentMethod | None,
    card_removed: bool,
    now: datetime,
) -> Explanation:
    """The trigger rule now, with its reasons. ``active``: the wallet's active auto-reload
    (pending, charging, requires_action) or None; ``card``: the saved card named by the
    settings, removed or not (``card_removed``), None when there is none."""
    decision = decide(
        policy,
        settings,
        available=available,
        currency=currency,
        active_attempt=active is not None,
        rails=rails,
        now=now,
    )
    amount = reload_amount(policy, settings, available, currency)
    rail = decision if decision.action is DecisionAction.BLOCKED else None
    if rail is None:
        rail = _rail_now(policy, settings, available, currency, rails, now)
    checks = (
        _enabled(settings, amount, currency),
        _below_threshold(settings, available, currency),
        _no_active_attempt(active),
        _not_suspended(settings),
        _not_blocked(settings, rail, now),
        _card_usable(settings, card, card_removed, now),
        _no_retry_waiting(active, now),
    )
    return Explanation(now, _verdict(decision, settings, available, amount, active, now), checks)


def _verdict(
    decision: Decision,
    settings: AutoReloadSettings,
    available: int,
    amount: int | None,
    active: ReloadAttempt | None,
    now: datetime,
) -> Verdict:
    if decision.action is DecisionAction.RELOAD:
        return Verdict.WOULD_RELOAD
    if decision.action is DecisionAction.BLOCKED:
        return Verdict.BLOCKED
    # ``decide`` said nothing: the first of its reasons that applies.
    if not settings.enabled or settings.status is SettingsStatus.OFF:
        return Verdict.OFF
    if settings.status is SettingsStatus.SUSPENDED:
        return Verdict.SUSPENDED
    if active is not None:
        if _retry_waits(active, now):
            return Verdict.WAITING_FOR_RETRY
        return Verdict.RELOAD_IN_PROGRESS
    if settings.blocked_at(now):
        return Verdict.PAUSED_BY_LIMIT
    if settings.threshold is None or amount is None:
        return Verdict.INCOMPLETE
    if available >= settings.threshold:
        return Verdict.NOT_NEEDED
    # The only reason left: ``wants_reload`` needs a card.
    return Verdict.CARD_UNUSABLE


def _rail_now(
    policy: ReloadPolicy,
    settings: AutoReloadSettings,
    available: int,
    currency: str,
    rails: RailCounts,
    now: datetime,
) -> Decision | None:
    """Would a rail stop a reload if one were due now? ``decide`` itself answers, asked as
    if auto-reload were active, below its threshold, with a card and no block held."""
    due = replace(
        settings,
        status=SettingsStatus.ACTIVE,
        threshold=available + 1,
        payment_method_id=settings.payment_method_id or "card",
        blocked_rail=None,
        blocked_until=None,
    )
    probe = decide(
        policy,
        due,
        available=available,
        currency=currency,
        active_attempt=False,
        rails=rails,
        now=now,
    )
    return probe if probe.action is DecisionAction.BLOCKED else None


def _money(micros: int, currency: str) -> str:
    return f"{format_amount(micros, currency)} {currency}"


def _enabled(settings: AutoReloadSettings, amount: int | None, currency: str) -> Check:
    if not settings.enabled or settings.status is SettingsStatus.OFF:
        return Check(CheckName.ENABLED, False, "Auto Reload is off.")
    if settings.threshold is None:
        return Check(CheckName.ENABLED, False, "Auto Reload is on but has no minimum threshold.")
    if amount is None:
        return Check(CheckName.ENABLED, False, "Auto Reload is on but has no reload amount.")
    return Check(
        CheckName.ENABLED,
        True,
        f"Auto Reload is on: a reload now would charge {_money(amount, currency)}.",
    )


def _below_threshold(settings: AutoReloadSettings, available: int, currency: str) -> Check:
    threshold = settings.threshold
    if threshold is None:
        return Check(CheckName.BELOW_THRESHOLD, False, "No minimum threshold is set.")
    below = available < threshold
    return Check(
        CheckName.BELOW_THRESHOLD,
        below,
        f"Available credits ({_money(available, currency)}) are {'' if below else 'not '}"
        f"below the threshold ({_money(threshold, currency)}).",
    )


def _no_active_attempt(active: ReloadAttempt | None) -> Check:
    if active is None:
        return Check(CheckName.NO_ACTIVE_ATTEMPT, True, "No auto-reload is under way.")
    words = _STATUS_WORDS.get(active.status, str(active.status))
    return Check(CheckName.NO_ACTIVE_ATTEMPT, False, f"Auto-reload {active.id} is {words}.")


def _not_suspended(settings: AutoReloadSettings) -> Check:
    if settings.status is not SettingsStatus.SUSPENDED:
        return Check(CheckName.NOT_SUSPENDED, True, "Auto Reload is not suspended.")
    reason = (settings.suspended_reason or "the card could not be charged").rstrip(". ")
    return Check(CheckName.NOT_SUSPENDED, False, f"Auto Reload was suspended: {reason}.")


def _not_blocked(settings: AutoReloadSettings, rail: Decision | None, now: datetime) -> Check:
    held_until = settings.blocked_until
    if held_until is not None and settings.blocked_at(now):
        name = settings.blocked_rail or "safety limit"
        words = RAIL_WORDS.get(name, name)
        return Check(
            CheckName.NOT_BLOCKED, False, f"Paused by the {words} until {iso(held_until)}."
        )
    if rail is not None and rail.rail is not None and rail.until is not None:
        words = RAIL_WORDS.get(rail.rail, rail.rail)
        return Check(
            CheckName.NOT_BLOCKED,
            False,
            f"The {words} stops a reload until {iso(rail.until)}: {rail.message}.",
        )
    return Check(CheckName.NOT_BLOCKED, True, "No safety limit holds reloads.")


def _card_usable(
    settings: AutoReloadSettings, card: PaymentMethod | None, removed: bool, now: datetime
) -> Check:
    if settings.payment_method_id is None:
        return Check(CheckName.CARD_USABLE, False, "No card is chosen for Auto Reload.")
    if settings.card_list and not settings.chargeable:
        which = (
            f"{card.label} was declined ({settings.card_list[0].skip_reason})"
            if card is not None and len(settings.card_list) == 1
            else "Every card was declined"
        )
        return Check(
            CheckName.CARD_USABLE,
            False,
            f"{which} and is not charged again until it is updated or chosen again.",
        )
    if card is None:
        return Check(CheckName.CARD_USABLE, False, "The chosen card is not on file.")
    if removed:
        return Check(CheckName.CARD_USABLE, False, f"{card.label} was removed.")
    expiry = f"{card.exp_month:02d}/{card.exp_year}"
    if card.is_expired(now):
        return Check(CheckName.CARD_USABLE, False, f"{card.label} expired at the end of {expiry}.")
    skipped = len(settings.card_list) - len(settings.chargeable)
    if card.id != settings.payment_method_id and skipped:
        return Check(
            CheckName.CARD_USABLE,
            True,
            f"The backup {card.label}, expires {expiry} ({skipped} card"
            f"{'s' if skipped > 1 else ''} before it declined and will be skipped).",
        )
    return Check(CheckName.CARD_USABLE, True, f"{card.label}, expires {expiry}.")


def _retry_waits(active: ReloadAttempt, now: datetime) -> bool:
    return (
        active.status is AttemptStatus.PENDING
        and active.retry_number > 0
        and active.not_before is not None
        and active.not_before > now
    )


def _no_retry_waiting(active: ReloadAttempt | None, now: datetime) -> Check:
    if active is None or not _retry_waits(active, now) or active.not_before is None:
        return Check(CheckName.NO_RETRY_WAITING, True, "No declined charge waits for a retry.")
    return Check(
        CheckName.NO_RETRY_WAITING,
        False,
        f"Retry {active.retry_number} of a declined auto-reload waits until "
        f"{iso(active.not_before)}.",
    )
