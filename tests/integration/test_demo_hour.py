"""The demo left alone: `refill serve --demo`'s own traffic and settings, on a fast clock,
keep its subteams taking calls for more than a simulated hour without meeting a rail."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from refill.bootstrap import Refill, build
from refill.clock import FrozenClock
from refill.config import Settings
from refill.db.schema import reload_attempts
from refill.demo import DemoTraffic, seed_demo
from refill.reload.states import AttemptStatus

SIMULATED = timedelta(hours=1, minutes=10)


@pytest.fixture
def demo_service(db_url: str) -> Iterator[tuple[Refill, FrozenClock]]:
    clock = FrozenClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    service = build(Settings(database_url=db_url), clock=clock, in_process_worker=False)
    service.process_new_attempts_inline()
    yield service, clock
    service.close()


def test_the_demo_left_alone_for_an_hour_refuses_no_call_and_meets_no_rail(
    demo_service: tuple[Refill, FrozenClock],
) -> None:
    refill, clock = demo_service
    demo = seed_demo(refill)
    traffic = DemoTraffic(refill, demo)
    refused = 0
    elapsed = timedelta(0)
    while elapsed < SIMULATED:
        clock.advance(timedelta(seconds=traffic.interval))
        elapsed += timedelta(seconds=traffic.interval)
        refused += not traffic.place_call()

    def count(status: AttemptStatus) -> int:
        return int(
            refill.db.read(
                lambda tx: tx.conn.execute(
                    select(func.count()).where(reload_attempts.c.status == status)
                ).scalar_one()
            )
        )

    assert traffic.calls == SIMULATED // timedelta(seconds=traffic.interval)
    assert refused == 0
    assert count(AttemptStatus.BLOCKED) == 0
    # It did reload, about eleven times an hour, each credited.
    assert count(AttemptStatus.SUCCEEDED) >= 8
    assert count(AttemptStatus.FAILED) == 0
