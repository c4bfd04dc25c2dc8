"""The Developers page (/portal/team/developers) over HTTP, on SQLite and PostgreSQL: API
keys (a secret shown once, revoke after a confirmation, roll with an overlap, the last
owner key kept), subteams (create, rename, archive, restore, a taken name shown at its
field), read-only members, CSRF on every form, times in the agency's zone.

Time is a FrozenClock, so the times the page prints are known exactly.
"""

from __future__ import annotations

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
from tests.support.portal import PASSWORD, Agency, hidden_csrf, make_agency, sign_in

PAGE = "/portal/team/developers"
START = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)  # 17:00 in Tokyo
SECRET = re.compile(r"rfl_[A-Za-z0-9_-]{20,}")


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
    assert sign_in(api, agency.owner_email).status_code == 303
    return agency


def send(api: TestClient, path: str, data: dict[str, str], *, csrf: bool = True) -> Response:
    """A form of the Developers page, posted with the page's CSRF token (or without one)."""
    token = {"csrf_token": hidden_csrf(api.get(PAGE).text)} if csrf else {}
    response: Response = api.post(path, data={**data, **token}, follow_redirects=False)
    return response


def new_subteam(svc: Refill, agency: Agency, name: str = "Sales") -> str:
    return services.create_subteam(svc.db, agency_id=agency.id, name=name).id


def subteam_key(svc: Refill, agency: Agency, subteam_id: str, name: str = "dialer") -> str:
    issued = services.create_subteam_key(
        svc.db, agency_id=agency.id, subteam_id=subteam_id, name=name
    )
    return issued.secret


def works(api: TestClient, secret: str, subteam_id: str) -> bool:
    response = api.post(
        "/v1/calls/authorize",
        json={"subteam_id": subteam_id},
        headers={"Authorization": f"Bearer {secret}"},
    )
    return bool(response.status_code == 200)


def shown_secrets(html: str) -> list[str]:
    return SECRET.findall(html)


def key_ids(svc: Refill, agency: Agency) -> list[str]:
    return [k.id for k in services.list_keys(svc.db, agency_id=agency.id).data]


def subteam_names(svc: Refill, agency: Agency) -> list[str]:
    page = services.list_subteams(svc.db, agency_id=agency.id, include_archived=True)
    return [t.name for t in page.data]


def add_person(svc: Refill, agency: Agency, role: MemberRole) -> str:
    email = f"{role}@acme-voice.test"
    members.add_member(
        svc.db, agency_id=agency.id, email=email, role=role, password=PASSWORD, actor="test"
    )
    return email


# --- keys ----------------------------------------------------------------------------------


def test_a_new_subteam_key_shows_its_secret_once_and_the_list_never_does(
    svc: Refill, api: TestClient, owner: Agency
) -> None:
    created = send(api, f"{PAGE}/subteams", {"name": "Sales"})
    assert created.status_code == 303
    assert created.headers["location"] == f"{PAGE}?notice=subteam_created"
    [sales] = services.list_subteams(svc.db, agency_id=owner.id).data

    answer = send(api, f"{PAGE}/keys", {"subteam_id": sales.id, "name": "dialer"})

    assert answer.status_code == 201
    assert "Copy it now, it will not be shown again." in answer.text
    [secret] = shown_secrets(answer.text)
    assert works(api, secret, sales.id)
    listed = api.get(PAGE).text
    assert shown_secrets(listed) == []
    row = re.search(r'<tr data-testid="key-row".*?</tr>', listed, re.S)
    assert row is not None
    assert "dialer" in row.group(0)
    assert "Sales" in row.group(0)
    assert "The new API key" not in listed


def test_a_key_for_no_subteam_is_refused_at_the_field_and_nothing_is_made(
    svc: Refill, api: TestClient, owner: Agency
) -> None:
    new_subteam(svc, owner)
    before = key_ids(svc, owner)

    answer = send(api, f"{PAGE}/keys", {"subteam_id": "", "name": "dialer"})

    assert answer.status_code == 422
    assert 'id="key-subteam-error"' in answer.text
    assert shown_secrets(answer.text) == []
    assert key_ids(svc, owner) == before


def test_revoking_a_key_asks_first_then_refuses_it_from_the_next_request(
    svc: Refill, api: TestClient, owner: Agency
) -> None:
    sales = new_subteam(svc, owner)
    secret = subteam_key(svc, owner, sales)
    key_id = next(k.id for k in services.list_keys(svc.db, agency_id=owner.id).data if k.name)

    asked = api.get(f"{PAGE}?revoke={key_id}")

    assert "Revoke the key dialer?" in asked.text
    assert works(api, secret, sales)  # asking changed nothing
    revoked = send(api, f"{PAGE}/keys/{key_id}/revoke", {})
    assert revoked.status_code == 303
    assert revoked.headers["location"] == f"{PAGE}?notice=key_revoked"
    assert not works(api, secret, sales)
    page = api.get(revoked.headers["location"]).text
    assert "Key revoked" in page
    assert "revoked 2026-12-03 17:00" in page  # Tokyo time


@pytest.mark.parametrize(
    ("overlap", "old_works", "words"),
    [
        pytest.param("0", False, "The previous secret stopped working now.", id="now"),
        pytest.param(
            "3600",
            True,
            "The previous secret keeps working until 2026-12-03 18:00 (Asia/Tokyo).",
            id="one-hour",
        ),
        pytest.param(
            "604800",
            True,
            "The previous secret keeps working until 2026-12-10 17:00 (Asia/Tokyo).",
            id="seven-days",
        ),
    ],
)
def test_rolling_a_key_shows_the_new_secret_once_and_keeps_the_old_one_for_the_overlap(
    svc: Refill,
    api: TestClient,
    owner: Agency,
    clock: FrozenClock,
    overlap: str,
    old_works: bool,
    words: str,
) -> None:
    sales = new_subteam(svc, owner)
    old_secret = subteam_key(svc, owner, sales)
    [old_id] = [k.id for k in services.list_keys(svc.db, agency_id=owner.id).data if k.name]

    answer = send(api, f"{PAGE}/keys/{old_id}/roll", {"overlap": overlap})
    clock.advance(timedelta(seconds=1))

    assert answer.status_code == 201
    assert words in answer.text
    [new_secret] = shown_secrets(answer.text)
    assert new_secret != old_secret
    assert works(api, new_secret, sales)
    assert works(api, old_secret, sales) is old_works
    assert shown_secrets(api.get(PAGE).text) == []


def test_the_last_owner_key_is_not_revoked_and_the_page_says_why(
    svc: Refill, api: TestClient, owner: Agency
) -> None:
    [owner_key] = services.list_keys(svc.db, agency_id=owner.id).data

    answer = send(api, f"{PAGE}/keys/{owner_key.id}/revoke", {})

    assert answer.status_code == 409
    assert "This is the agency's last owner key, so it was not revoked" in unescape(answer.text)
    assert api.get("/v1/wallet", headers={"Authorization": f"Bearer {owner.api_key}"}).is_success


def test_an_admin_manages_subteam_keys_but_only_an_owner_rolls_an_owner_key(
    svc: Refill, api: TestClient, owner: Agency
) -> None:
    sales = new_subteam(svc, owner)
    [owner_key] = services.list_keys(svc.db, agency_id=owner.id).data
    api.cookies.clear()
    assert sign_in(api, add_person(svc, owner, MemberRole.ADMIN)).status_code == 303

    made = send(api, f"{PAGE}/keys", {"subteam_id": sales})
    rolled = send(api, f"{PAGE}/keys/{owner_key.id}/roll", {"overlap": "3600"})

    assert made.status_code == 201
    assert rolled.status_code == 403
    assert "Only an owner can roll or revoke an owner key." in rolled.text
    assert shown_secrets(rolled.text) == []
    assert services.list_keys(svc.db, agency_id=owner.id).data[-1] == owner_key  # unchanged


# --- subteams ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        pytest.param("sales", id="other-case"),
        pytest.param("  SALES ", id="spaces-and-capitals"),
    ],
)
def test_a_taken_subteam_name_is_shown_next_to_the_create_field_and_nothing_is_made(
    svc: Refill, api: TestClient, owner: Agency, typed: str
) -> None:
    new_subteam(svc, owner, "Sales")

    answer = send(api, f"{PAGE}/subteams", {"name": typed})

    assert answer.status_code == 409
    field = re.search(r'<input id="subteam-name".*?</p>', answer.text, re.S)
    assert field is not None
    assert 'aria-invalid="true"' in field.group(0)
    assert "already has a subteam called" in unescape(field.group(0))
    assert f'value="{typed}"' in field.group(0)
    assert subteam_names(svc, owner) == ["Sales"]


def test_a_rename_to_a_taken_name_is_shown_at_that_subteams_field_and_changes_nothing(
    svc: Refill, api: TestClient, owner: Agency
) -> None:
    new_subteam(svc, owner, "Sales")
    support = new_subteam(svc, owner, "Support")

    answer = send(api, f"{PAGE}/subteams/{support}/rename", {"name": "SALES"})

    assert answer.status_code == 409
    assert f'id="rename-{support}-error"' in answer.text
    assert f'id="rename-{support}" name="name" maxlength="200" required value="SALES"' in (
        answer.text
    )
    assert subteam_names(svc, owner) == ["Sales", "Support"]


def test_subteams_are_created_renamed_archived_and_restored_with_a_notice_each(
    svc: Refill, api: TestClient, owner: Agency
) -> None:
    sales = new_subteam(svc, owner, "Sales")
    secret = subteam_key(svc, owner, sales)

    renamed = send(api, f"{PAGE}/subteams/{sales}/rename", {"name": "Outbound"})
    archived = send(api, f"{PAGE}/subteams/{sales}/archive", {})
    page = api.get(archived.headers["location"]).text
    restored = send(api, f"{PAGE}/subteams/{sales}/restore", {})

    assert renamed.headers["location"] == f"{PAGE}?notice=subteam_renamed"
    assert archived.headers["location"] == f"{PAGE}?notice=subteam_archived"
    assert restored.headers["location"] == f"{PAGE}?notice=subteam_restored"
    assert "Subteam archived: its keys were revoked" in page
    assert f'action="{PAGE}/subteams/{sales}/restore"' in page
    assert not works(api, secret, sales)  # its key stays revoked after the restore
    [subteam] = services.list_subteams(svc.db, agency_id=owner.id).data
    assert (subteam.name, subteam.archived_at) == ("Outbound", None)
    actions = [e.action for e in services.list_audit_log(svc.db, agency_id=owner.id).data]
    assert actions[:4] == ["subteam.restored", "subteam.archived", "key.revoked", "subteam.renamed"]


def test_times_are_shown_in_the_agencys_zone_and_labelled_with_it(
    svc: Refill, api: TestClient, owner: Agency
) -> None:
    new_subteam(svc, owner, "Sales")

    page = api.get(PAGE).text

    assert "Created (Asia/Tokyo)" in page
    row = re.search(r'<tr data-testid="subteam-row".*?</tr>', page, re.S)
    assert row is not None
    assert "2026-12-03 17:00" in row.group(0)


# --- who may change ------------------------------------------------------------------------


def test_a_member_sees_both_lists_read_only_without_secrets_or_forms(
    svc: Refill, api: TestClient, owner: Agency
) -> None:
    sales = new_subteam(svc, owner, "Sales")
    subteam_key(svc, owner, sales, name="dialer")
    api.cookies.clear()
    assert sign_in(api, add_person(svc, owner, MemberRole.MEMBER)).status_code == 303

    page = api.get(PAGE).text

    assert "dialer" in page
    assert "Sales" in page
    assert shown_secrets(page) == []
    assert f'action="{PAGE}' not in page
    assert "Revoke…" not in page
    assert "Create a subteam" not in page


ROUTES = [
    pytest.param("{page}/keys", {"subteam_id": "{sales}"}, id="create-key"),
    pytest.param("{page}/keys/{key}/revoke", {}, id="revoke-key"),
    pytest.param("{page}/keys/{key}/roll", {"overlap": "0"}, id="roll-key"),
    pytest.param("{page}/subteams", {"name": "Support"}, id="create-subteam"),
    pytest.param("{page}/subteams/{sales}/rename", {"name": "Outbound"}, id="rename"),
    pytest.param("{page}/subteams/{sales}/archive", {}, id="archive"),
]


def _state(svc: Refill, agency: Agency) -> tuple[object, ...]:
    keys = services.list_keys(svc.db, agency_id=agency.id).data
    subteams = services.list_subteams(svc.db, agency_id=agency.id, include_archived=True)
    audit = services.list_audit_log(svc.db, agency_id=agency.id, limit=100).data
    return tuple(keys), tuple(subteams.data), len(audit)


def _filled(path: str, data: dict[str, str], sales: str, key: str) -> tuple[str, dict[str, str]]:
    fill = {"page": PAGE, "sales": sales, "key": key}
    return path.format(**fill), {k: v.format(**fill) for k, v in data.items()}


@pytest.mark.parametrize(("path", "data"), ROUTES)
def test_a_member_is_refused_every_form_with_403_and_nothing_changes(
    svc: Refill, api: TestClient, owner: Agency, path: str, data: dict[str, str]
) -> None:
    sales = new_subteam(svc, owner, "Sales")
    subteam_key(svc, owner, sales)
    key = next(k.id for k in services.list_keys(svc.db, agency_id=owner.id).data if k.name)
    api.cookies.clear()
    assert sign_in(api, add_person(svc, owner, MemberRole.MEMBER)).status_code == 303
    before = _state(svc, owner)

    answer = send(api, *_filled(path, data, sales, key))

    assert answer.status_code == 403
    assert "read-only" in answer.text
    assert shown_secrets(answer.text) == []
    assert _state(svc, owner) == before


@pytest.mark.parametrize(("path", "data"), ROUTES)
def test_every_form_without_the_csrf_token_is_refused_and_nothing_changes(
    svc: Refill, api: TestClient, owner: Agency, path: str, data: dict[str, str]
) -> None:
    sales = new_subteam(svc, owner, "Sales")
    subteam_key(svc, owner, sales)
    key = next(k.id for k in services.list_keys(svc.db, agency_id=owner.id).data if k.name)
    before = _state(svc, owner)

    answer = send(api, *_filled(path, data, sales, key), csrf=False)

    assert answer.status_code == 403
    assert "This form has expired" in answer.text
    assert shown_secrets(answer.text) == []
    assert _state(svc, owner) == before


def test_another_agencys_key_and_subteam_cannot_be_reached_from_this_session(
    svc: Refill, api: TestClient, owner: Agency
) -> None:
    other = make_agency(svc, "Other Voice")
    theirs = new_subteam(svc, other, "Theirs")
    subteam_key(svc, other, theirs)
    their_key = next(k.id for k in services.list_keys(svc.db, agency_id=other.id).data if k.name)
    before = _state(svc, other)

    revoked = send(api, f"{PAGE}/keys/{their_key}/revoke", {})
    archived = send(api, f"{PAGE}/subteams/{theirs}/archive", {})
    keyed = send(api, f"{PAGE}/keys", {"subteam_id": theirs})

    assert (revoked.status_code, archived.status_code, keyed.status_code) == (404, 404, 404)
    assert shown_secrets(keyed.text) == []
    assert _state(svc, other) == before
