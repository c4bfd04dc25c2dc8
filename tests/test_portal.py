"""The billing portal over HTTP (FastAPI's client), on SQLite and PostgreSQL: sign-in,
sessions, CSRF, roles, isolation between agencies, and forms that work without JS."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from refill import services
from refill.bootstrap import Refill
from refill.portal import auth

PASSWORD = "correct horse battery"


@dataclass
class Agency:
    id: str
    api_key: str
    owner_email: str


def make_agency(refill: Refill, name: str = "Acme Voice") -> Agency:
    agency, key = services.create_agency(refill.db, name=name)
    email = f"owner@{name.lower().replace(' ', '-')}.test"
    auth.add_member(
        refill.db, agency_id=agency.id, email=email, role="owner", password=PASSWORD, actor="test"
    )
    return Agency(agency.id, key.secret, email)


def hidden_csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> Response:
    form = client.get("/portal/login")
    return client.post(
        "/portal/login",
        data={"email": email, "password": password, "csrf_token": hidden_csrf(form.text)},
        follow_redirects=False,
    )


def page_csrf(client: TestClient) -> str:
    page = client.get("/portal/team/billing")
    assert page.status_code == 200, page.text[:300]
    return hidden_csrf(page.text)


def post(client: TestClient, path: str, data: dict[str, str]) -> Response:
    return client.post(path, data={**data, "csrf_token": page_csrf(client)}, follow_redirects=False)


@pytest.fixture
def owner(refill: Refill, client: TestClient) -> Agency:
    agency = make_agency(refill)
    assert sign_in(client, agency.owner_email).status_code == 303
    return agency


def settings_of(refill: Refill, agency: Agency) -> services.WalletView:
    return services.get_wallet(refill.db, refill.policy, agency_id=agency.id)


def test_signing_in_opens_the_billing_page_with_an_httponly_samesite_session_cookie(
    refill: Refill, client: TestClient
) -> None:
    agency = make_agency(refill)

    response = sign_in(client, agency.owner_email.upper())  # e-mail is case-insensitive

    assert response.status_code == 303
    assert response.headers["location"] == "/portal/team/billing"
    cookie = next(c for c in response.headers.get_list("set-cookie") if "refill_session" in c)
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    page = client.get("/portal/team/billing")
    assert page.status_code == 200
    assert "Subteams can take calls" not in page.text  # empty wallet
    assert "No credits: calls are being refused" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


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
    for _ in range(auth.MAX_FAILURES):
        assert sign_in(client, agency.owner_email, "wrong password!!").status_code == 401

    response = sign_in(client, agency.owner_email)

    assert response.status_code == 429
    assert "too many failed sign-ins" in response.text.lower()


def test_the_sign_in_form_without_its_csrf_cookie_is_refused(
    refill: Refill, client: TestClient
) -> None:
    agency = make_agency(refill)

    response = client.post(
        "/portal/login",
        data={"email": agency.owner_email, "password": PASSWORD, "csrf_token": "forged"},
        follow_redirects=False,
    )

    assert response.status_code == 403 and "refill_session" not in str(response.headers)


def test_without_a_session_the_pages_send_the_browser_to_sign_in(client: TestClient) -> None:
    for path in ("/portal/team/billing", "/portal/team/billing/live", "/portal/team/members"):
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
        client, "/portal/team/billing/credits", {"amount": "30.00", "payment_method_id": card.id}
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

    assert credited.headers["location"].endswith("notice=credits_added")
    assert saved.headers["location"].endswith("notice=auto_reload_saved")
    page = client.get(saved.headers["location"]).text
    assert "Auto-reload settings saved." in page
    assert 'data-testid="balance">30.00' in page and "Subteams can take calls" in page
    assert "Auto-reload is on" in page
    wallet = settings_of(refill, owner)
    assert (wallet.balance, wallet.auto_reload.status) == (30_000_000, "active")
    audit = services.list_audit_log(refill.db, agency_id=owner.id).data
    user_id = auth.list_members(refill.db, agency_id=owner.id)[0].user_id
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
            "threshold-error",
            "The minimum threshold must be a decimal",
            id="not-a-number",
        ),
        pytest.param(
            {"threshold": "20.00", "reload_amount": "1.00"},
            "reload-amount-error",
            "The reload amount must be between 5.00 and 10000.00",
            id="below-minimum",
        ),
        pytest.param(
            {"threshold": "-5", "reload_amount": "50.00"},
            "threshold-error",
            "The minimum threshold",
            id="negative",
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
    assert "auto-reload uses this payment method" in response.text
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
    auth.add_member(
        refill.db,
        agency_id=owner.id,
        email="viewer@acme.test",
        role="member",
        password=PASSWORD,
        actor="test",
    )
    client.cookies.clear()
    assert sign_in(client, "viewer@acme.test").status_code == 303

    page = client.get("/portal/team/billing")
    response = post(client, "/portal/team/billing/payment-methods", {"token": "pm_card_visa"})

    assert "read-only access" in page.text and "Save auto reload" not in page.text
    assert response.status_code == 403 and "read-only" in response.text
    assert services.list_payment_methods(refill.db, agency_id=owner.id).data == []


def test_an_admin_cannot_remove_the_owner_and_nobody_removes_the_last_owner(
    owner: Agency, refill: Refill, client: TestClient
) -> None:
    owner_id = auth.list_members(refill.db, agency_id=owner.id)[0].user_id
    auth.add_member(
        refill.db,
        agency_id=owner.id,
        email="admin@acme.test",
        role="admin",
        password=PASSWORD,
        actor="test",
    )
    client.cookies.clear()
    assert sign_in(client, "admin@acme.test").status_code == 303
    admin = auth.session_for(refill.db, client.cookies.get("refill_session"))
    assert admin is not None

    by_admin = post(client, f"/portal/team/members/{owner_id}/remove", {})

    assert by_admin.status_code == 403 and "only an owner can remove an owner" in by_admin.text
    owner_session = auth.PortalSession(
        owner_id, owner.owner_email, owner.id, "Acme Voice", "owner", "x"
    )
    with pytest.raises(services.Conflict, match="last owner"):
        auth.remove_member(refill.db, owner_session, user_id=owner_id)
    assert {m.role for m in auth.list_members(refill.db, agency_id=owner.id)} == {"owner", "admin"}


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
            {"amount": f"{amount}.00", "payment_method_id": card.id},
        )

    first = client.get("/portal/team/billing").text
    amounts = re.findall(
        r'class="num">(\d+\.\d\d) USD', first.split('id="history-h"')[1].split("</table>")[0]
    )
    older = re.search(r'href="(/portal/team/billing\?cursor=[^"]+)"', first)

    assert amounts == [f"{a}.00" for a in range(27, 7, -1)]  # newest first, 20 a page
    assert older
    second = client.get(older.group(1).replace("&amp;", "&")).text
    rest = re.findall(
        r'class="num">(\d+\.\d\d) USD', second.split('id="history-h"')[1].split("</table>")[0]
    )
    assert rest == ["7.00", "6.00", "5.00"]
