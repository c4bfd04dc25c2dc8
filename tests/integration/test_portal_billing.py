"""The billing page's read models and clock-bound rules, on SQLite and PostgreSQL, with a
clock the test moves: the balance chart, usage by subteam, card expiry flags, sessions
that end when idle or old."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import bindparam, text

from refill import services
from refill.bootstrap import Refill, build
from refill.clock import FrozenClock
from refill.config import Settings
from refill.db.database import Tx
from refill.db.schema import UTCDateTime
from refill.gateway.sandbox import SandboxGateway
from refill.money import parse_amount
from refill.reload.settings import SettingsChange
from refill.roles import MemberRole
from refill.services import history as read_models
from refill.services import members
from refill.web import create_app
from tests.support.portal import PASSWORD, sign_in

START = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)


@dataclass
class World:
    refill: Refill
    clock: FrozenClock
    agency_id: str
    owner_email: str

    def use(self, subteam_id: str, amount: str, reference: str) -> None:
        services.record_usage(
            self.refill.db,
            agency_id=self.agency_id,
            subteam_id=subteam_id,
            amount=parse_amount(amount),
            reference=reference,
        )


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    clock = FrozenClock(START)
    refill = build(
        Settings(database_url=db_url),
        gateway=SandboxGateway(clock),
        clock=clock,
        in_process_worker=False,
    )
    refill.process_new_attempts_inline()
    agency, _ = services.create_agency(refill.db, name="Clockwork Calls")
    members.add_member(
        refill.db,
        agency_id=agency.id,
        email="owner@clockwork.test",
        role=MemberRole.OWNER,
        password=PASSWORD,
        actor="test",
    )
    yield World(refill, clock, agency.id, "owner@clockwork.test")
    refill.close()


def test_the_chart_has_the_balance_at_each_hour_the_opening_balance_and_reload_marks(
    world: World,
) -> None:
    db = world.refill.db
    sales = services.create_subteam(db, agency_id=world.agency_id, name="Sales").id
    services.grant_credits(db, agency_id=world.agency_id, amount=100_000_000, reference="g1")
    world.clock.advance(timedelta(days=40))  # 2026-02-10 10:30: the grant is before the window
    world.use(sales, "10.00", "u1")  # 90
    world.clock.advance(timedelta(hours=2))  # 12:30
    world.use(sales, "5.00", "u2")  # 85
    world.use(sales, "5.00", "u3")  # 80: the last of the hour counts
    card, _ = services.save_payment_method(
        db, world.refill.gateway, agency_id=world.agency_id, token="pm_card_visa", actor="test"
    )
    services.add_credits(
        db,
        world.refill.processor,
        agency_id=world.agency_id,
        currency="USD",
        amount=50_000_000,
        payment_method_id=card.id,
        request_key=None,
    )  # 130
    world.clock.advance(timedelta(hours=1, minutes=15))  # 13:45

    history = read_models.balance_history(db, agency_id=world.agency_id)

    at = {point.at: point.balance for point in history.points}
    feb10 = datetime(2026, 2, 10, tzinfo=UTC)
    assert history.points[0] == read_models.BalancePoint(history.since, 100_000_000)
    assert history.points[-1] == read_models.BalancePoint(history.until, 130_000_000)
    assert [at[feb10.replace(hour=h)] for h in (10, 11, 12, 13)] == [
        100_000_000,
        90_000_000,
        90_000_000,
        130_000_000,
    ]
    # The start, every whole hour until a day ago, that moment, every five minutes since, now.
    assert len(history.points) == 1 + 29 * 24 + 1 + (24 * 12 - 1) + 1
    assert all(
        later.at - earlier.at <= timedelta(minutes=5)
        for earlier, later in zip(history.points[-289:-1], history.points[-288:], strict=True)
    )
    [mark] = history.reloads
    assert (mark.trigger, mark.status, mark.amount, mark.balance_after) == (
        "manual",
        "succeeded",
        50_000_000,
        130_000_000,
    )


def test_usage_by_subteam_sums_the_last_30_days_biggest_first_with_names(world: World) -> None:
    db = world.refill.db
    services.grant_credits(db, agency_id=world.agency_id, amount=500_000_000, reference="g1")
    support = services.create_subteam(db, agency_id=world.agency_id, name="Support").id
    sales = services.create_subteam(db, agency_id=world.agency_id, name="Sales").id
    services.create_subteam(db, agency_id=world.agency_id, name="Quiet Team")
    world.use(sales, "100.00", "old")  # falls out of the window below
    world.clock.advance(timedelta(days=31))
    world.use(support, "1.50", "s1")
    world.use(support, "2.25", "s2")
    world.use(sales, "1.00", "n1")

    usage = read_models.usage_by_subteam(db, agency_id=world.agency_id)

    assert [(u.name, u.amount, u.events) for u in usage] == [
        ("Support", 3_750_000, 2),
        ("Sales", 1_000_000, 1),
        ("Quiet Team", 0, 0),
    ]


def test_the_charts_balance_lookup_seeks_the_agency_and_time_index(world: World) -> None:
    db = world.refill.db
    seek = read_models._seek(world.agency_id, bindparam("at", type_=UTCDateTime()))
    compiled = seek.compile(db.engine)
    values = compiled.construct_params({"at": START})

    def plan(tx: Tx) -> str:
        if tx.dialect == "postgresql":
            tx.conn.execute(text("SET LOCAL enable_seqscan = off"))  # a tiny table: force it
            rows = tx.conn.exec_driver_sql(f"EXPLAIN {compiled}", values).all()
        else:
            args = tuple(values[name] for name in compiled.positiontup or [])
            args = tuple(a.replace(tzinfo=None) if isinstance(a, datetime) else a for a in args)
            rows = tx.conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", args).all()
        return " ".join(str(value) for row in rows for value in row)

    assert "ix_transfers_agency_created" in db.read(plan)


@pytest.mark.parametrize(
    ("today", "flag"),
    [
        pytest.param(datetime(2026, 6, 1, tzinfo=UTC), None, id="years-left"),
        pytest.param(datetime(2030, 11, 20, tzinfo=UTC), None, id="41-days-left"),
        pytest.param(datetime(2030, 12, 5, tzinfo=UTC), "Expires soon", id="26-days-left"),
        pytest.param(datetime(2031, 1, 1, tzinfo=UTC), "Expired", id="expired"),
    ],
)
def test_cards_are_flagged_when_they_expire_within_30_days_or_have_expired(
    world: World, today: datetime, flag: str | None
) -> None:
    # Saved on 2026-01-01, a sandbox card expires at the end of December 2030.
    services.save_payment_method(
        world.refill.db,
        world.refill.gateway,
        agency_id=world.agency_id,
        token="pm_card_visa",
        actor="test",
    )
    world.clock.advance(today - world.clock.now())
    with TestClient(create_app(world.refill)) as client:
        assert sign_in(client, world.owner_email).status_code == 303
        page = client.get("/portal/team/billing").text

    card = page.split('data-testid="card"')[1].split("</li>")[0]
    assert "expires 12/2030" in card
    assert ("Expires soon" in card, "Expired" in card) == (
        flag == "Expires soon",
        flag == "Expired",
    )


@pytest.mark.parametrize(
    ("steps", "signed_in"),
    [
        pytest.param([timedelta(hours=11, minutes=59)], True, id="idle-just-under-12h"),
        pytest.param([timedelta(hours=12, minutes=1)], False, id="idle-over-12h"),
        pytest.param([timedelta(hours=11)] * 15, True, id="in-use-for-6-days"),
        pytest.param([timedelta(hours=11)] * 16, False, id="in-use-past-7-days"),
    ],
)
def test_a_session_ends_after_12_hours_idle_or_7_days_in_all(
    world: World, steps: list[timedelta], signed_in: bool
) -> None:
    with TestClient(create_app(world.refill)) as client:
        assert sign_in(client, world.owner_email).status_code == 303
        for step in steps:
            world.clock.advance(step)
            page = client.get("/portal/team/billing", follow_redirects=False)

    assert page.status_code == (200 if signed_in else 303)


def test_a_reload_stopped_by_the_daily_limit_shows_the_rail_and_until_when(world: World) -> None:
    db = world.refill.db
    sales = services.create_subteam(db, agency_id=world.agency_id, name="Sales").id
    card, _ = services.save_payment_method(
        db, world.refill.gateway, agency_id=world.agency_id, token="pm_card_visa", actor="test"
    )
    services.grant_credits(db, agency_id=world.agency_id, amount=25_000_000, reference="g1")
    services.update_auto_reload(
        db,
        world.refill.gateway,
        world.refill.policy,
        agency_id=world.agency_id,
        currency="USD",
        change=SettingsChange(
            enabled=True,
            threshold=20_000_000,
            reload_amount=25_000_000,
            payment_method_id=card.id,
            daily_limit=1,
        ),
        actor="test",
    )
    world.use(sales, "6.00", "u1")  # 19.00: the day's one reload -> 44.00
    world.use(sales, "25.00", "u2")  # 19.00 again: the daily limit stops the second

    with TestClient(create_app(world.refill)) as client:
        assert sign_in(client, world.owner_email).status_code == 303
        page = client.get("/portal/team/billing").text

    assert 'data-state="blocked"' in page
    assert (
        "Auto Reload is paused by your daily reload limit</strong> until 2026-01-02 00:00 (UTC)"
        in page
    )
    assert 'href="#auto-reload">Raise the limit</a>' in page
    rows = page.split('data-testid="reload-row"')[1:]
    assert "Blocked" in rows[0]
    assert "daily reload limit" in rows[0]
    assert "Succeeded" in rows[1]


@pytest.mark.parametrize(
    ("floor", "hold", "service"),
    [
        pytest.param(None, None, "Subteams can take calls", id="credits"),
        pytest.param(None, "6.00", "Subteams can take calls", id="some-held"),
        pytest.param(None, "10.00", "Every credit is held by live calls", id="all-held"),
        pytest.param("5.00", "6.00", "Below your minimum call balance of $5.00", id="floor"),
    ],
)
def test_the_wallet_card_says_what_live_calls_hold_and_whether_new_calls_go_through(
    world: World, floor: str | None, hold: str | None, service: str
) -> None:
    db = world.refill.db
    sales = services.create_subteam(db, agency_id=world.agency_id, name="Sales").id
    services.grant_credits(db, agency_id=world.agency_id, amount=10_000_000, reference="g1")
    if floor is not None:
        services.update_agency(
            db,
            agency_id=world.agency_id,
            change=services.AgencyChange(min_call_balance=parse_amount(floor)),
            actor="test",
        )
    if hold is not None:
        services.authorize_call(
            db,
            agency_id=world.agency_id,
            subteam_id=sales,
            expected_cost=parse_amount(hold),
            hold=True,
        )
    with TestClient(create_app(world.refill)) as client:
        assert sign_in(client, world.owner_email).status_code == 303
        page = client.get("/portal/team/billing").text
    assert service in page
    if hold is None:
        assert 'data-testid="held"' not in page
    else:
        assert f"${hold} held by live calls" in page
