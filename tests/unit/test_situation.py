"""Fast tier: which Auto Reload state the owner sees, first match wins:
off → suspended → action_required → blocked → retrying → active."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from refill.reload.attempt import ReloadAttempt
from refill.reload.settings import AutoReloadSettings
from refill.reload.situation import AutoReloadState, Failure, state_of
from refill.reload.states import AttemptStatus, SettingsStatus, Trigger

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
DECLINED = Failure("insufficient_funds", "Your card has insufficient funds.", NOW)


def settings(
    status: SettingsStatus = SettingsStatus.ACTIVE, *, blocked: bool = False
) -> AutoReloadSettings:
    return AutoReloadSettings(
        enabled=status is not SettingsStatus.OFF,
        threshold=20_000_000,
        reload_amount=50_000_000,
        payment_method_id="pm_1",
        status=status,
        blocked_rail="daily_limit" if blocked else None,
        blocked_until=LATER if blocked else None,
    )


def attempt(
    status: AttemptStatus, *, retry: int = 0, not_before: datetime | None = None
) -> ReloadAttempt:
    return ReloadAttempt(
        id="rld_1",
        agency_id="agc_1",
        trigger=Trigger.AUTO,
        status=status,
        amount=50_000_000,
        currency="USD",
        payment_method_id="pm_1",
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


WAITING_RETRY = attempt(AttemptStatus.PENDING, retry=1, not_before=LATER)
THREE_D_SECURE = attempt(AttemptStatus.REQUIRES_ACTION)


@pytest.mark.parametrize(
    ("saved", "active", "failure", "state"),
    [
        pytest.param(settings(SettingsStatus.OFF), THREE_D_SECURE, DECLINED, "off", id="off-first"),
        pytest.param(
            settings(SettingsStatus.SUSPENDED),
            THREE_D_SECURE,
            DECLINED,
            "suspended",
            id="suspended",
        ),
        pytest.param(
            settings(blocked=True), THREE_D_SECURE, None, "action_required", id="3ds-before-rail"
        ),
        pytest.param(settings(blocked=True), WAITING_RETRY, DECLINED, "blocked", id="rail"),
        pytest.param(settings(), WAITING_RETRY, DECLINED, "retrying", id="retrying"),
        pytest.param(
            settings(),
            attempt(AttemptStatus.PENDING, retry=1, not_before=NOW - timedelta(seconds=1)),
            DECLINED,
            "active",
            id="a-retry-that-is-due-is-being-tried",
        ),
        pytest.param(
            settings(), attempt(AttemptStatus.CHARGING), None, "active", id="charging-is-active"
        ),
        pytest.param(settings(), None, None, "active", id="all-well"),
    ],
)
def test_the_first_state_that_applies_is_the_one_shown(
    saved: AutoReloadSettings,
    active: ReloadAttempt | None,
    failure: Failure | None,
    state: str,
) -> None:
    shown = state_of(saved, active, failure, NOW)

    assert shown.state is AutoReloadState(state)
    assert shown.last_failure == failure


def test_retrying_says_when_and_which_reload_waits() -> None:
    shown = state_of(settings(), WAITING_RETRY, DECLINED, NOW)

    assert (shown.next_retry_at, shown.waiting_reload_id) == (LATER, "rld_1")


def test_a_rail_that_has_lifted_is_no_block() -> None:
    shown = state_of(settings(blocked=True), None, None, LATER + timedelta(seconds=1))

    assert (shown.state, shown.blocked) == (AutoReloadState.ACTIVE, None)
