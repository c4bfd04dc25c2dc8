"""The Auto Reload form's "Try them on my past usage", on SQLite and PostgreSQL: the
settings as typed are replayed beside what happened, nothing is saved, and settings that
could not be saved are named at their field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from refill import services
from refill.bootstrap import Refill
from refill.clock import FrozenClock
from refill.portal.preview import opening_words
from refill.reload.replay import Replay
from refill.reload.settings import NO_SETTINGS, SettingsChange
from refill.services import preview as previews
from tests.support.portal import Agency, make_agency, page_csrf, sign_in

FORM = "/portal/team/billing/auto-reload/preview"
USD = 1_000_000


@pytest.fixture
def owner(svc: Refill, api: TestClient, clock: FrozenClock) -> Agency:
    agency = make_agency(svc)
    sales = services.create_subteam(svc.db, agency_id=agency.id, name="Sales").id
    services.grant_credits(svc.db, agency_id=agency.id, amount=100 * USD, reference="g")
    for i in range(48):  # 2.00 an hour for two days: 96.00
        clock.advance(timedelta(hours=1))
        services.record_usage(
            svc.db, agency_id=agency.id, subteam_id=sales, amount=2 * USD, reference=f"u{i}"
        )
    assert sign_in(api, agency.owner_email).status_code == 303
    return agency


def saved(svc: Refill, agency: Agency) -> object:
    return services.get_wallet(svc.db, svc.policy, agency_id=agency.id).auto_reload


def test_trying_settings_shows_them_beside_what_happened_and_saves_nothing(
    svc: Refill, api: TestClient, owner: Agency
) -> None:
    before = saved(svc, owner)
    response = api.post(
        FORM,
        data={
            "csrf_token": page_csrf(api),
            "mode": "fixed",
            "threshold": "$20",
            "reload_amount": "30.00",
            "daily_limit": "10",
        },
    )
    assert response.status_code == 200, response.text[:500]
    page = response.text
    assert 'data-testid="backtest"' in page
    # From the wallet's opening, with the 100.00 granted then, 96.00 of usage: one reload
    # (below 20.00). What happened (no auto-reload): none.
    assert '<td data-testid="bt-reloads">1</td><td>0</td>' in page
    assert '<td data-testid="bt-charged">$30.00</td><td>$0.00</td>' in page
    assert "so this starts then, from its balance of $100.00.</p>" in page
    assert 'value="$20"' in page  # the form keeps what was typed, ready to save
    assert saved(svc, owner) == before
    assert 'id="backtest-data"' in page


def test_settings_that_could_not_be_saved_are_named_at_their_field(
    svc: Refill, api: TestClient, owner: Agency
) -> None:
    response = api.post(
        FORM,
        data={
            "csrf_token": page_csrf(api),
            "mode": "fixed",
            "threshold": "50",
            "reload_amount": "10",
            "daily_limit": "10",
        },
    )
    assert response.status_code == 422
    assert "The reload amount must be more than the threshold" in response.text
    assert 'data-testid="backtest"' not in response.text


def test_a_member_cannot_try_settings(svc: Refill, api: TestClient, owner: Agency) -> None:
    services.update_auto_reload(
        svc.db,
        svc.gateway,
        svc.policy,
        agency_id=owner.id,
        currency="USD",
        change=SettingsChange(threshold=5 * USD, reload_amount=10 * USD),
        actor="test",
    )
    api.cookies.clear()
    forged = api.post(FORM, data={"threshold": "5", "reload_amount": "10"}, follow_redirects=False)
    assert forged.status_code in (303, 403)
    assert 'data-testid="backtest"' not in forged.text


END = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("age", "opening", "first_reload", "said"),
    [
        pytest.param(timedelta(days=40), 0, None, None, id="older-than-the-days-no-words"),
        pytest.param(
            timedelta(days=2),
            5 * USD,
            None,
            "Your wallet opened Dec 1 at 12:00 UTC, so this starts then, from its balance "
            "of $5.00.",
            id="young-above-the-threshold",
        ),
        pytest.param(
            timedelta(days=2),
            0,
            timedelta(0),
            "Your wallet opened Dec 1 at 12:00 UTC, so this starts then, from its balance "
            "of $0.00: below this threshold, so these settings reload at once.",
            id="young-reloads-at-once",
        ),
        pytest.param(
            timedelta(days=2),
            0,
            timedelta(hours=3),
            "Your wallet opened Dec 1 at 12:00 UTC, so this starts then, from its balance "
            "of $0.00.",
            id="young-first-reload-later",
        ),
    ],
)
def test_a_young_wallets_backtest_says_where_it_starts_and_why_it_reloads_at_once(
    age: timedelta, opening: int, first_reload: timedelta | None, said: str | None
) -> None:
    start = max(END - age, END - timedelta(days=30))
    reloads = [] if first_reload is None else [(start + first_reload, 30 * USD)]
    result = previews.Preview(
        30,
        start,
        END,
        NO_SETTINGS,
        Replay(reloads=reloads),
        Replay(),
        opening_balance=opening,
    )

    assert opening_words(result, "USD") == said
