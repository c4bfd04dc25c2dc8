"""The account page (one's own password), role changes on the members page, and the audit
log page, over HTTP (FastAPI's client) on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import threading
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from refill import audit, services
from refill.bootstrap import Refill
from refill.db.database import Tx
from refill.errors import RefillError, Unauthenticated
from refill.roles import MemberRole
from refill.services import members, sessions
from tests.support.portal import PASSWORD, Agency, hidden_csrf, make_agency, post, sign_in

NEW_PASSWORD = "a brand new passphrase"
CARD = {"token": "pm_card_visa"}


@pytest.fixture
def owner(refill: Refill, client: TestClient) -> Agency:
    agency = make_agency(refill)
    assert sign_in(client, agency.owner_email).status_code == 303
    return agency


def add_person(refill: Refill, agency: Agency, email: str, role: MemberRole) -> str:
    added = members.add_member(
        refill.db, agency_id=agency.id, email=email, role=role, password=PASSWORD, actor="test"
    )
    assert added is not None
    return added.user_id


def user_id_of(refill: Refill, agency: Agency, email: str) -> str:
    return next(
        m.user_id for m in members.list_members(refill.db, agency_id=agency.id) if m.email == email
    )


def role_of(refill: Refill, agency: Agency, user_id: str) -> MemberRole:
    return next(
        m.role for m in members.list_members(refill.db, agency_id=agency.id) if m.user_id == user_id
    )


def switch_to(client: TestClient, email: str) -> None:
    client.cookies.clear()
    assert sign_in(client, email).status_code == 303


def audit_entries(refill: Refill, agency: Agency, action: str) -> list[audit.AuditEntry]:
    entries = services.list_audit_log(refill.db, agency_id=agency.id, limit=200).data
    return [e for e in entries if e.action == action]


def change_password(
    client: TestClient, current: str, new: str, repeat: str | None = None
) -> Response:
    csrf = hidden_csrf(client.get("/portal/account").text)
    response: Response = client.post(
        "/portal/account/password",
        data={
            "current_password": current,
            "new_password": new,
            "repeat_password": new if repeat is None else repeat,
            "csrf_token": csrf,
        },
        follow_redirects=False,
    )
    return response


def field_error(html: str, field_id: str) -> str:
    found = re.search(rf'id="{field_id}">([^<]+)<', html)
    assert found, html
    return found.group(1)


# --- the account page: one's own password ---------------------------------------------------


def test_changing_the_password_keeps_this_session_ends_the_others_and_retires_the_old_one(
    owner: Agency, refill: Refill, client: TestClient
) -> None:
    elsewhere = sessions.sign_in(
        refill.db, email=owner.owner_email, password=PASSWORD, client_ip="203.0.113.9"
    )

    response = change_password(client, PASSWORD, NEW_PASSWORD)

    assert (response.status_code, response.headers["location"]) == (
        303,
        "/portal/account?notice=own_password_changed",
    )
    page = client.get(response.headers["location"])
    assert page.status_code == 200  # this session stays signed in
    assert "Every other session of your account was signed out" in page.text
    assert sessions.session_for(refill.db, elsewhere) is None
    client.cookies.clear()
    assert sign_in(client, owner.owner_email, PASSWORD).status_code == 401
    assert sign_in(client, owner.owner_email, NEW_PASSWORD).status_code == 303
    [entry] = audit_entries(refill, owner, "account.password_changed")
    assert entry.actor == f"user:{user_id_of(refill, owner, owner.owner_email)}"
    assert entry.after == {"other_sessions_ended": 1}


@pytest.mark.parametrize("role", [MemberRole.MEMBER, MemberRole.ADMIN], ids=["member", "admin"])
def test_every_role_may_change_their_own_password(
    owner: Agency, refill: Refill, client: TestClient, role: MemberRole
) -> None:
    add_person(refill, owner, "someone@acme.test", role)
    switch_to(client, "someone@acme.test")

    response = change_password(client, PASSWORD, NEW_PASSWORD)

    assert response.status_code == 303
    token = sessions.sign_in(
        refill.db, email="someone@acme.test", password=NEW_PASSWORD, client_ip="203.0.113.9"
    )
    assert sessions.session_for(refill.db, token) is not None


def test_a_wrong_current_password_is_refused_next_to_its_field_and_changes_nothing(
    owner: Agency, refill: Refill, client: TestClient
) -> None:
    elsewhere = sessions.sign_in(
        refill.db, email=owner.owner_email, password=PASSWORD, client_ip="203.0.113.9"
    )

    response = change_password(client, "not my password", NEW_PASSWORD)

    assert response.status_code == 401
    assert field_error(response.text, "current-password-error") == "The current password is wrong"
    assert 'aria-invalid="true"' in response.text
    assert NEW_PASSWORD not in response.text  # passwords never come back in the page
    assert sessions.session_for(refill.db, elsewhere) is not None
    with pytest.raises(Unauthenticated):
        sessions.sign_in(
            refill.db, email=owner.owner_email, password=NEW_PASSWORD, client_ip="203.0.113.9"
        )
    assert audit_entries(refill, owner, "account.password_changed") == []


@pytest.mark.parametrize(
    ("new", "repeat", "field_id", "words"),
    [
        pytest.param(
            "short one", "short one", "new-password-error", "at least 12 characters", id="too-short"
        ),
        pytest.param("x" * 1025, "x" * 1025, "new-password-error", "too long", id="too-long"),
        pytest.param(
            NEW_PASSWORD, NEW_PASSWORD + "!", "repeat-password-error", "differ", id="repeat-differs"
        ),
    ],
)
def test_a_new_password_that_breaks_the_rules_is_refused_and_the_old_one_still_works(
    owner: Agency,
    refill: Refill,
    client: TestClient,
    new: str,
    repeat: str,
    field_id: str,
    words: str,
) -> None:
    response = change_password(client, PASSWORD, new, repeat)

    assert response.status_code == 422
    assert words in field_error(response.text, field_id)
    client.cookies.clear()
    assert sign_in(client, owner.owner_email, PASSWORD).status_code == 303


def test_wrong_current_passwords_count_in_the_sign_in_throttle(
    owner: Agency, refill: Refill, client: TestClient
) -> None:
    for _ in range(sessions.MAX_FAILURES):
        assert change_password(client, "not my password", NEW_PASSWORD).status_code == 401

    right = change_password(client, PASSWORD, NEW_PASSWORD)
    signing_in = sign_in(TestClient(client.app), owner.owner_email)

    assert right.status_code == 429
    assert right.headers["retry-after"] == str(int(sessions.LOCKOUT.total_seconds()))
    assert "too many password attempts" in right.text.lower()
    assert signing_in.status_code == 429  # the same count as the sign-in page
    assert audit_entries(refill, owner, "account.password_changed") == []


# --- roles on the members page --------------------------------------------------------------

ROLE_CASES = [
    # (who acts, whose role, the new role, a second owner?, status, the role after, words)
    pytest.param(
        "owner",
        "admin",
        "owner",
        False,
        303,
        "owner",
        "Role changed.",
        id="owner-makes-admin-owner",
    ),
    pytest.param(
        "owner",
        "member",
        "admin",
        False,
        303,
        "admin",
        "Role changed.",
        id="owner-makes-member-admin",
    ),
    pytest.param(
        "owner",
        "owner2",
        "admin",
        True,
        303,
        "admin",
        "Role changed.",
        id="owner-demotes-other-owner",
    ),
    pytest.param(
        "owner",
        "owner",
        "admin",
        True,
        303,
        "admin",
        "Role changed.",
        id="owner-steps-down-another-remains",
    ),
    pytest.param(
        "owner",
        "owner",
        "admin",
        False,
        409,
        "owner",
        "An agency needs at least one owner",
        id="last-owner-demoted-refused",
    ),
    pytest.param(
        "admin",
        "member",
        "admin",
        False,
        303,
        "admin",
        "Role changed.",
        id="admin-makes-member-admin",
    ),
    pytest.param(
        "admin", "admin2", "member", False, 303, "member", "Role changed.", id="admin-demotes-admin"
    ),
    pytest.param(
        "admin",
        "member",
        "owner",
        False,
        403,
        "member",
        "Only an owner can make an owner",
        id="admin-makes-owner-refused",
    ),
    pytest.param(
        "admin",
        "owner",
        "member",
        True,
        403,
        "owner",
        "Only an owner can make an owner",
        id="admin-demotes-owner-refused",
    ),
    pytest.param(
        "admin",
        "admin",
        "member",
        False,
        403,
        "admin",
        "Only an owner can change their own role",
        id="admin-changes-own-role-refused",
    ),
    pytest.param(
        "member",
        "admin",
        "member",
        False,
        403,
        "admin",
        "read-only",
        id="member-cannot-change-roles",
    ),
]


@pytest.mark.parametrize(
    ("actor", "target", "new_role", "second_owner", "status", "after", "words"), ROLE_CASES
)
def test_who_may_give_whom_which_role(
    owner: Agency,
    refill: Refill,
    client: TestClient,
    actor: str,
    target: str,
    new_role: str,
    second_owner: bool,
    status: int,
    after: str,
    words: str,
) -> None:
    people = {"owner": user_id_of(refill, owner, owner.owner_email)}
    # Only the people the case needs: each one costs a password hash.
    needed = {actor, target} | ({"owner2"} if second_owner else set())
    for name in sorted(needed - {"owner"}):
        role = MemberRole(name.rstrip("2"))
        people[name] = add_person(refill, owner, f"{name}@acme.test", role)
    if actor != "owner":
        switch_to(client, f"{actor}@acme.test")
    before = role_of(refill, owner, people[target])

    response = post(client, f"/portal/team/members/{people[target]}/role", {"role": new_role})

    assert response.status_code == status, response.text
    assert role_of(refill, owner, people[target]) == after
    changes = audit_entries(refill, owner, "member.role_changed")
    if status == 303:
        assert words in client.get(response.headers["location"]).text
        [entry] = changes
        assert (entry.before, entry.after) == ({"role": before}, {"role": new_role})
        assert entry.target_id == people[target]
    else:
        assert words in response.text
        assert changes == []


def test_two_owners_demoting_each_other_at_once_leave_one_owner(
    owner: Agency, refill: Refill
) -> None:
    first = user_id_of(refill, owner, owner.owner_email)
    second = add_person(refill, owner, "owner2@acme.test", MemberRole.OWNER)
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def demote(who: str, by: str) -> None:
        start.wait()
        try:
            members.change_role(
                refill.db,
                agency_id=owner.id,
                user_id=who,
                role="admin",
                by_user_id=by,
                actor="test",
            )
            outcomes.append("changed")
        except RefillError as exc:  # the later one acts as what the first one left it
            outcomes.append(exc.code)

    threads = [
        threading.Thread(target=demote, args=(first, second)),
        threading.Thread(target=demote, args=(second, first)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) in (["changed", "last_owner"], ["changed", "owner_protected"])
    roles = [m.role for m in members.list_members(refill.db, agency_id=owner.id)]
    assert roles.count(MemberRole.OWNER) == 1


@pytest.mark.parametrize(
    ("viewer", "save_buttons"),
    [
        # The owner alone: the admin's and the member's rows, never their own (the last owner).
        pytest.param("owner", 2, id="owner"),
        # The admin: the member's row only (not the owner's, not their own).
        pytest.param("admin", 1, id="admin"),
        pytest.param("member", 0, id="member"),
    ],
)
def test_the_members_page_offers_a_role_choice_only_where_the_change_is_allowed(
    owner: Agency, refill: Refill, client: TestClient, viewer: str, save_buttons: int
) -> None:
    add_person(refill, owner, "admin@acme.test", MemberRole.ADMIN)
    add_person(refill, owner, "member@acme.test", MemberRole.MEMBER)
    if viewer != "owner":
        switch_to(client, f"{viewer}@acme.test")

    page = client.get("/portal/team/members").text

    assert page.count(">Save role</button>") == save_buttons
    assert 'data-label="Role"' in page
    if viewer == "admin":
        assert '<option value="owner"' not in page


# --- CSRF on every form of these pages ------------------------------------------------------


@pytest.mark.parametrize("token", [None, "forged-token"], ids=["no-token", "wrong-token"])
@pytest.mark.parametrize("form", ["password", "role"])
def test_the_forms_refuse_a_post_without_the_sessions_csrf_token(
    owner: Agency, refill: Refill, client: TestClient, token: str | None, form: str
) -> None:
    member_id = add_person(refill, owner, "member@acme.test", MemberRole.MEMBER)
    path, data = {
        "password": (
            "/portal/account/password",
            {
                "current_password": PASSWORD,
                "new_password": NEW_PASSWORD,
                "repeat_password": NEW_PASSWORD,
            },
        ),
        "role": (f"/portal/team/members/{member_id}/role", {"role": "admin"}),
    }[form]
    if token:
        data["csrf_token"] = token

    response = client.post(path, data=data, follow_redirects=False)

    assert response.status_code == 403
    assert "did not come from this page" in response.text
    assert role_of(refill, owner, member_id) == MemberRole.MEMBER
    client.cookies.clear()
    assert sign_in(client, owner.owner_email, PASSWORD).status_code == 303


# --- the audit log page ---------------------------------------------------------------------


def save_settings(client: TestClient, card_id: str, threshold: str) -> None:
    saved = post(
        client,
        "/portal/team/billing/auto-reload",
        {
            "enabled": "on",
            "threshold": threshold,
            "reload_amount": "50.00",
            "payment_method_id": card_id,
        },
    )
    assert saved.status_code == 303, saved.text


def test_the_audit_log_shows_a_settings_change_field_by_field_in_the_agencys_time_zone(
    owner: Agency, refill: Refill, client: TestClient
) -> None:
    post(client, "/portal/team/billing/payment-methods", CARD)
    [card] = services.list_payment_methods(refill.db, agency_id=owner.id).data
    save_settings(client, card.id, "20.00")
    save_settings(client, card.id, "30.00")
    api = {"Authorization": f"Bearer {owner.api_key}"}
    assert (
        client.patch("/v1/agency", json={"timezone": "Europe/Paris"}, headers=api).status_code
        == 200
    )

    page = client.get("/portal/team/audit")

    assert page.status_code == 200
    text = page.text
    assert "When (Europe/Paris)" in text
    rows = re.findall(r'<tr data-testid="audit-row">(.*?)</tr>', text, re.S)
    newest_settings = next(r for r in rows if "Changed the Auto Reload settings" in r)
    assert "threshold 20.00 → 30.00" in newest_settings
    assert "reload amount" not in newest_settings  # unchanged fields are left out
    assert owner.owner_email in newest_settings
    [entry] = [
        e
        for e in audit_entries(refill, owner, "auto_reload.updated")
        if e.before and e.before["threshold"] == "20.00"
    ]
    assert (
        entry.created_at.astimezone(ZoneInfo("Europe/Paris")).strftime("%Y-%m-%d %H:%M")
        in newest_settings
    )
    [key] = services.list_keys(refill.db, agency_id=owner.id).data
    assert f"API key {key.id}" in rows[0]  # the newest: the time zone, through the API
    assert "timezone UTC → Europe/Paris" in rows[0]


def test_the_audit_log_names_the_system_and_shows_the_details_of_one_sided_entries(
    owner: Agency, refill: Refill, client: TestClient
) -> None:
    def suspended(tx: Tx) -> None:
        audit.record(
            tx,
            agency_id=owner.id,
            actor=audit.SYSTEM,
            action="auto_reload.suspended",
            before={"status": "active"},
            after={"status": "suspended", "reason": "expired_card"},
        )

    refill.db.write(suspended)

    rows = re.findall(
        r'<tr data-testid="audit-row">(.*?)</tr>', client.get("/portal/team/audit").text, re.S
    )

    assert 'data-label="Who">system<' in rows[0]
    assert "Suspended Auto Reload" in rows[0]
    assert "status active → suspended" in rows[0]
    assert "reason expired_card" in rows[0]
    assert "email owner@acme-voice.test" in rows[-1]  # the owner added: its details
    assert "role owner" in rows[-1]


def test_the_audit_log_pages_fifty_entries_newest_first_with_an_older_entries_link(
    owner: Agency, refill: Refill, client: TestClient
) -> None:
    def alerts(tx: Tx) -> None:
        for n in range(60):
            audit.record(
                tx,
                agency_id=owner.id,
                actor="cli",
                action="wallet.alerts_changed",
                before={"low_balance_alert": f"{n}.00"},
                after={"low_balance_alert": f"{n + 1}.00"},
            )

    refill.db.write(alerts)

    first = client.get("/portal/team/audit").text
    older = re.search(r'<a href="([^"]+)" rel="next">Older entries</a>', first)
    assert older, first
    second = client.get(older.group(1).replace("&amp;", "&")).text

    first_rows = re.findall(r'<tr data-testid="audit-row">', first)
    changes = re.findall(r"low balance alert (\d+)\.00 →", first + second)
    assert len(first_rows) == 50
    assert changes == [str(n) for n in range(59, -1, -1)]  # newest first, none twice
    assert "Older entries" not in second  # 61 entries: the second page is the last
    assert "Added a member" in second
    assert '<a href="/portal/team/audit">Newest entries</a>' in second


def test_the_audit_log_filters_by_action(owner: Agency, refill: Refill, client: TestClient) -> None:
    post(client, "/portal/team/billing/payment-methods", CARD)

    page = client.get("/portal/team/audit", params={"action": "payment_method.added"}).text
    unknown = client.get("/portal/team/audit", params={"action": "drop table"})
    tampered = client.get("/portal/team/audit", params={"cursor": "not-a-cursor"})

    assert re.findall(r"<td data-label=\"What\">([^<]+)</td>", page) == ["Added a card"]
    assert (unknown.status_code, tampered.status_code) == (422, 422)
    assert "no such kind of entry" in unknown.text


@pytest.mark.parametrize(
    ("role", "status"),
    [
        pytest.param(MemberRole.ADMIN, 200, id="admin-reads"),
        pytest.param(MemberRole.MEMBER, 403, id="member-refused"),
    ],
)
def test_owners_and_admins_read_the_audit_log_and_members_are_refused_in_words(
    owner: Agency, refill: Refill, client: TestClient, role: MemberRole, status: int
) -> None:
    add_person(refill, owner, "someone@acme.test", role)
    switch_to(client, "someone@acme.test")

    page = client.get("/portal/team/audit")

    assert page.status_code == status
    assert "text/html" in page.headers["content-type"]
    if status == 403:
        assert "open to the owners and admins of this agency" in page.text
        assert "audit-row" not in page.text
    else:
        assert "Added a member" in page.text
