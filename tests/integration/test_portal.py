"""The billing portal over HTTP (FastAPI's client), on SQLite and PostgreSQL: sign-in,
sessions, CSRF, roles, isolation between agencies, and forms that work without JS."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from refill import services
from refill.bootstrap import Refill
from refill.db.schema import agencies
from refill.errors import Conflict
from refill.roles import MemberRole
from refill.services import invitations, members, sessions
from refill.web import create_app
from tests.support.cli import count_rows
from tests.support.portal import (
    PASSWORD,
    Agency,
    hidden_csrf,
    make_agency,
    post,
    run_cli,
    settings_of,
    sign_in,
)


def test_signing_in_opens_the_billing_page_with_an_httponly_samesite_session_cookie(
    refill: Refill, client: TestClient
) -> None:
    agency = make_agency(refill)

    response = sign_in(client, agency.owner_email.upper())  # e-mail is case-insensitive

    assert response.status_code == 303
    assert response.headers["location"] == "/portal/team/billing"
    cookie = next(c for c in response.headers.get_list("set-cookie") if "refill_session" in c)
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Secure" not in cookie
    page = client.get("/portal/team/billing")
    assert page.status_code == 200
    assert "Subteams can take calls" not in page.text  # empty wallet
    assert "No credits: calls are being refused" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


@pytest.fixture
def owner(refill: Refill, client: TestClient) -> Agency:
    agency = make_agency(refill)
    assert sign_in(client, agency.owner_email).status_code == 303
    return agency


@pytest.mark.parametrize(
    ("email", "password"),
    [
        pytest.param("owner@acme-voice.test", "wrong password!!", id="wrong-password"),
        pytest.param("nobody@acme-voice.test", PASSWORD, id="unknown-email"),
        pytest.param("not an email", PASSWORD, id="malformed-email"),
    ],
)
def test_a_failed_sign_in_gets_one_message_that_does_not_say_which_part_was_wrong(
    refill: Refill, client: TestClient, email: str, password: str
) -> None:
    make_agency(refill)

    response = sign_in(client, email, password)

    assert response.status_code == 401
    assert "The e-mail or the password is wrong." in response.text
    assert "refill_session" not in response.headers.get("set-cookie", "")


def test_after_five_failures_even_the_right_password_is_refused_for_a_while(
    refill: Refill, client: TestClient
) -> None:
    agency = make_agency(refill)
    for _ in range(sessions.MAX_FAILURES):
        assert sign_in(client, agency.owner_email, "wrong password!!").status_code == 401

    response = sign_in(client, agency.owner_email)

    assert response.status_code == 429
    assert "too many sign-in attempts" in response.text.lower()


def test_the_sign_in_form_without_its_csrf_cookie_is_refused(
    refill: Refill, client: TestClient
) -> None:
    agency = make_agency(refill)

    response = client.post(
        "/portal/login",
        data={"email": agency.owner_email, "password": PASSWORD, "csrf_token": "forged"},
        follow_redirects=False,
    )

    assert response.status_code == 403
    assert "refill_session" not in str(response.headers)


def test_without_a_session_the_pages_send_the_browser_to_sign_in(client: TestClient) -> None:
    for path in (
        "/portal/team/billing",
        "/portal/team/billing/live",
        "/portal/team/members",
        "/portal/team/subteams/live",
        "/portal/team/billing/explain",
    ):
        response = client.get(path, follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (303, "/portal/login")


@pytest.mark.parametrize("token", [None, "forged-token"], ids=["no-token", "wrong-token"])
def test_a_post_without_the_sessions_csrf_token_is_refused_and_changes_nothing(
    owner: Agency, refill: Refill, client: TestClient, token: str | None
) -> None:
    data = {"enabled": "on", "threshold": "20.00", "reload_amount": "50.00"}
    if token:
        data["csrf_token"] = token

    response = client.post("/portal/team/billing/auto-reload", data=data)

    assert response.status_code == 403
    assert "did not come from this page" in response.text
    assert settings_of(refill, owner).auto_reload.status == "off"


def test_the_checklist_alone_is_served_for_the_page_to_refresh_it(
    owner: Agency, refill: Refill, client: TestClient
) -> None:
    page = client.get("/portal/team/billing").text
    assert '<div data-live-url="/portal/team/billing/explain">' in page

    alone = client.get("/portal/team/billing/explain")

    assert alone.status_code == 200
    assert '<details class="explain" id="explain-box"' in alone.text
    assert 'data-verdict="off"' in alone.text
    assert "<html" not in alone.text


def test_forms_work_without_javascript_and_come_back_with_a_notice(
    owner: Agency, refill: Refill, client: TestClient
) -> None:
    added = post(client, "/portal/team/billing/payment-methods", {"token": "pm_card_visa"})
    assert (added.status_code, added.headers["location"]) == (
        303,
        "/portal/team/billing?notice=card_added",
    )
    [card] = services.list_payment_methods(refill.db, agency_id=owner.id).data

    credited = post(
        client,
        "/portal/team/billing/credits",
        {"amount": "30.00", "payment_method_id": card.id, "confirmed": "yes"},
    )
    saved = post(
        client,
        "/portal/team/billing/auto-reload",
        {
            "enabled": "on",
            "threshold": "20.00",
            "reload_amount": "50.00",
            "payment_method_id": card.id,
        },
    )

    assert "?notice=credits_added&added=rld_" in credited.headers["location"]
    assert saved.headers["location"].endswith("notice=auto_reload_saved")
    page = client.get(saved.headers["location"]).text
    assert "Auto Reload settings saved." in page
    assert 'data-testid="balance">$30.00' in page
    assert "Subteams can take calls" in page
    assert "On: below $20.00, Refill charges Visa ending 4242" in page
    assert re.search(r"<dt>Last reload</dt>\s*<dd>\$30\.00 on \d{4}-\d\d-\d\d", page)
    wallet = settings_of(refill, owner)
    assert (wallet.balance, wallet.auto_reload.status) == (30_000_000, "active")
    audit = services.list_audit_log(refill.db, agency_id=owner.id).data
    user_id = members.list_members(refill.db, agency_id=owner.id)[0].user_id
    by_portal = {e.action: e.actor for e in audit if e.action != "member.added"}
    assert by_portal == {
        "payment_method.added": f"user:{user_id}",
        "auto_reload.updated": f"user:{user_id}",
    }


@pytest.mark.parametrize(
    ("fields", "field_id", "words"),
    [
        pytest.param(
            {"threshold": "abc", "reload_amount": "50.00"},
            "f-threshold-error",
            "The minimum threshold must be an amount such as",
            id="not-a-number",
        ),
        pytest.param(
            {"threshold": "20.00", "reload_amount": "1.00"},
            "f-reload_amount-error",
            "The reload amount must be between 5.00 and 10000.00",
            id="below-minimum",
        ),
        pytest.param(
            {"threshold": "-5", "reload_amount": "50.00"},
            "f-threshold-error",
            "The minimum threshold",
            id="negative",
        ),
        pytest.param(
            {"threshold": "20.00", "reload_amount": "50.00", "payment_method_id": ""},
            "auto-card-error",
            "Choose a saved payment method to enable Auto Reload",
            id="no-card",
        ),
    ],
)
def test_invalid_settings_are_shown_next_to_their_field_and_change_nothing(
    owner: Agency,
    refill: Refill,
    client: TestClient,
    fields: dict[str, str],
    field_id: str,
    words: str,
) -> None:
    post(client, "/portal/team/billing/payment-methods", {"token": "pm_card_visa"})
    [card] = services.list_payment_methods(refill.db, agency_id=owner.id).data

    response = post(
        client,
        "/portal/team/billing/auto-reload",
        {"enabled": "on", "payment_method_id": card.id, **fields},
    )

    assert response.status_code == 422
    message = re.search(rf'id="{field_id}">([^<]+)<', response.text)
    assert message, response.text
    assert words in message.group(1)
    assert 'aria-invalid="true"' in response.text
    assert settings_of(refill, owner).auto_reload.status == "off"


def test_a_card_auto_reload_uses_cannot_be_removed_and_the_page_says_why(
    owner: Agency, refill: Refill, client: TestClient
) -> None:
    post(client, "/portal/team/billing/payment-methods", {"token": "pm_card_visa"})
    [card] = services.list_payment_methods(refill.db, agency_id=owner.id).data
    post(
        client,
        "/portal/team/billing/auto-reload",
        {
            "enabled": "on",
            "threshold": "20.00",
            "reload_amount": "50.00",
            "payment_method_id": card.id,
        },
    )

    response = post(client, f"/portal/team/billing/payment-methods/{card.id}/remove", {})

    assert response.status_code == 409
    assert "auto-reload charges this card (the primary card" in response.text
    assert len(services.list_payment_methods(refill.db, agency_id=owner.id).data) == 1


def test_another_agencys_card_can_be_neither_removed_nor_charged_from_this_session(
    owner: Agency, refill: Refill, client: TestClient
) -> None:
    other = make_agency(refill, "Other Agency")
    theirs, _ = services.save_payment_method(
        refill.db, refill.gateway, agency_id=other.id, token="pm_card_visa", actor="test"
    )

    removed = post(client, f"/portal/team/billing/payment-methods/{theirs.id}/remove", {})
    charged = post(
        client, "/portal/team/billing/credits", {"amount": "30.00", "payment_method_id": theirs.id}
    )

    assert removed.status_code == 404
    assert charged.status_code == 404
    assert services.list_payment_methods(refill.db, agency_id=other.id).data == [theirs]
    assert settings_of(refill, owner).balance == 0
    assert services.list_reloads(refill.db, agency_id=other.id).data == []


def test_a_member_sees_the_page_read_only_and_cannot_change_anything(
    owner: Agency, refill: Refill, client: TestClient
) -> None:
    members.add_member(
        refill.db,
        agency_id=owner.id,
        email="viewer@acme.test",
        role=MemberRole.MEMBER,
        password=PASSWORD,
        actor="test",
    )
    client.cookies.clear()
    assert sign_in(client, "viewer@acme.test").status_code == 303

    page = client.get("/portal/team/billing")
    response = post(client, "/portal/team/billing/payment-methods", {"token": "pm_card_visa"})

    assert "read-only access" in page.text
    assert "Save auto reload" not in page.text
    assert response.status_code == 403
    assert "read-only" in response.text
    assert services.list_payment_methods(refill.db, agency_id=owner.id).data == []


def test_an_admin_cannot_remove_the_owner_and_nobody_removes_the_last_owner(
    owner: Agency, refill: Refill, client: TestClient
) -> None:
    owner_id = members.list_members(refill.db, agency_id=owner.id)[0].user_id
    members.add_member(
        refill.db,
        agency_id=owner.id,
        email="admin@acme.test",
        role=MemberRole.ADMIN,
        password=PASSWORD,
        actor="test",
    )
    client.cookies.clear()
    assert sign_in(client, "admin@acme.test").status_code == 303
    admin = sessions.session_for(refill.db, client.cookies.get("refill_session"))
    assert admin is not None

    by_admin = post(client, f"/portal/team/members/{owner_id}/remove", {})

    assert by_admin.status_code == 403
    assert "only an owner can remove an owner" in by_admin.text
    with pytest.raises(Conflict, match="last owner"):
        members.remove_member(
            refill.db,
            agency_id=owner.id,
            user_id=owner_id,
            by=MemberRole.OWNER,
            actor=f"user:{owner_id}",
        )
    assert {m.role for m in members.list_members(refill.db, agency_id=owner.id)} == {
        "owner",
        "admin",
    }


def test_signing_out_ends_the_session_on_the_server(owner: Agency, client: TestClient) -> None:
    token = client.cookies.get("refill_session")

    response = post(client, "/portal/logout", {})

    assert (response.status_code, response.headers["location"]) == (303, "/portal/login")
    client.cookies.set("refill_session", str(token))  # a copied cookie opens nothing now
    assert client.get("/portal/team/billing", follow_redirects=False).status_code == 303


def test_the_history_lists_reloads_and_top_ups_newest_first_and_pages(
    owner: Agency, refill: Refill, client: TestClient
) -> None:
    post(client, "/portal/team/billing/payment-methods", {"token": "pm_card_visa"})
    [card] = services.list_payment_methods(refill.db, agency_id=owner.id).data
    for amount in range(5, 5 + 23):
        post(
            client,
            "/portal/team/billing/credits",
            {"amount": f"{amount}.00", "payment_method_id": card.id, "confirmed": "yes"},
        )

    first = client.get("/portal/team/billing").text
    amounts = re.findall(
        r'data-label="Amount" class="num">\$(\d+\.\d\d)<',
        first.split('id="history-h"')[1].split("</table>")[0],
    )
    older = re.search(r'href="(/portal/team/billing\?cursor=[^"]+)"', first)

    assert amounts == [f"{a}.00" for a in range(27, 7, -1)]  # newest first, 20 a page
    assert older
    second = client.get(older.group(1).replace("&amp;", "&")).text
    rest = re.findall(
        r'data-label="Amount" class="num">\$(\d+\.\d\d)<',
        second.split('id="history-h"')[1].split("</table>")[0],
    )
    assert rest == ["7.00", "6.00", "5.00"]


def state_of(refill: Refill, agency: Agency) -> tuple[object, ...]:
    """What a refused change must leave as it was: balance, settings, cards, audit log."""
    wallet = settings_of(refill, agency)
    cards = services.list_payment_methods(refill.db, agency_id=agency.id).data
    audit = services.list_audit_log(refill.db, agency_id=agency.id, limit=100).data
    return wallet.balance, wallet.auto_reload, [c.id for c in cards], len(audit)


def test_a_post_on_a_tls_request_sets_a_secure_session_cookie(refill: Refill) -> None:
    agency = make_agency(refill)
    with TestClient(create_app(refill), base_url="https://portal.test") as secure_client:
        response = sign_in(secure_client, agency.owner_email)

    cookie = next(c for c in response.headers.get_list("set-cookie") if "refill_session" in c)
    assert "Secure" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie


def test_sign_in_is_also_limited_per_client_address_across_e_mails(
    refill: Refill, client: TestClient
) -> None:
    agency = make_agency(refill)
    for n in range(sessions.MAX_FAILURES * 4):  # four times the per-e-mail limit, spread out
        assert sign_in(client, f"guess{n}@acme-voice.test", "wrong password!!").status_code == 401

    response = sign_in(client, agency.owner_email)  # right password, same address

    assert response.status_code == 429
    assert "refill_session" not in response.headers.get("set-cookie", "")


@pytest.mark.parametrize(
    ("path", "data"),
    [
        pytest.param("/portal/team/billing/credits", {"amount": "30.00"}, id="add-credits"),
        pytest.param(
            "/portal/team/billing/auto-reload",
            {"enabled": "on", "threshold": "20.00", "reload_amount": "50.00"},
            id="auto-reload",
        ),
        pytest.param(
            "/portal/team/billing/payment-methods", {"token": "pm_card_visa"}, id="add-card"
        ),
        pytest.param("/portal/team/billing/payment-methods/{card}/remove", {}, id="remove-card"),
        pytest.param(
            "/portal/team/members", {"email": "new@acme.test", "role": "admin"}, id="invite"
        ),
        pytest.param("/portal/team/members/{owner}/remove", {}, id="remove-owner"),
    ],
)
def test_a_member_is_refused_every_change_with_403_and_nothing_changes(
    owner: Agency, refill: Refill, client: TestClient, path: str, data: dict[str, str]
) -> None:
    card, _ = services.save_payment_method(
        refill.db, refill.gateway, agency_id=owner.id, token="pm_card_visa", actor="test"
    )
    owner_id = members.list_members(refill.db, agency_id=owner.id)[0].user_id
    members.add_member(
        refill.db,
        agency_id=owner.id,
        email="viewer@acme.test",
        role=MemberRole.MEMBER,
        password=PASSWORD,
        actor="test",
    )
    client.cookies.clear()
    assert sign_in(client, "viewer@acme.test").status_code == 303
    before = state_of(refill, owner)

    response = post(
        client, path.format(card=card.id, owner=owner_id), {"payment_method_id": card.id, **data}
    )

    assert response.status_code == 403
    assert "text/html" in response.headers["content-type"]
    assert "read-only" in response.text
    assert state_of(refill, owner) == before
    assert len(members.list_members(refill.db, agency_id=owner.id)) == 2
    assert services.list_reloads(refill.db, agency_id=owner.id).data == []


def test_ids_of_another_agency_in_urls_and_forms_reach_nothing_of_it(
    owner: Agency, refill: Refill, client: TestClient
) -> None:
    other = make_agency(refill, "Other Agency")
    their_card, _ = services.save_payment_method(
        refill.db, refill.gateway, agency_id=other.id, token="pm_card_visa", actor="test"
    )
    their_owner = members.list_members(refill.db, agency_id=other.id)[0].user_id
    before = state_of(refill, other)

    answers = [
        client.get(f"/portal/team/billing?agency_id={other.id}").text,
        post(client, f"/portal/team/members/{their_owner}/remove", {}).status_code,
        post(
            client,
            "/portal/team/billing/auto-reload",
            {
                "enabled": "on",
                "threshold": "20.00",
                "reload_amount": "50.00",
                "payment_method_id": their_card.id,
            },
        ).status_code,
        post(client, "/portal/team/switch", {"agency_id": other.id}).status_code,
    ]

    page, removed, saved, switched = answers
    assert "Acme Voice" in page
    assert "Other Agency" not in page
    assert their_card.id not in page
    assert (removed, saved, switched) == (404, 422, 404)
    assert state_of(refill, other) == before
    assert len(members.list_members(refill.db, agency_id=other.id)) == 1
    assert settings_of(refill, owner).auto_reload.status == "off"


def test_a_user_of_two_agencies_switches_between_them_and_never_to_a_third(
    owner: Agency, refill: Refill, client: TestClient
) -> None:
    second = make_agency(refill, "Second Agency")
    third = make_agency(refill, "Third Agency")
    members.add_member(
        refill.db,
        agency_id=second.id,
        email=owner.owner_email,
        role=MemberRole.MEMBER,
        password=None,
        actor="cli",
        attach_existing=True,  # an operator's doing: the page never attaches existing users
    )

    page = client.get("/portal/team/billing").text
    switched = post(client, "/portal/team/switch", {"agency_id": second.id})
    on_second = client.get("/portal/team/billing").text
    refused = post(client, "/portal/team/switch", {"agency_id": third.id})

    assert 'label for="switch-agency">Agency<' in page
    assert "Second Agency" in page
    assert "Third Agency" not in page
    assert (switched.status_code, switched.headers["location"]) == (303, "/portal/team/billing")
    assert "Second Agency · owner@acme-voice.test (member)" in on_second
    assert "read-only access" in on_second
    assert refused.status_code == 404
    assert "not a member of that agency" in refused.text
    session = sessions.session_for(refill.db, client.cookies.get("refill_session"))
    assert session is not None
    assert session.agency_id == second.id


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("GET", "/portal/team/nowhere", 404, id="unknown-page"),
        pytest.param("GET", "/portal/logout", 405, id="wrong-method"),
        pytest.param("POST", "/portal/team/billing", 405, id="post-to-a-page"),
    ],
)
def test_a_refusal_under_portal_is_a_page_while_the_api_keeps_problem_json(
    owner: Agency, client: TestClient, method: str, path: str, status: int
) -> None:
    page = client.request(method, path)
    api = client.request(method, path.replace("/portal", "/v1"))

    assert page.status_code == status
    assert page.headers["content-type"].startswith("text/html")
    assert '<p class="error" role="alert">' in page.text
    assert "Back to billing" in page.text
    assert api.headers["content-type"] == "application/problem+json"


def test_adding_credits_with_a_declined_card_says_so_and_credits_nothing(
    owner: Agency, refill: Refill, client: TestClient
) -> None:
    post(client, "/portal/team/billing/payment-methods", {"token": "pm_card_chargeCustomerFail"})
    [card] = services.list_payment_methods(refill.db, agency_id=owner.id).data

    response = post(
        client,
        "/portal/team/billing/credits",
        {"amount": "30.00", "payment_method_id": card.id, "confirmed": "yes"},
    )

    assert response.status_code == 402
    assert (
        "Visa ending 0341 was declined: the bank declined the charge without saying why. "
        "Nothing was charged." in response.text
    )
    assert settings_of(refill, owner).balance == 0
    [attempt] = services.list_reloads(refill.db, agency_id=owner.id).data
    assert (attempt.trigger, attempt.status) == ("manual", "failed")


def test_cli_creates_the_owner_with_the_password_from_stdin_and_they_can_sign_in(
    db_url: str, refill: Refill, client: TestClient
) -> None:
    created = run_cli(
        ["agency", "create", "--name", "Cli Agency", "--owner-email", "Boss@Cli.test"],
        db_url,
        stdin=PASSWORD + "\n",
        extra=["--password-stdin", "--json"],
    )

    assert created.returncode == 0, created.stderr
    out = json.loads(created.stdout)
    assert out["owner_email"] == "boss@cli.test"
    assert out["api_key"]
    assert PASSWORD not in created.stdout + created.stderr
    assert sign_in(client, "boss@cli.test").status_code == 303
    [member] = members.list_members(refill.db, agency_id=out["agency_id"])
    assert member.role == "owner"


# The refusal comes before the database is opened: one engine proves it.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("extra", "stdin", "words"),
    [
        pytest.param([], PASSWORD + "\n", "--owner-email needs --password-stdin", id="no-stdin"),
        pytest.param(
            ["--password-stdin"], "short\n", "at least 12 characters", id="short-password"
        ),
    ],
)
def test_cli_refuses_an_owner_without_a_good_password_and_creates_no_agency(
    db_url: str, extra: list[str], stdin: str, words: str
) -> None:
    created = run_cli(
        ["agency", "create", "--name", "Cli Agency", "--owner-email", "boss@cli.test"],
        db_url,
        stdin=stdin,
        extra=extra,
    )

    assert created.returncode != 0
    assert words in " ".join(created.stderr.split())
    assert count_rows(db_url, agencies) == 0


def test_the_same_add_credits_form_sent_twice_charges_the_card_once(
    owner: Agency, refill: Refill, client: TestClient
) -> None:
    post(client, "/portal/team/billing/payment-methods", {"token": "pm_card_visa"})
    [card] = services.list_payment_methods(refill.db, agency_id=owner.id).data
    review = post(
        client, "/portal/team/billing/credits", {"amount": "$30", "payment_method_id": card.id}
    ).text
    assert "Charge <strong>$30.00</strong> to <strong>Visa ending 4242</strong>" in review
    assert not refill.gateway.calls  # type: ignore[attr-defined]  # nothing charged to review
    form = {
        "amount": re.findall(r'name="amount" value="([^"]+)"', review)[0],
        "payment_method_id": card.id,
        "csrf_token": hidden_csrf(review),
        "request_key": re.findall(r'name="request_key" value="([^"]+)"', review)[0],
        "confirmed": "yes",
    }

    first = client.post("/portal/team/billing/credits", data=form, follow_redirects=False)
    again = client.post("/portal/team/billing/credits", data=form, follow_redirects=False)

    assert first.status_code == again.status_code == 303
    assert settings_of(refill, owner).balance == 30_000_000
    assert len(services.list_reloads(refill.db, agency_id=owner.id).data) == 1
    assert len(refill.gateway.calls) == 1  # type: ignore[attr-defined]


def test_an_admin_invites_members_and_admins_but_cannot_make_an_owner(
    owner: Agency, refill: Refill, client: TestClient
) -> None:
    members.add_member(
        refill.db,
        agency_id=owner.id,
        email="admin@acme.test",
        role=MemberRole.ADMIN,
        password=PASSWORD,
        actor="test",
    )
    client.cookies.clear()
    assert sign_in(client, "admin@acme.test").status_code == 303

    invited = post(client, "/portal/team/members", {"email": "m@acme.test", "role": "member"})
    refused = post(client, "/portal/team/members", {"email": "o@acme.test", "role": "owner"})

    assert invited.headers["location"] == "/portal/team/members?notice=invitation_sent"
    assert refused.status_code == 403
    assert '<p class="field-error">only an owner can make another owner</p>' in refused.text
    pending = invitations.pending_invitations(refill.db, agency_id=owner.id)
    assert [(i.email, i.role) for i in pending] == [("m@acme.test", "member")]
    # Nobody joins before accepting.
    roles = {m.email: m.role for m in members.list_members(refill.db, agency_id=owner.id)}
    assert roles == {owner.owner_email: "owner", "admin@acme.test": "admin"}


def test_inviting_an_email_that_has_an_account_answers_as_for_a_new_one_and_attaches_no_one(
    owner: Agency, refill: Refill, client: TestClient
) -> None:
    stranger = make_agency(refill, "Stranger Agency")  # an account in another agency

    existing = post(client, "/portal/team/members", {"email": stranger.owner_email})
    fresh = post(client, "/portal/team/members", {"email": "fresh@acme.test"})

    assert existing.status_code == fresh.status_code == 303
    assert existing.headers["location"] == fresh.headers["location"]
    emails = {m.email for m in members.list_members(refill.db, agency_id=owner.id)}
    assert emails == {owner.owner_email}
    # The account in the other agency is untouched: its password still signs it in there.
    client.cookies.clear()
    assert sign_in(client, stranger.owner_email).status_code == 303
    actions = [e.action for e in services.list_audit_log(refill.db, agency_id=owner.id).data]
    assert actions[:2] == ["member.invited", "member.invited"]
    assert "member.added" not in actions[:2]
