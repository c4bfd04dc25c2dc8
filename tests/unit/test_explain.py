"""Fast tier: "why didn't it reload?" The trigger rule evaluated now, itemized: each case's
verdict, the checks that did not pass and what they say; and, for any generated input,
a verdict that agrees with ``trigger.decide``."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refill.cards import PaymentMethod
from refill.reload.attempt import ReloadAttempt
from refill.reload.explain import CheckName, Explanation, Verdict, explain
from refill.reload.policy import ReloadPolicy
from refill.reload.settings import AutoReloadSettings
from refill.reload.states import (
    ACTIVE_STATUSES,
    AttemptStatus,
    DecisionAction,
    Mode,
    SettingsStatus,
    Trigger,
)
from refill.reload.trigger import RailCounts, decide

UNIT = 1_000_000
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
DAY_ENDS = datetime(2026, 6, 16, tzinfo=UTC)
MONTH_ENDS = datetime(2026, 7, 1, tzinfo=UTC)
POLICY = ReloadPolicy()
C = CheckName


def saved(**change: Any) -> AutoReloadSettings:
    base = AutoReloadSettings(
        enabled=True,
        threshold=20 * UNIT,
        reload_amount=50 * UNIT,
        payment_method_id="pay_1",
        status=SettingsStatus.ACTIVE,
    )
    return replace(base, **change)


def card(exp_month: int = 12, exp_year: int = 2030) -> PaymentMethod:
    return PaymentMethod(
        "pay_1", "agc_1", "sandbox", "pm_card_visa", "visa", "4242", exp_month, exp_year, NOW
    )


def attempt(
    status: AttemptStatus, *, retry: int = 0, not_before: datetime | None = None
) -> ReloadAttempt:
    return ReloadAttempt(
        id="rld_1",
        agency_id="agc_1",
        trigger=Trigger.AUTO,
        status=status,
        amount=50 * UNIT,
        currency="USD",
        payment_method_id="pay_1",
        idempotency_key="k",
        gateway_payment_id=None,
        failure_code=None,
        failure_message=None,
        not_before=not_before,
        previous_attempt_id=None,
        retry_number=retry,
        next_action=None,
        blocked_until=None,
        created_at=NOW,
        updated_at=NOW,
    )


def rails(today: int = 0, month: int = 0) -> RailCounts:
    return RailCounts(today, month, DAY_ENDS, MONTH_ENDS)


def explained(
    settings_: AutoReloadSettings | None = None,
    *,
    available: int = 5 * UNIT,
    active: ReloadAttempt | None = None,
    counted: RailCounts | None = None,
    on_file: PaymentMethod | None = None,
    removed: bool = False,
    no_card: bool = False,
) -> Explanation:
    return explain(
        POLICY,
        settings_ or saved(),
        available=available,
        currency="USD",
        active=active,
        rails=counted or rails(),
        card=None if no_card else (on_file or card()),
        card_removed=removed,
        now=NOW,
    )


CASES = [
    pytest.param(
        explained(saved(enabled=False, status=SettingsStatus.OFF)),
        Verdict.OFF,
        {C.ENABLED},
        (C.ENABLED, "Auto Reload is off."),
        id="off",
    ),
    pytest.param(
        explained(
            saved(
                status=SettingsStatus.SUSPENDED, suspended_reason="the card expired (expired_card)"
            )
        ),
        Verdict.SUSPENDED,
        {C.NOT_SUSPENDED},
        (C.NOT_SUSPENDED, "Auto Reload was suspended: the card expired (expired_card)."),
        id="suspended-with-reason",
    ),
    pytest.param(
        explained(available=25 * UNIT),
        Verdict.NOT_NEEDED,
        {C.BELOW_THRESHOLD},
        (
            C.BELOW_THRESHOLD,
            "Available credits (25.00 USD) are not below the threshold (20.00 USD).",
        ),
        id="above-threshold",
    ),
    pytest.param(
        explained(available=20 * UNIT),
        Verdict.NOT_NEEDED,
        {C.BELOW_THRESHOLD},
        (
            C.BELOW_THRESHOLD,
            "Available credits (20.00 USD) are not below the threshold (20.00 USD).",
        ),
        id="at-threshold-is-not-below",
    ),
    pytest.param(
        explained(available=5_500_000),
        Verdict.WOULD_RELOAD,
        set(),
        (C.BELOW_THRESHOLD, "Available credits (5.50 USD) are below the threshold (20.00 USD)."),
        id="below-threshold-would-reload",
    ),
    pytest.param(
        explained(saved(mode=Mode.TARGET, target_balance=100 * UNIT), available=5_500_000),
        Verdict.WOULD_RELOAD,
        set(),
        (C.ENABLED, "Auto Reload is on: a reload now would charge 94.50 USD."),
        id="target-mode-names-the-charge",
    ),
    pytest.param(
        explained(active=attempt(AttemptStatus.CHARGING)),
        Verdict.RELOAD_IN_PROGRESS,
        {C.NO_ACTIVE_ATTEMPT},
        (C.NO_ACTIVE_ATTEMPT, "Auto-reload rld_1 is charging."),
        id="active-attempt-charging",
    ),
    pytest.param(
        explained(active=attempt(AttemptStatus.REQUIRES_ACTION)),
        Verdict.RELOAD_IN_PROGRESS,
        {C.NO_ACTIVE_ATTEMPT},
        (
            C.NO_ACTIVE_ATTEMPT,
            "Auto-reload rld_1 is waiting for the owner to authenticate it (requires_action).",
        ),
        id="active-attempt-3-d-secure",
    ),
    pytest.param(
        explained(
            active=attempt(AttemptStatus.PENDING, retry=1, not_before=NOW + timedelta(hours=1))
        ),
        Verdict.WAITING_FOR_RETRY,
        {C.NO_ACTIVE_ATTEMPT, C.NO_RETRY_WAITING},
        (C.NO_RETRY_WAITING, "Retry 1 of a declined auto-reload waits until 2026-06-15T13:00:00Z."),
        id="retry-waiting-until-T",
    ),
    pytest.param(
        explained(
            active=attempt(AttemptStatus.PENDING, retry=1, not_before=NOW - timedelta(seconds=1))
        ),
        Verdict.RELOAD_IN_PROGRESS,
        {C.NO_ACTIVE_ATTEMPT},
        (C.NO_RETRY_WAITING, "No declined charge waits for a retry."),
        id="a-retry-that-is-due-is-in-progress",
    ),
    pytest.param(
        explained(saved(daily_limit=3), counted=rails(today=3)),
        Verdict.BLOCKED,
        {C.NOT_BLOCKED},
        (
            C.NOT_BLOCKED,
            "The daily reload limit stops a reload until 2026-06-16T00:00:00Z: 3 auto-reloads "
            "today reached the daily limit of 3.",
        ),
        id="blocked-by-daily-limit-until-midnight",
    ),
    pytest.param(
        explained(saved(monthly_cap=100 * UNIT), counted=rails(month=60 * UNIT)),
        Verdict.BLOCKED,
        {C.NOT_BLOCKED},
        (
            C.NOT_BLOCKED,
            "The monthly spending cap stops a reload until 2026-07-01T00:00:00Z: reloading 50.00 "
            "would pass this month's cap of 100.00 USD (60.00 already reloaded).",
        ),
        id="blocked-by-monthly-cap-until-next-month",
    ),
    pytest.param(
        explained(saved(blocked_rail="daily_limit", blocked_until=DAY_ENDS)),
        Verdict.PAUSED_BY_LIMIT,
        {C.NOT_BLOCKED},
        (C.NOT_BLOCKED, "Paused by the daily reload limit until 2026-06-16T00:00:00Z."),
        id="paused-by-the-rail-an-earlier-reload-hit",
    ),
    pytest.param(
        explained(saved(blocked_rail="daily_limit", blocked_until=NOW)),
        Verdict.WOULD_RELOAD,
        set(),
        (C.NOT_BLOCKED, "No safety limit holds reloads."),
        id="a-rail-that-has-lifted",
    ),
    pytest.param(
        explained(saved(daily_limit=3), available=25 * UNIT, counted=rails(today=3)),
        Verdict.NOT_NEEDED,
        {C.BELOW_THRESHOLD, C.NOT_BLOCKED},
        (
            C.NOT_BLOCKED,
            "The daily reload limit stops a reload until 2026-06-16T00:00:00Z: 3 auto-reloads "
            "today reached the daily limit of 3.",
        ),
        id="a-full-rail-shows-before-a-reload-is-due",
    ),
    pytest.param(
        explained(on_file=card(exp_month=5, exp_year=2026)),
        Verdict.WOULD_RELOAD,
        {C.CARD_USABLE},
        (C.CARD_USABLE, "Visa ending 4242 expired at the end of 05/2026."),
        id="card-expired-decide-still-reloads",
    ),
    pytest.param(
        explained(on_file=card(exp_month=6, exp_year=2026), available=25 * UNIT),
        Verdict.NOT_NEEDED,
        {C.BELOW_THRESHOLD},
        (C.CARD_USABLE, "Visa ending 4242, expires 06/2026."),
        id="card-works-to-the-end-of-its-month",
    ),
    pytest.param(
        explained(removed=True),
        Verdict.WOULD_RELOAD,
        {C.CARD_USABLE},
        (C.CARD_USABLE, "Visa ending 4242 was removed."),
        id="card-removed",
    ),
    pytest.param(
        explained(saved(payment_method_id=None), no_card=True),
        Verdict.CARD_UNUSABLE,
        {C.CARD_USABLE},
        (C.CARD_USABLE, "No card is chosen for Auto Reload."),
        id="no-card",
    ),
    pytest.param(
        explained(saved(threshold=None)),
        Verdict.INCOMPLETE,
        {C.ENABLED, C.BELOW_THRESHOLD},
        (C.ENABLED, "Auto Reload is on but has no minimum threshold."),
        id="no-threshold",
    ),
    pytest.param(
        explained(saved(reload_amount=None)),
        Verdict.INCOMPLETE,
        {C.ENABLED},
        (C.ENABLED, "Auto Reload is on but has no reload amount."),
        id="no-reload-amount",
    ),
]


@pytest.mark.parametrize(("shown", "verdict", "failed", "said"), CASES)
def test_the_verdict_names_why_and_only_the_conditions_that_stop_a_reload_fail(
    shown: Explanation, verdict: Verdict, failed: set[CheckName], said: tuple[CheckName, str]
) -> None:
    name, detail = said

    assert shown.verdict is verdict
    assert set(shown.failed) == failed
    assert shown.check(name).detail == detail
    assert shown.evaluated_at == NOW


def test_every_explanation_lists_the_seven_checks_in_order() -> None:
    shown = explained()

    assert [c.name for c in shown.checks] == [
        "enabled",
        "below_threshold",
        "no_active_attempt",
        "not_suspended",
        "not_blocked",
        "card_usable",
        "no_retry_waiting",
    ]
    assert all(c.label and c.detail.endswith(".") for c in shown.checks)


def test_a_reload_due_on_an_expired_card_says_it_would_be_declined() -> None:
    shown = explained(on_file=card(exp_month=5, exp_year=2026))

    assert (
        shown.summary == "A reload would start now. The card may be declined: choose another one."
    )
    assert explained().summary == "A reload would start now."


# --- the verdict agrees with trigger.decide, for any input ---------------------------------

# The check that fails for each verdict that is not a reload: the reason it names.
EXPLAINED_BY = {
    Verdict.BLOCKED: C.NOT_BLOCKED,
    Verdict.OFF: C.ENABLED,
    Verdict.SUSPENDED: C.NOT_SUSPENDED,
    Verdict.RELOAD_IN_PROGRESS: C.NO_ACTIVE_ATTEMPT,
    Verdict.WAITING_FOR_RETRY: C.NO_RETRY_WAITING,
    Verdict.PAUSED_BY_LIMIT: C.NOT_BLOCKED,
    Verdict.INCOMPLETE: C.ENABLED,
    Verdict.NOT_NEEDED: C.BELOW_THRESHOLD,
    Verdict.CARD_UNUSABLE: C.CARD_USABLE,
}

units = st.integers(0, 150).map(lambda u: u * UNIT)
moments = st.sampled_from([None, NOW - timedelta(minutes=1), NOW, NOW + timedelta(hours=1)])


def rarely_none(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """None one time in six: the settings an owner can save are mostly complete."""
    return st.integers(0, 5).flatmap(lambda k: st.none() if k == 0 else values)


@st.composite
def settings_strategy(draw: st.DrawFn) -> AutoReloadSettings:
    status = draw(st.sampled_from([SettingsStatus.ACTIVE] * 4 + list(SettingsStatus)))
    blocked_until = draw(rarely_none(moments))
    return AutoReloadSettings(
        # Saved settings keep enabled == (status != off); the rule reads only the status.
        enabled=draw(st.sampled_from([status is not SettingsStatus.OFF] * 5 + [True, False])),
        threshold=draw(rarely_none(st.integers(0, 60).map(lambda u: u * UNIT))),
        reload_amount=draw(rarely_none(st.integers(5, 100).map(lambda u: u * UNIT))),
        payment_method_id=draw(rarely_none(st.just("pay_1"))),
        status=status,
        suspended_reason=draw(st.none() | st.just("the card was declined")),
        mode=draw(st.sampled_from(list(Mode))),
        target_balance=draw(rarely_none(units)),
        monthly_cap=draw(st.none() | st.integers(1, 300).map(lambda u: u * UNIT)),
        daily_limit=draw(st.integers(1, 5)),
        blocked_rail=draw(st.sampled_from(["daily_limit", "monthly_cap"]))
        if blocked_until
        else None,
        blocked_until=blocked_until,
    )


actives = st.integers(0, 2).flatmap(
    lambda k: (
        st.builds(
            attempt, st.sampled_from(ACTIVE_STATUSES), retry=st.integers(0, 3), not_before=moments
        )
        if k == 0
        else st.none()
    )
)
counts = st.builds(rails, today=st.integers(0, 6), month=units)
cards = st.sampled_from([None, card(), card(), card(exp_month=5, exp_year=2026)])


@settings(max_examples=500, deadline=None)
@given(
    chosen=settings_strategy(),
    available=st.integers(0, 80 * UNIT),
    active=actives,
    counted=counts,
    on_file=cards,
    removed=st.booleans(),
)
def test_the_verdict_is_decides_answer_and_any_other_names_a_failed_check(
    chosen: AutoReloadSettings,
    available: int,
    active: ReloadAttempt | None,
    counted: RailCounts,
    on_file: PaymentMethod | None,
    removed: bool,
) -> None:
    shown = explain(
        POLICY,
        chosen,
        available=available,
        currency="USD",
        active=active,
        rails=counted,
        card=on_file,
        card_removed=removed,
        now=NOW,
    )
    decision = decide(
        POLICY,
        chosen,
        available=available,
        currency="USD",
        active_attempt=active is not None,
        rails=counted,
        now=NOW,
    )

    assert (shown.verdict is Verdict.WOULD_RELOAD) == (decision.action is DecisionAction.RELOAD)
    assert (shown.verdict is Verdict.BLOCKED) == (decision.action is DecisionAction.BLOCKED)
    if shown.verdict is not Verdict.WOULD_RELOAD:
        assert EXPLAINED_BY[shown.verdict] in shown.failed
    if not shown.failed:
        assert shown.verdict is Verdict.WOULD_RELOAD
    assert [c.name for c in shown.checks] == list(CheckName)
