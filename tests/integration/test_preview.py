"""The backtest before saving, on SQLite and PostgreSQL.

The oracle: three days of generated usage run through the live path on a frozen clock
(reloads processed as they happen, the poller run every step, the settings changed twice
and a daily limit met), then replayed with the settings the audit log says were in
effect: the replay must find exactly the reloads that happened, when they happened, for
the amounts charged, and the rail's block when it happened.
"""

from __future__ import annotations

import contextlib
import random
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from refill import services
from refill.bootstrap import Refill
from refill.clock import FrozenClock
from refill.db.schema import reload_attempts, transfers
from refill.errors import InsufficientCredits
from refill.reload.settings import SettingsChange
from refill.reload.states import Mode
from refill.services import preview as previews
from tests.support.subteam_api import Agency, assert_problem

STEP = timedelta(minutes=10)


@pytest.fixture
def acme(frozen_client: TestClient, frozen_refill: Refill, clock: FrozenClock) -> Agency:
    # New York: its midnight (05:00 UTC) falls on a step, where the poller lifts a block.
    agency = Agency.open(frozen_client, frozen_refill, clock, timezone="America/New_York")
    agency.subteam("Sales")
    agency.grant(30_000_000)
    return agency


def settle(acme: Agency, **settings: Any) -> None:
    services.update_auto_reload(
        acme.refill.db,
        acme.refill.gateway,
        acme.refill.policy,
        agency_id=acme.agency_id,
        currency="USD",
        change=SettingsChange(**settings),
        actor="test",
    )


def live_days(acme: Agency, days: int, *, seed: int) -> None:
    """Usage every 10 minutes (0.10 to 3.00), the poller run before each step, the
    settings changed on the second day and a daily limit of 3 on the third."""
    rng = random.Random(seed)
    refill = acme.refill
    card = acme.ok("POST", "/v1/payment-methods", {"token": "pm_card_visa"})["id"]
    settle(
        acme, enabled=True, threshold=20_000_000, reload_amount=50_000_000, payment_method_id=card
    )
    steps = int(timedelta(days=days) / STEP)
    for i in range(steps):
        if i == steps // 3:
            settle(acme, mode=Mode.TARGET, threshold=15_000_000, target_balance=60_000_000)
        if i == 2 * steps // 3:
            settle(acme, daily_limit=3)
        acme.clock.advance(STEP)
        refill.processor.run_due_work()
        amount = rng.randint(10, 300) * 10_000
        with contextlib.suppress(InsufficientCredits):  # blocked and dry: refused, unrecorded
            services.record_usage(
                refill.db,
                agency_id=acme.agency_id,
                subteam_id=acme.subteams["Sales"],
                amount=amount,
                reference=f"u{i}",
            )


def real_reloads(acme: Agency) -> list[tuple[Any, int]]:
    def read(tx: Any) -> list[tuple[Any, int]]:
        rows = tx.conn.execute(
            select(transfers.c.created_at, transfers.c.amount)
            .where(transfers.c.agency_id == acme.agency_id, transfers.c.kind == "auto_reload")
            .order_by(transfers.c.id)
        )
        return [(at, int(amount)) for at, amount in rows]

    return list(acme.refill.db.read(read))


def first_block(acme: Agency) -> Any:
    return acme.refill.db.read(
        lambda tx: tx.conn.execute(
            select(reload_attempts.c.created_at)
            .where(
                reload_attempts.c.agency_id == acme.agency_id,
                reload_attempts.c.status == "blocked",
            )
            .order_by(reload_attempts.c.created_at)
            .limit(1)
        ).scalar()
    )


def test_replaying_the_settings_really_in_effect_finds_the_reloads_that_happened(
    acme: Agency,
) -> None:
    start = acme.clock.now()
    live_days(acme, 3, seed=7)
    happened = real_reloads(acme)
    assert len(happened) >= 5, happened  # the scene reloads in both modes
    assert first_block(acme) is not None  # and meets the daily limit

    result = previews.preview(
        acme.refill.db,
        acme.refill.policy,
        agency_id=acme.agency_id,
        currency="USD",
        change=SettingsChange(),
        days=4,
    )
    as_was = result.as_was
    assert as_was.reloads == [(at, amount) for at, amount in happened if at >= start]
    assert as_was.refused_calls == 0
    assert as_was.blocked_by_rail is not None
    assert as_was.blocked_by_rail.at == first_block(acme)
    assert as_was.series[-1][1] == int(acme.wallet()["balance"].replace(".", "")) * 10_000


def test_a_preview_changes_nothing_and_shows_what_other_settings_would_have_done(
    acme: Agency,
) -> None:
    live_days(acme, 1, seed=3)
    before = (acme.wallet(), len(acme.transfers()), acme.audit())
    body = {
        "mode": "fixed",
        "threshold": "5.00",
        "reload_amount": "10.00",
        "daily_limit": 50,
        "days": 2,
    }
    answer = acme.ok("POST", "/v1/wallet/auto-reload/preview", body)
    assert (acme.wallet(), len(acme.transfers()), acme.audit()) == before

    # Smaller reloads without the daily limit of 3: more of them, and no day without.
    assert answer["reloads"] > answer["as_was"]["reloads"]
    assert answer["blocked_by_rail"] is None
    assert answer["as_was"]["blocked_by_rail"]["rail"] == "daily_limit"
    assert answer["note"].startswith("Replays the usage Refill recorded")
    assert answer["series"][0]["at"] == answer["start"]
    assert answer["series"][-1]["at"] == answer["end"]
    # Not before the wallet opened (a day ago): every hour from then, and the end.
    assert len(answer["series"]) == 24 + 1 + 1
    # Both replays begin from the balance the wallet had then.
    assert answer["opening_balance"] == answer["series"][0]["balance"]
    assert answer["as_was"]["series"][0]["balance"] == answer["opening_balance"]


def test_settings_that_could_not_save_are_refused_422_and_nothing_is_replayed(
    acme: Agency,
) -> None:
    refused = acme.call(
        "POST", "/v1/wallet/auto-reload/preview", {"threshold": "50.00", "reload_amount": "10.00"}
    )
    body = assert_problem(refused, 422, "invalid_auto_reload_settings")
    assert body["field"] == "reload_amount"
    assert_problem(
        acme.call("POST", "/v1/wallet/auto-reload/preview", {"days": 91}), 422, "validation_error"
    )
