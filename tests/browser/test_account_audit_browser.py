"""The account page, the members' roles and the audit log in a real browser (Debian's
Chromium through Playwright, against `refill serve`), on a desktop and on phones."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from refill.bootstrap import build
from refill.config import Settings
from refill.roles import MemberRole
from refill.services import members
from tests.browser.conftest import (
    OUTPUT,
    PASSWORD,
    add_card,
    enable_auto_reload,
    fits_the_screen,
    signed_in,
)
from tests.support.server import Server, call, client

NEW_PASSWORD = "another long owner password"
PHONES: list[ViewportSize] = [{"width": 390, "height": 844}, {"width": 360, "height": 740}]
PAGES = {
    "account": ("/portal/account", "Your account"),
    "members": ("/portal/team/members", "Members"),
    "audit": ("/portal/team/audit", "Audit log"),
}


def sign_in_with(page: Page, email: str, password: str) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def window(browser: Browser, server: Server, signed_in_page: Page, size: ViewportSize) -> Page:
    """Another window of the same signed-in person, of the given size."""
    state = signed_in_page.context.storage_state()
    context = browser.new_context(base_url=server.base, viewport=size, storage_state=state)
    return context.new_page()


def photograph(page: Page, request: pytest.FixtureRequest, name: str) -> None:
    folder = OUTPUT / re.sub(r"[^\w.-]+", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_an_owner_changes_the_password_on_the_account_page_and_signs_in_with_the_new_one(
    browser: Browser, agency: tuple[Server, str, str], screenshots: list[Page]
) -> None:
    server, email, _ = agency
    page = signed_in(browser, server, email, screenshots)
    page.locator("header a[href='/portal/account']").click()
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()

    page.get_by_label("Current password").fill("not the password at all")
    page.get_by_label(re.compile(r"^New password \(")).fill(NEW_PASSWORD)
    page.get_by_label("New password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change the password").click()
    expect(page.locator("#current-password-error")).to_have_text("The current password is wrong")

    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label(re.compile(r"^New password \(")).fill(NEW_PASSWORD)
    page.get_by_label("New password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change the password").click()
    expect(page.get_by_role("status")).to_contain_text("Your password was changed")
    expect(page).to_have_url(re.compile(r"/portal/account\?notice=own_password_changed$"))

    page.get_by_role("button", name="Sign out").click()
    sign_in_with(page, email, PASSWORD)
    expect(page.get_by_role("alert")).to_have_text("The e-mail or the password is wrong.")
    sign_in_with(page, email, NEW_PASSWORD)
    expect(page.get_by_role("heading", name="Billing", exact=True)).to_be_visible()


def test_the_audit_log_shows_saved_auto_reload_settings_before_and_after(
    browser: Browser, agency: tuple[Server, str, str], screenshots: list[Page]
) -> None:
    server, email, _ = agency
    page = signed_in(browser, server, email, screenshots)
    add_card(page, "Visa ending 4242 — succeeds")
    enable_auto_reload(page, threshold="20.00")
    enable_auto_reload(page, threshold="30.00")

    page.get_by_role("link", name="Audit log").click()

    expect(page.get_by_role("heading", name="Audit log", exact=True)).to_be_visible()
    expect(page.get_by_role("columnheader", name="When (UTC)")).to_be_visible()
    newest = page.get_by_test_id("audit-row").filter(has_text="Changed the Auto Reload settings")
    expect(newest.first).to_contain_text("threshold 20.00 → 30.00")
    expect(newest.first).to_contain_text(email)
    expect(page.get_by_text("→").first).to_be_visible()


def give_the_agency_people(server_url: str, key: str, server: Server) -> None:
    """An admin and a member besides the owner, so the members page has role choices."""
    with client(server, key) as api:
        agency_id = call(api, "GET", "/v1/agency", 200)["id"]
    service = build(Settings(database_url=server_url), in_process_worker=False)
    try:
        for email, role in (
            ("an.admin.with.a.rather.long.address@browser-phone.test", MemberRole.ADMIN),
            ("member@browser.test", MemberRole.MEMBER),
        ):
            members.add_member(
                service.db,
                agency_id=agency_id,
                email=email,
                role=role,
                password=PASSWORD,
                actor="cli",
            )
    finally:
        service.close()


def test_the_account_members_and_audit_pages_never_scroll_sideways_on_a_phone(
    browser: Browser,
    served: tuple[Server, str],
    agency: tuple[Server, str, str],
    screenshots: list[Page],
    request: pytest.FixtureRequest,
) -> None:
    server, email, key = agency
    give_the_agency_people(served[1], key, server)
    desktop = signed_in(browser, server, email, screenshots)
    phones = {f"{p['width']}x{p['height']}": window(browser, server, desktop, p) for p in PHONES}
    screenshots.extend(phones.values())

    for name, (path, heading) in PAGES.items():
        for size, shown in {"desktop": desktop, **phones}.items():
            shown.goto(path)
            expect(shown.get_by_role("heading", name=heading, exact=True)).to_be_visible()
            photograph(shown, request, f"{name}-{size}")
            assert fits_the_screen(shown), f"{path} scrolls sideways at {size}"

    # The tables become labelled rows on a phone, and stay tables on the desktop.
    small = phones["360x740"]
    small.goto("/portal/team/members")
    desktop.goto("/portal/team/members")
    cell = "document.querySelector('td[data-label=Role]')"
    assert small.evaluate(f"getComputedStyle({cell}).display") == "grid"
    assert desktop.evaluate(f"getComputedStyle({cell}).display") == "table-cell"
    assert small.evaluate(f"getComputedStyle({cell}, '::before').content") == '"Role"'
    expect(small.get_by_role("button", name="Save role")).to_have_count(2)
