"""Joining an agency by invitation and resetting a forgotten password, end to end on both
engines: the e-mail a real SMTP server receives, the link in it, and the pages it opens."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from refill import services
from refill.bootstrap import Refill
from refill.clock import FrozenClock
from refill.roles import MemberRole
from refill.services import invitations, members, resets, sessions
from refill.web import create_app
from tests.support.mailbox import Mailbox, Received
from tests.support.notifying import notifying_refill
from tests.support.portal import PASSWORD, Agency, hidden_csrf, make_agency, sign_in

NEW_PASSWORD = "a brand new passphrase"
SENT = "/portal/team/members?notice=invitation_sent"
JOINED = "/portal/team/billing?notice=joined"
CHANGED = "/portal/login?notice=password_changed"
GONE = "not valid any more"
LINK = re.compile(r"https://billing\.example\.com(/portal/\S+)")


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox().start()
    yield box
    box.stop()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 11, 25, 12, tzinfo=UTC))


@pytest.fixture
def refill(db_url: str, mailbox: Mailbox, clock: FrozenClock) -> Iterator[Refill]:
    service = notifying_refill(db_url, smtp_url=mailbox.url, clock=clock)
    yield service
    service.close()


@pytest.fixture
def client(refill: Refill) -> Iterator[TestClient]:
    with TestClient(create_app(refill)) as browser:
        yield browser


@pytest.fixture
def visitor(refill: Refill) -> Iterator[TestClient]:
    """A second browser: the person the e-mail went to."""
    with TestClient(create_app(refill)) as browser:
        yield browser


@pytest.fixture
def owner(refill: Refill, client: TestClient) -> Agency:
    agency = make_agency(refill)
    assert sign_in(client, agency.owner_email).status_code == 303
    return agency


def link_in(received: Received) -> tuple[str, str]:
    """The path and token of the link in an e-mail's text."""
    found = LINK.search(received.text)
    assert found, received.text
    parts = urlsplit(found.group(1))
    [token] = parse_qs(parts.query)["token"]
    return parts.path, token


def submit(client: TestClient, path: str, data: dict[str, str]) -> Response:
    response: Response = client.post(path, data=data, follow_redirects=False)
    return response


def send_form(client: TestClient, path: str, data: dict[str, str]) -> Response:
    """A signed-in form, with the session's CSRF token."""
    csrf = hidden_csrf(client.get("/portal/team/members").text)
    return submit(client, path, {**data, "csrf_token": csrf})


def invite(client: TestClient, email: str, role: str = "member") -> Response:
    return send_form(client, "/portal/team/members", {"email": email, "role": role})


def public_csrf(client: TestClient) -> str:
    """The double-submit token of the forms shown before sign-in (one cookie for all)."""
    return hidden_csrf(client.get("/portal/forgot").text)


def post_link(client: TestClient, path: str, token: str, password: str | None = None) -> Response:
    data = {"token": token, "csrf_token": public_csrf(client)}
    if password is not None:
        data["password"] = password
    return submit(client, path, data)


def open_link(client: TestClient, path: str, token: str) -> Response:
    response: Response = client.get(path, params={"token": token})
    return response


def ask_reset(client: TestClient, email: str) -> Response:
    return submit(client, "/portal/forgot", {"email": email, "csrf_token": public_csrf(client)})


def roles_of(refill: Refill, agency_id: str) -> dict[str, MemberRole]:
    return {m.email: m.role for m in members.list_members(refill.db, agency_id=agency_id)}


def actions(refill: Refill, agency_id: str) -> list[str]:
    """The agency's audit log, newest first."""
    return [e.action for e in services.list_audit_log(refill.db, agency_id=agency_id).data]


def pending(refill: Refill, agency_id: str) -> list[str]:
    return [i.email for i in invitations.pending_invitations(refill.db, agency_id=agency_id)]


def same_page(one: Response, two: Response, *addresses: str) -> bool:
    """The same status and page, but for the address each one was about."""
    texts = [r.text.replace(a, "ADDRESS") for r, a in zip((one, two), addresses, strict=True)]
    return one.status_code == two.status_code and texts[0] == texts[1]


def gone(response: Response) -> bool:
    """The page of a link that is not valid any more (used, replaced, withdrawn, late)."""
    return response.status_code == 404 and GONE in response.text


def settled(refill: Refill, mailbox: Mailbox) -> list[Received]:
    """Every e-mail, once all the work that was due has run."""
    refill.notifier.run_due_work(wait=True)
    return list(mailbox.messages)


# --- invitations ---------------------------------------------------------------------------


def test_an_invited_new_address_sets_a_password_and_joins_signed_in_with_the_invited_role(
    owner: Agency, refill: Refill, client: TestClient, visitor: TestClient, mailbox: Mailbox
) -> None:
    sent = invite(client, "New.Person@Example.com", "admin")

    assert (sent.status_code, sent.headers["location"]) == (303, SENT)
    [mail] = mailbox.wait_for(1)
    assert mail.to == ["new.person@example.com"]
    assert mail.message["To"] == "new.person@example.com"
    assert "Acme Voice" in mail.subject
    assert "as admin" in mail.text
    path, token = link_in(mail)
    assert path.startswith("/portal/invitations/inv_")
    assert roles_of(refill, owner.id) == {owner.owner_email: MemberRole.OWNER}

    page = open_link(visitor, path, token)
    assert page.status_code == 200
    assert "Join the billing page of Acme Voice" in page.text
    assert 'name="password"' in page.text

    joined = post_link(visitor, path, token, NEW_PASSWORD)

    assert (joined.status_code, joined.headers["location"]) == (303, JOINED)
    assert "refill_session" in joined.cookies
    billing = visitor.get(JOINED)
    assert billing.status_code == 200
    assert "you are now a member" in billing.text
    assert "new.person@example.com (admin)" in billing.text
    assert roles_of(refill, owner.id) == {
        owner.owner_email: MemberRole.OWNER,
        "new.person@example.com": MemberRole.ADMIN,
    }
    assert actions(refill, owner.id)[:2] == ["member.added", "member.invited"]


def test_an_invitation_link_works_once_and_a_second_use_changes_nothing(
    owner: Agency, refill: Refill, client: TestClient, visitor: TestClient, mailbox: Mailbox
) -> None:
    invite(client, "once@example.com")
    path, token = link_in(mailbox.wait_for(1)[0])
    assert post_link(visitor, path, token, NEW_PASSWORD).status_code == 303
    team, log = roles_of(refill, owner.id), actions(refill, owner.id)

    again = post_link(visitor, path, token)  # signed in as the invited address now

    assert gone(again)
    with TestClient(create_app(refill)) as stranger:
        assert gone(open_link(stranger, path, token))
        second = post_link(stranger, path, token, "another passphrase")
        assert gone(second)
        assert "refill_session" not in second.cookies
        assert sign_in(stranger, "once@example.com", NEW_PASSWORD).status_code == 303
    assert roles_of(refill, owner.id) == team
    assert actions(refill, owner.id) == log


def test_an_invitation_expires_after_seven_days(
    owner: Agency,
    refill: Refill,
    client: TestClient,
    visitor: TestClient,
    mailbox: Mailbox,
    clock: FrozenClock,
) -> None:
    invite(client, "late@example.com")
    path, token = link_in(mailbox.wait_for(1)[0])
    clock.advance(invitations.VALID_FOR - timedelta(seconds=1))
    assert open_link(visitor, path, token).status_code == 200

    clock.advance(timedelta(seconds=2))

    assert gone(open_link(visitor, path, token))
    assert gone(post_link(visitor, path, token, NEW_PASSWORD))
    assert roles_of(refill, owner.id) == {owner.owner_email: MemberRole.OWNER}
    assert pending(refill, owner.id) == []


def test_an_address_with_an_account_is_invited_alike_and_joins_only_after_signing_in(
    owner: Agency, refill: Refill, client: TestClient, visitor: TestClient, mailbox: Mailbox
) -> None:
    other = make_agency(refill, "Beta Calls")
    for_new = invite(client, "fresh@example.com", "member")
    for_existing = invite(client, other.owner_email.upper(), "admin")

    assert [(r.status_code, r.headers["location"]) for r in (for_new, for_existing)] == [
        (303, SENT)
    ] * 2
    assert roles_of(refill, owner.id) == {owner.owner_email: MemberRole.OWNER}
    mail = next(m for m in mailbox.wait_for(2) if m.to == [other.owner_email])
    path, token = link_in(mail)

    page = open_link(visitor, path, token)
    assert page.status_code == 200
    assert "Sign in to accept" in page.text
    assert 'name="password"' not in page.text
    found = re.search(r'href="(/portal/login\?next=[^"]+)"', page.text)
    assert found, page.text
    login = visitor.get(html.unescape(found.group(1)))
    next_field = re.search(r'name="next" value="([^"]*)"', login.text)
    assert next_field, login.text
    back_to = html.unescape(next_field.group(1))
    assert back_to == f"{path}?token={token}"
    signed_in = submit(
        visitor,
        "/portal/login",
        {
            "email": other.owner_email,
            "password": PASSWORD,
            "csrf_token": hidden_csrf(login.text),
            "next": back_to,
        },
    )
    assert (signed_in.status_code, signed_in.headers["location"]) == (303, back_to)
    offer = visitor.get(back_to)
    assert "Accept and open the billing page" in offer.text
    assert 'name="password"' not in offer.text

    accepted = post_link(visitor, path, token)

    assert (accepted.status_code, accepted.headers["location"]) == (303, JOINED)
    assert f"Acme Voice · {other.owner_email} (admin)" in visitor.get(JOINED).text
    assert roles_of(refill, owner.id) == {
        owner.owner_email: MemberRole.OWNER,
        other.owner_email: MemberRole.ADMIN,
    }
    assert roles_of(refill, other.id) == {other.owner_email: MemberRole.OWNER}
    with TestClient(create_app(refill)) as fresh:
        assert sign_in(fresh, other.owner_email, PASSWORD).status_code == 303


def test_an_invitation_is_refused_to_someone_signed_in_as_another_address(
    owner: Agency, refill: Refill, client: TestClient, visitor: TestClient, mailbox: Mailbox
) -> None:
    invite(client, "someone@example.com")
    path, token = link_in(mailbox.wait_for(1)[0])
    page = open_link(client, path, token)  # the owner's browser, signed in
    assert f"You are signed in as {owner.owner_email}" in page.text
    assert "Accept and open" not in page.text

    refused = post_link(client, path, token)

    assert refused.status_code == 403
    assert "sent to another address" in refused.text
    assert roles_of(refill, owner.id) == {owner.owner_email: MemberRole.OWNER}
    assert pending(refill, owner.id) == ["someone@example.com"]
    assert open_link(visitor, path, token).status_code == 200  # still the addressee's


def test_a_new_invitation_replaces_the_pending_one_and_a_withdrawn_link_stops_working(
    owner: Agency, refill: Refill, client: TestClient, visitor: TestClient, mailbox: Mailbox
) -> None:
    invite(client, "twice@example.com", "member")
    invite(client, "twice@example.com", "admin")
    links = {
        ("admin" if "as admin" in m.text else "member"): link_in(m) for m in mailbox.wait_for(2)
    }

    assert gone(open_link(visitor, *links["member"]))
    assert "<strong>admin</strong>" in open_link(visitor, *links["admin"]).text
    [waiting] = invitations.pending_invitations(refill.db, agency_id=owner.id)
    assert (waiting.role, f"/portal/invitations/{waiting.id}") == ("admin", links["admin"][0])

    withdrawn = send_form(client, f"/portal/team/invitations/{waiting.id}/revoke", {})

    assert withdrawn.headers["location"] == "/portal/team/members?notice=invitation_revoked"
    assert gone(open_link(visitor, *links["admin"]))
    assert pending(refill, owner.id) == []
    assert actions(refill, owner.id)[0] == "member.invitation_revoked"


def test_a_member_cannot_invite_and_an_admin_cannot_invite_an_owner(
    refill: Refill, client: TestClient, visitor: TestClient, mailbox: Mailbox
) -> None:
    agency = make_agency(refill)
    for email, role in (("viewer@acme-voice.test", "member"), ("boss@acme-voice.test", "admin")):
        members.add_member(
            refill.db,
            agency_id=agency.id,
            email=email,
            role=MemberRole(role),
            password=PASSWORD,
            actor="test",
        )
    assert sign_in(client, "viewer@acme-voice.test").status_code == 303
    assert sign_in(visitor, "boss@acme-voice.test").status_code == 303

    by_member = invite(client, "x@example.com", "member")
    by_admin = invite(visitor, "y@example.com", "owner")

    assert by_member.status_code == by_admin.status_code == 403
    assert "read-only" in by_member.text
    assert "only an owner can make another owner" in by_admin.text
    assert invite(visitor, "z@example.com", "admin").status_code == 303  # admins may invite
    mailbox.wait_for(1)
    assert [m.to for m in settled(refill, mailbox)] == [["z@example.com"]]
    assert pending(refill, agency.id) == ["z@example.com"]


def test_the_twenty_first_invitation_in_fifteen_minutes_is_refused_and_sends_nothing(
    owner: Agency, refill: Refill, client: TestClient, mailbox: Mailbox, clock: FrozenClock
) -> None:
    allowed = 20  # the promise, not the constant: the 21st is refused
    for n in range(allowed):
        assert invite(client, f"person{n}@example.com").status_code == 303

    refused = invite(client, "one-too-many@example.com")

    assert refused.status_code == 429
    assert "too many invitations" in refused.text
    mailbox.wait_for(allowed)
    received = settled(refill, mailbox)
    assert len(received) == allowed
    assert ["one-too-many@example.com"] not in [m.to for m in received]
    assert len(pending(refill, owner.id)) == allowed
    clock.advance(sessions.LOCKOUT)
    assert invite(client, "one-too-many@example.com").status_code == 303  # a new window
    assert mailbox.wait_for(allowed + 1)[-1].to == ["one-too-many@example.com"]


# --- forgotten passwords -------------------------------------------------------------------


def test_forgot_password_mails_a_reset_link_to_a_known_address_and_answers_alike_otherwise(
    refill: Refill, visitor: TestClient, mailbox: Mailbox
) -> None:
    agency = make_agency(refill)

    known = ask_reset(visitor, agency.owner_email)
    unknown = ask_reset(visitor, "nobody@acme-voice.test")

    [mail] = mailbox.wait_for(1)
    assert mail.to == [agency.owner_email]
    assert "Reset your Refill password" in mail.subject
    assert link_in(mail)[0].startswith("/portal/reset/pwr_")
    assert known.status_code == 200
    assert "a link to set a new password is on its way" in known.text
    assert same_page(known, unknown, agency.owner_email, "nobody@acme-voice.test")
    assert len(settled(refill, mailbox)) == 1


def test_a_reset_link_sets_the_password_ends_old_sessions_and_works_once(
    refill: Refill, client: TestClient, visitor: TestClient, mailbox: Mailbox
) -> None:
    agency = make_agency(refill)
    assert sign_in(client, agency.owner_email).status_code == 303  # a session from before
    ask_reset(visitor, agency.owner_email)
    path, token = link_in(mailbox.wait_for(1)[0])
    assert 'name="password"' in open_link(visitor, path, token).text

    done = post_link(visitor, path, token, NEW_PASSWORD)

    assert (done.status_code, done.headers["location"]) == (303, CHANGED)
    old = client.get("/portal/team/billing", follow_redirects=False)
    assert (old.status_code, old.headers["location"]) == (303, "/portal/login")
    assert gone(post_link(visitor, path, token, "yet another passphrase"))
    assert sign_in(visitor, agency.owner_email, PASSWORD).status_code == 401
    assert sign_in(visitor, agency.owner_email, NEW_PASSWORD).status_code == 303


def test_a_reset_link_expires_after_one_hour(
    refill: Refill, visitor: TestClient, mailbox: Mailbox, clock: FrozenClock
) -> None:
    agency = make_agency(refill)
    ask_reset(visitor, agency.owner_email)
    path, token = link_in(mailbox.wait_for(1)[0])
    clock.advance(resets.VALID_FOR - timedelta(seconds=1))
    assert open_link(visitor, path, token).status_code == 200

    clock.advance(timedelta(seconds=2))

    assert gone(open_link(visitor, path, token))
    assert gone(post_link(visitor, path, token, NEW_PASSWORD))
    assert sign_in(visitor, agency.owner_email, PASSWORD).status_code == 303


def test_reset_requests_are_throttled_per_address_alike_for_unknown_addresses(
    refill: Refill, visitor: TestClient, mailbox: Mailbox, clock: FrozenClock
) -> None:
    agency = make_agency(refill)
    stranger = "nobody@acme-voice.test"
    allowed = 3  # the promise, not the constant: the 4th is refused
    for _ in range(allowed):
        known, unknown = ask_reset(visitor, agency.owner_email), ask_reset(visitor, stranger)
        assert known.status_code == 200
        assert same_page(known, unknown, agency.owner_email, stranger)
    mailbox.wait_for(allowed)

    known, unknown = ask_reset(visitor, agency.owner_email), ask_reset(visitor, stranger)

    assert (known.status_code, known.headers.get("retry-after")) == (429, "900")
    assert "too many reset requests" in known.text
    assert same_page(known, unknown, agency.owner_email, stranger)
    assert unknown.headers.get("retry-after") == "900"
    assert len(settled(refill, mailbox)) == allowed
    clock.advance(sessions.LOCKOUT)
    assert ask_reset(visitor, agency.owner_email).status_code == 200  # a new window
    mailbox.wait_for(allowed + 1)


@pytest.mark.parametrize("form", ["invitation", "reset"])
def test_a_password_shorter_than_twelve_characters_is_refused_and_the_link_still_works(
    form: str,
    owner: Agency,
    refill: Refill,
    client: TestClient,
    visitor: TestClient,
    mailbox: Mailbox,
) -> None:
    if form == "invitation":
        invite(client, "short@example.com")
    else:
        ask_reset(visitor, owner.owner_email)
    path, token = link_in(mailbox.wait_for(1)[0])

    refused = post_link(visitor, path, token, "too short")

    assert refused.status_code == 422
    assert "the password must have at least 12 characters" in refused.text
    assert 'name="password"' in refused.text
    assert "refill_session" not in refused.cookies
    assert "short@example.com" not in roles_of(refill, owner.id)
    done = post_link(visitor, path, token, NEW_PASSWORD)
    assert (done.status_code, done.headers["location"]) == (
        303,
        JOINED if form == "invitation" else CHANGED,
    )
