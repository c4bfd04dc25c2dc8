"""The replay of recorded usage against settings, pure, against hand-computed answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from refill.reload.policy import ReloadPolicy
from refill.reload.replay import Movement, Replay, SettingsFrom, replay
from refill.reload.settings import AutoReloadSettings
from refill.reload.states import Mode, SettingsStatus

pytestmark = pytest.mark.unit

START = datetime(2026, 12, 1, tzinfo=UTC)
USD = 1_000_000
UTC_ZONE = ZoneInfo("UTC")


def settings(**changes: object) -> AutoReloadSettings:
    base: dict[str, object] = {
        "enabled": True,
        "threshold": 20 * USD,
        "reload_amount": 50 * USD,
        "payment_method_id": "pm",
        "status": SettingsStatus.ACTIVE,
        "daily_limit": 10,
    }
    return AutoReloadSettings(**{**base, **changes})  # type: ignore[arg-type]


def usage(hours: float, amount: int) -> Movement:
    return Movement(START + timedelta(hours=hours), -amount * USD, usage=True)


def run(
    timeline: list[SettingsFrom], moves: list[Movement], *, opening: int, hours: int = 24
) -> Replay:
    return replay(
        ReloadPolicy(),
        timeline,
        moves,
        start=START,
        end=START + timedelta(hours=hours),
        opening_balance=opening * USD,
        currency="USD",
        zone=UTC_ZONE,
    )


def test_crossing_the_threshold_reloads_once_at_that_moment() -> None:
    # 25 → 15 (reload 50 → 65) → 55 → 45
    out = run(
        [SettingsFrom(START, settings())], [usage(1, 10), usage(2, 10), usage(3, 10)], opening=25
    )
    assert out.reloads == [(START + timedelta(hours=1), 50 * USD)]
    assert out.lowest_balance == 15 * USD
    assert out.series[-1] == (START + timedelta(hours=24), 45 * USD)


def test_target_mode_tops_up_to_the_target() -> None:
    target = settings(mode=Mode.TARGET, target_balance=60 * USD, reload_amount=None)
    out = run([SettingsFrom(START, target)], [usage(1, 7)], opening=25)
    assert out.reloads == [(START + timedelta(hours=1), 42 * USD)]


def test_usage_the_wallet_cannot_cover_is_refused_and_counts_hours_without_credits() -> None:
    off = settings(enabled=False, status=SettingsStatus.OFF)
    out = run([SettingsFrom(START, off)], [usage(2, 10), usage(3, 1)], opening=10)
    assert out.refused_calls == 1
    assert out.reloads == []
    assert out.hours_without_credits == 22.0


def test_the_daily_limit_blocks_until_midnight_then_the_wallet_reloads_at_once() -> None:
    one_a_day = settings(daily_limit=1)
    moves = [usage(1, 10), usage(2, 50), usage(3, 10)]  # 25→15 (+50=65)→15 (blocked)→5
    out = run([SettingsFrom(START, one_a_day)], moves, opening=25, hours=30)
    midnight = START + timedelta(days=1)
    assert out.reloads == [
        (START + timedelta(hours=1), 50 * USD),
        (midnight, 50 * USD),
    ]
    block = out.blocked_by_rail
    assert block is not None
    assert (block.rail, block.at, block.until) == (
        "daily_limit",
        START + timedelta(hours=2),
        midnight,
    )


def test_settings_change_at_their_moment_in_the_timeline() -> None:
    later = settings(threshold=5 * USD, reload_amount=10 * USD)
    timeline = [
        SettingsFrom(START, settings(enabled=False, status=SettingsStatus.OFF)),
        SettingsFrom(START + timedelta(hours=5), later),
    ]
    out = run(timeline, [usage(1, 16), usage(6, 6)], opening=25)  # 9, then 3 < 5
    assert out.reloads == [(START + timedelta(hours=6), 10 * USD)]
