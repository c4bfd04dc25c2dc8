"""The Subteams page (/portal/team/subteams) over HTTP, on SQLite and PostgreSQL: spend
today and this month against each subteam's limits, credits held by live calls, pause and
resume (audited, and the paused subteam's calls refused while the others go on), spend
limits typed as owners write amounts (a wrong one shown at its field, nothing changed), a
subteam's own page (usage chart data, live holds), read-only members and forged forms.

Time is a FrozenClock, and the agency counts its days in Tokyo, so what the page prints
is known exactly.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from refill import services
from refill.bootstrap import Refill
from refill.clock import FrozenClock
from refill.roles import MemberRole
from refill.services import members
from refill.services import subteams as subteam_service
from refill.services.subteams import Subteam, SubteamChange
from tests.support.portal import PASSWORD, Agency, hidden_csrf, make_agency, sign_in

PAGE = "/portal/team/subteams"
START = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)  # 17:00 in Tokyo
USD = 1_000_000


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def owner(svc: Refill, api: TestClient) -> Agency:
    agency = make_agency(svc)
    services.update_agency(
        svc.db,
        agency_id=agency.id,
        change=services.AgencyChange(timezone="Asia/Tokyo"),
        actor="test",
    )
    services.grant_credits(svc.db, agency_id=agency.id, amount=1_000 * USD, reference="welcome")
    assert sign_in(api, agency.owner_email).status_code == 303
    return agency


def send(api: TestClient, path: str, data: dict[str, str], *, csrf: bool = True) -> Response:
    """A form of the Subteams page, posted with the page's CSRF token (or without one)."""
    token = {"csrf_token": hidden_csrf(api.get(PAGE).text)} if csrf else {}
    response: Response = api.post(path, data={**data, **token}, follow_redirects=False)
    return response


def new_subteam(svc: Refill, agency: Agency, name: str) -> str:
    return services.create_subteam(svc.db, agency_id=agency.id, name=name).id


def spend(svc: Refill, agency: Agency, subteam_id: str, amount: int, reference: str) -> None:
    services.record_usage(
        svc.db, agency_id=agency.id, subteam_id=subteam_id, amount=amount, reference=reference
    )


def limit(
    svc: Refill, agency: Agency, subteam_id: str, daily: int | None, monthly: int | None
) -> None:
    subteam_service.update_subteam(
        svc.db,
        agency_id=agency.id,
        subteam_id=subteam_id,
        change=SubteamChange(daily_spend_limit=daily, monthly_spend_limit=monthly),
        actor="test",
    )


def read(svc: Refill, agency: Agency, subteam_id: str) -> Subteam:
    return subteam_service.read_subteam(svc.db, agency_id=agency.id, subteam_id=subteam_id)


def part(pattern: str, html: str, group: int = 0) -> str:
    found = re.search(pattern, html, re.S)
    assert found is not None, html
    return found.group(group)


def words_of(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def row(html: str, subteam_id: str) -> str:
    """The subteam's row of the table, as the words it shows."""
    return words_of(part(rf'<tr id="row-{subteam_id}".*?</tr>', html))


def field_error(html: str, name: str) -> str:
    """The words of the error shown under a form's field (after its hint), which is marked
    invalid."""
    field = part(rf'<input id="f-{name}".*?</p>\s*<p class="field-error"[^>]*>.*?</p>', html)
    assert 'aria-invalid="true"' in field
    return words_of(part(r'<p class="field-error"[^>]*>(.*?)</p>', field, 1))


def authorize(api: TestClient, secret: str, subteam_id: str) -> dict[str, object]:
    response = api.post(
        "/v1/calls/authorize",
        json={"subteam_id": subteam_id},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    return answer


def actions(svc: Refill, agency: Agency) -> list[tuple[str, str, str | None]]:
    entries = services.list_audit_log(svc.db, agency_id=agency.id, limit=100).data
    return [(e.action, e.actor, e.target_id) for e in entries]


def add_person(svc: Refill, agency: Agency, role: MemberRole) -> str:
    email = f"{role}@acme-voice.test"
    members.add_member(
        svc.db, agency_id=agency.id, email=email, role=role, password=PASSWORD, actor="test"
    )
    return email


# --- the table -----------------------------------------------------------------------------


def test_the_table_shows_each_subteams_spend_against_its_limits_and_what_it_holds(
    svc: Refill, api: TestClient, owner: Agency, clock: FrozenClock
) -> None:
    sales = new_subteam(svc, owner, "Sales")
    support = new_subteam(svc, owner, "Support")
    limit(svc, owner, sales, 50 * USD, 500 * USD)
    spend(svc, owner, sales, 5 * USD, "yesterday")
    clock.advance(timedelta(days=1))  # Dec 4, 17:00 in Tokyo: the same month, a new day
    spend(svc, owner, sales, 12_400_000, "today")
    spend(svc, owner, support, 3 * USD, "support")
    services.authorize_call(
        svc.db, agency_id=owner.id, subteam_id=sales, expected_cost=2 * USD, hold=True
    )
    assert sign_in(api, owner.owner_email).status_code == 303  # a day later: a new session

    page = api.get(PAGE)

    assert page.status_code == 200
    assert "Limits count in Asia/Tokyo" in page.text
    assert "A paused subteam's new calls are refused; other subteams go on." in unescape(page.text)
    shown = row(page.text, sales)
    assert "Sales Active" in shown
    assert "$12.40 of $50.00 today" in shown
    assert "$17.40 of $500.00 this month" in shown
    assert "$2.00" in shown  # held by its live call
    # Today's bar counts the held credits too: (12.40 + 2.00) of 50.00.
    assert 'value="29"' in part(rf'id="row-{sales}".*?</tr>', page.text)
    other = row(page.text, support)
    assert "$3.00 today No limit" in other
    assert "$3.00 this month No limit" in other
    assert 'aria-label="Pause Sales"' in page.text


def test_the_table_alone_is_served_for_the_page_to_refresh_itself(
    svc: Refill, api: TestClient, owner: Agency
) -> None:
    sales = new_subteam(svc, owner, "Sales")
    assert 'data-live-url="/portal/team/subteams/live"' in api.get(PAGE).text

    spend(svc, owner, sales, 12_400_000, "u1")
    live = api.get(f"{PAGE}/live")

    assert live.status_code == 200
    assert "$12.40 today" in row(live.text, sales)
    assert "Pause Sales" in live.text
    assert "<html" not in live.text
    assert "Minimum call balance" not in live.text  # its form is not refreshed under the owner


def test_a_subteam_at_its_daily_limit_says_so(svc: Refill, api: TestClient, owner: Agency) -> None:
    sales = new_subteam(svc, owner, "Sales")
    limit(svc, owner, sales, 10 * USD, None)
    spend(svc, owner, sales, 10 * USD, "all of it")

    shown = row(api.get(PAGE).text, sales)

    assert "Active Daily limit reached" in shown
    assert "$10.00 of $10.00 today" in shown
    detail = unescape(api.get(f"{PAGE}/{sales}").text)
    assert "new calls are refused until 2026-12-04 00:00 (Asia/Tokyo)" in detail


# --- pause and resume ----------------------------------------------------------------------


def test_pausing_from_the_page_pauses_the_subteam_audited_while_the_others_go_on(
    svc: Refill, api: TestClient, owner: Agency
) -> None:
    sales = new_subteam(svc, owner, "Sales")
    support = new_subteam(svc, owner, "Support")
    sales_key = services.create_subteam_key(svc.db, agency_id=owner.id, subteam_id=sales).secret
    support_key = services.create_subteam_key(svc.db, agency_id=owner.id, subteam_id=support).secret

    paused = send(api, f"{PAGE}/{sales}/pause", {})

    assert paused.status_code == 303
    assert paused.headers["location"] == f"{PAGE}?notice=paused&subteam={sales}"
    page = api.get(paused.headers["location"]).text
    assert (
        "Sales is paused: its new calls are refused. Calls already running still settle."
        in unescape(page)
    )
    assert "Sales Paused" in row(page, sales)
    assert 'aria-label="Resume Sales"' in page
    assert read(svc, owner, sales).paused
    assert not read(svc, owner, support).paused
    session_user = actions(svc, owner)[0]
    assert session_user[0] == "subteam.paused"
    assert session_user[1].startswith("user:")
    assert session_user[2] == sales
    assert authorize(api, sales_key, sales) == {
        "allowed": False,
        "reason": "subteam_paused",
        "available": "1000.00",
        "currency": "USD",
    }
    assert authorize(api, support_key, support)["allowed"] is True

    resumed = send(api, f"{PAGE}/{sales}/resume", {"to": "detail"})

    assert resumed.headers["location"] == f"{PAGE}/{sales}?notice=resumed"
    detail = api.get(resumed.headers["location"]).text
    assert "Sales is resumed: its calls are accepted again" in detail
    assert not read(svc, owner, sales).paused
    assert actions(svc, owner)[0][0] == "subteam.resumed"
    assert authorize(api, sales_key, sales)["allowed"] is True


def test_an_archived_subteam_is_not_paused_from_the_page(
    svc: Refill, api: TestClient, owner: Agency
) -> None:
    sales = new_subteam(svc, owner, "Sales")
    subteam_service.update_subteam(
        svc.db,
        agency_id=owner.id,
        subteam_id=sales,
        change=SubteamChange(archived=True),
        actor="test",
    )

    answer = send(api, f"{PAGE}/{sales}/pause", {})

    assert answer.status_code == 409
    assert "archived" in answer.text
    assert not read(svc, owner, sales).paused
    assert f"row-{sales}" not in api.get(PAGE).text  # the list shows active subteams


# --- limits --------------------------------------------------------------------------------


def test_limits_typed_as_owners_write_them_are_saved_and_an_empty_field_removes_one(
    svc: Refill, api: TestClient, owner: Agency
) -> None:
    sales = new_subteam(svc, owner, "Sales")
    path = f"{PAGE}/{sales}/limits"

    saved = send(api, path, {"daily_spend_limit": "$50", "monthly_spend_limit": "1,000.50"})

    assert saved.status_code == 303
    assert saved.headers["location"] == f"{PAGE}/{sales}?notice=limits_saved"
    page = api.get(saved.headers["location"]).text
    assert "Spend limits of Sales saved: $50.00 a day, $1,000.50 a month." in page
    assert 'value="50.00"' in page
    team = read(svc, owner, sales)
    assert (team.daily_spend_limit, team.monthly_spend_limit) == (50 * USD, 1_000_500_000)
    [entry] = services.list_audit_log(
        svc.db, agency_id=owner.id, action="subteam.spend_limits_changed"
    ).data
    assert entry.after == {"daily_spend_limit": "50.00", "monthly_spend_limit": "1000.50"}

    removed = send(api, path, {"daily_spend_limit": "", "monthly_spend_limit": "1,000.50"})

    assert removed.status_code == 303
    team = read(svc, owner, sales)
    assert (team.daily_spend_limit, team.monthly_spend_limit) == (None, 1_000_500_000)
    assert "no daily limit, $1,000.50 a month" in api.get(removed.headers["location"]).text


@pytest.mark.parametrize(
    ("daily", "monthly", "wrong", "words"),
    [
        pytest.param(
            "fifty",
            "",
            "daily_spend_limit",
            "The daily limit must be an amount such as 50 or 1,000.50",
            id="words",
        ),
        pytest.param(
            "0", "", "daily_spend_limit", "The daily limit must be more than zero", id="zero"
        ),
        pytest.param("-5", "", "daily_spend_limit", "The daily limit must be", id="negative"),
        pytest.param(
            "$20", "1,00.5", "monthly_spend_limit", "The monthly limit must be an", id="commas"
        ),
        pytest.param(
            "$20",
            "0.0000001",
            "monthly_spend_limit",
            "The monthly limit has more than 6 decimal places",
            id="digits",
        ),
    ],
)
def test_a_wrong_limit_is_shown_at_its_field_and_nothing_changes(
    svc: Refill,
    api: TestClient,
    owner: Agency,
    daily: str,
    monthly: str,
    wrong: str,
    words: str,
) -> None:
    sales = new_subteam(svc, owner, "Sales")
    limit(svc, owner, sales, 80 * USD, None)
    before = (read(svc, owner, sales), actions(svc, owner))

    answer = send(
        api, f"{PAGE}/{sales}/limits", {"daily_spend_limit": daily, "monthly_spend_limit": monthly}
    )

    assert answer.status_code == 422
    said = field_error(answer.text, wrong)
    assert said.startswith(words)
    assert said.endswith("; leave it empty for no limit.")
    assert f'value="{daily}"' in answer.text  # what was typed, shown again
    assert (read(svc, owner, sales), actions(svc, owner)) == before


# --- the minimum call balance ----------------------------------------------------------------


FLOOR = f"{PAGE}/min-call-balance"


def floor_of(svc: Refill, agency: Agency) -> int:
    return services.get_agency(svc.db, agency.id).min_call_balance


def test_the_minimum_call_balance_typed_as_owners_write_it_refuses_calls_below_it(
    svc: Refill, api: TestClient, owner: Agency
) -> None:
    sales = new_subteam(svc, owner, "Sales")
    assert 'value="0.00"' in api.get(PAGE).text

    saved = send(api, FLOOR, {"min_call_balance": "$1,000"})

    assert saved.status_code == 303
    assert saved.headers["location"] == f"{PAGE}?notice=floor_saved#calls"
    page = words_of(api.get(saved.headers["location"]).text)
    assert (
        "Minimum call balance saved: new calls are accepted while more than $1,000.00 is "
        "available. $1,000.00 is available now, so new calls are refused." in page
    )
    assert floor_of(svc, owner) == 1_000 * USD
    assert authorize(api, owner.api_key, sales) == {
        "allowed": False,
        "reason": "no_credits",
        "available": "1000.00",
        "currency": "USD",
    }
    entry = services.list_audit_log(svc.db, agency_id=owner.id, action="agency.updated").data[0]
    assert entry.actor.startswith("user:")
    assert (entry.before, entry.after) == (
        {"min_call_balance": "0.00"},
        {"min_call_balance": "1000.00"},
    )
    billing = words_of(api.get("/portal/team/billing").text)
    assert "Below your minimum call balance of $1,000.00: new calls are refused." in billing

    emptied = send(api, FLOOR, {"min_call_balance": ""})

    assert emptied.status_code == 303
    assert floor_of(svc, owner) == 0
    assert (
        "new calls are accepted while any credit is available"
        in api.get(emptied.headers["location"]).text
    )
    assert authorize(api, owner.api_key, sales)["allowed"] is True


@pytest.mark.parametrize(
    ("typed", "words"),
    [
        pytest.param("five", "The minimum call balance must be an amount such as 50", id="words"),
        pytest.param("-5", "The minimum call balance must be", id="negative"),
        pytest.param("1,00.5", "The minimum call balance must be an amount", id="commas"),
        pytest.param(
            "0.0000001", "The minimum call balance has more than 6 decimal places", id="digits"
        ),
    ],
)
def test_a_wrong_minimum_call_balance_is_shown_at_its_field_and_nothing_changes(
    svc: Refill, api: TestClient, owner: Agency, typed: str, words: str
) -> None:
    before = (floor_of(svc, owner), actions(svc, owner))

    answer = send(api, FLOOR, {"min_call_balance": typed})

    assert answer.status_code == 422
    said = field_error(answer.text, "min_call_balance")
    assert said.startswith(words)
    assert said.endswith("; 0 or empty: any available credit is enough.")
    assert f'value="{typed}"' in answer.text
    assert (floor_of(svc, owner), actions(svc, owner)) == before


def test_a_member_sees_the_minimum_call_balance_and_cannot_change_it(
    svc: Refill, api: TestClient, owner: Agency
) -> None:
    services.update_agency(
        svc.db,
        agency_id=owner.id,
        change=services.AgencyChange(min_call_balance=5 * USD),
        actor="test",
    )
    api.cookies.clear()
    assert sign_in(api, add_person(svc, owner, MemberRole.MEMBER)).status_code == 303

    page = api.get(PAGE).text

    assert words_of(part(r'<p data-testid="floor">.*?</p>', page)) == "$5.00"
    assert 'name="min_call_balance"' not in page
    assert send(api, FLOOR, {"min_call_balance": "1"}).status_code == 403
    assert floor_of(svc, owner) == 5 * USD


# --- a subteam's page ----------------------------------------------------------------------


def test_a_subteams_page_shows_its_usage_by_day_and_hour_and_its_live_holds(
    svc: Refill, api: TestClient, owner: Agency
) -> None:
    sales = new_subteam(svc, owner, "Sales")
    spend(svc, owner, sales, 4 * USD, "a call")
    hold = services.authorize_call(
        svc.db, agency_id=owner.id, subteam_id=sales, expected_cost=3 * USD, hold=True
    ).hold
    assert hold is not None

    page = api.get(f"{PAGE}/{sales}")

    assert page.status_code == 200
    data = json.loads(part(r'id="usage-data"[^>]*>(.*?)</script>', page.text, 1))
    by_day = data["ranges"]["30d"]["points"]
    by_hour = data["ranges"]["24h"]["points"]
    assert by_day[-1] == {
        "label": "Dec 3",
        "title": "Thu Dec 3",
        "y": 4.0,
        "spent": "$4.00",
        "events": 1,
    }
    assert by_hour[-1]["label"] == "17:00"
    assert by_hour[-1]["spent"] == "$4.00"
    assert data["ranges"]["24h"]["summary"] == "$4.00 spent in the last 24 hours, 1 usage event."
    # A subteam younger than a day opens on its hours.
    assert 'data-range="24h">' in page.text
    held = words_of(part(r'<tr data-testid="hold-row">.*?</tr>', page.text))
    assert held == f"$3.00 {hold.id} 2026-12-03 17:00 2026-12-03 19:00 (in 2 h)"
    assert words_of(part(r'<dd data-testid="held">.*?</dd>', page.text)) == "$3.00 by 1 live call"


def test_another_agencys_subteam_cannot_be_seen_or_changed(
    svc: Refill, api: TestClient, owner: Agency
) -> None:
    other = make_agency(svc, "Other Voice")
    theirs = new_subteam(svc, other, "Theirs")

    seen = api.get(f"{PAGE}/{theirs}")
    paused = send(api, f"{PAGE}/{theirs}/pause", {})
    limited = send(api, f"{PAGE}/{theirs}/limits", {"daily_spend_limit": "5"})

    assert (seen.status_code, paused.status_code, limited.status_code) == (404, 404, 404)
    team = read(svc, other, theirs)
    assert (team.paused, team.daily_spend_limit) == (False, None)


# --- who may change ------------------------------------------------------------------------


def test_a_member_sees_the_state_but_no_switch_and_a_forged_form_is_refused(
    svc: Refill, api: TestClient, owner: Agency
) -> None:
    sales = new_subteam(svc, owner, "Sales")
    limit(svc, owner, sales, 50 * USD, None)
    subteam_service.update_subteam(
        svc.db, agency_id=owner.id, subteam_id=sales, change=SubteamChange(paused=True), actor="t"
    )
    api.cookies.clear()
    assert sign_in(api, add_person(svc, owner, MemberRole.MEMBER)).status_code == 303
    before = (read(svc, owner, sales), actions(svc, owner))

    page = api.get(PAGE).text
    detail = api.get(f"{PAGE}/{sales}").text

    assert "Sales Paused" in row(page, sales)
    assert "$0.00 of $50.00 today" in row(page, sales)
    for html in (page, detail):
        assert f'action="{PAGE}' not in html
        assert "Resume Sales" not in html
        assert "read-only" in html
    assert "$50.00" in detail  # the limits, read only
    resumed = send(api, f"{PAGE}/{sales}/resume", {})
    limited = send(api, f"{PAGE}/{sales}/limits", {"daily_spend_limit": ""})
    assert (resumed.status_code, limited.status_code) == (403, 403)
    assert "Your role in this agency is read-only" in resumed.text
    assert (read(svc, owner, sales), actions(svc, owner)) == before


@pytest.mark.parametrize(
    ("action", "data"),
    [
        pytest.param("pause", {}, id="pause"),
        pytest.param("limits", {"daily_spend_limit": "5"}, id="limits"),
    ],
)
def test_a_form_without_the_csrf_token_is_refused_and_nothing_changes(
    svc: Refill, api: TestClient, owner: Agency, action: str, data: dict[str, str]
) -> None:
    sales = new_subteam(svc, owner, "Sales")
    before = (read(svc, owner, sales), actions(svc, owner))

    answer = send(api, f"{PAGE}/{sales}/{action}", data, csrf=False)

    assert answer.status_code == 403
    assert "This form has expired" in answer.text
    assert (read(svc, owner, sales), actions(svc, owner)) == before
