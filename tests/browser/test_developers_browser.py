"""The Developers page in a real browser (Debian's Chromium through Playwright, against
`refill serve`): a subteam and its key made, the secret seen once, the key revoked; and
the page on phones, where nothing may scroll sideways."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from tests.browser.conftest import fits_the_screen, signed_in
from tests.support.server import Server, call, client

DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONES = [
    pytest.param({"width": 390, "height": 844}, id="390x844"),
    pytest.param({"width": 360, "height": 740}, id="360x740"),
]


def open_developers(page: Page) -> None:
    page.get_by_role("link", name="Developers").click()
    expect(page.get_by_role("heading", name="Developers", exact=True)).to_be_visible()


def create_key(page: Page, subteam: str, name: str) -> str:
    page.get_by_label("Subteam", exact=True).select_option(label=subteam)
    page.get_by_label("Name (optional)").fill(name)
    page.get_by_role("button", name="Create the key").click()
    secret = page.get_by_test_id("new-secret")
    expect(secret).to_have_text(re.compile(r"^rfl_"))
    expect(page.get_by_text("Copy it now, it will not be shown again.")).to_be_visible()
    return secret.inner_text()


def test_an_owner_makes_a_subteam_key_sees_its_secret_once_and_revokes_it(
    browser: Browser, agency: tuple[Server, str, str], screenshots: list[Page]
) -> None:
    server, email, _ = agency
    page = signed_in(browser, server, email, screenshots)
    page.set_viewport_size(DESKTOP)
    open_developers(page)

    page.get_by_label("Name", exact=True).fill("Sales")
    page.get_by_role("button", name="Create the subteam").click()
    expect(page.get_by_role("status")).to_contain_text("Subteam created")
    expect(page.get_by_test_id("subteam-row")).to_contain_text("Sales")
    secret = create_key(page, "Sales", "dialer")
    subteam = page.get_by_test_id("subteam-row").get_attribute("data-subteam")
    with client(server, secret) as subteam_api:
        allowed = call(
            subteam_api, "POST", "/v1/calls/authorize", 200, json={"subteam_id": subteam}
        )
    assert allowed["reason"] == "no_credits"  # the key works: it is the subteam's

    page.goto("/portal/team/developers")
    expect(page.get_by_test_id("key-row").filter(has_text="dialer")).to_contain_text("active")
    expect(page.get_by_test_id("new-secret")).to_have_count(0)
    assert secret not in page.content()  # shown once, never again

    page.get_by_role("link", name="Revoke the key dialer").click()
    expect(page.get_by_role("heading", name="Revoke the key dialer?")).to_be_visible()
    page.get_by_role("button", name="Revoke the key now").click()
    expect(page.get_by_role("status")).to_contain_text("Key revoked")
    expect(page.get_by_test_id("key-row").filter(has_text="dialer")).to_contain_text("revoked")
    with client(server, secret) as subteam_api:
        call(subteam_api, "POST", "/v1/calls/authorize", 401, json={"subteam_id": subteam})


@pytest.mark.parametrize("viewport", PHONES)
def test_on_a_phone_the_lists_and_a_new_secret_fit_the_screen(
    browser: Browser,
    agency: tuple[Server, str, str],
    screenshots: list[Page],
    viewport: ViewportSize,
) -> None:
    server, email, key = agency
    with client(server, key) as owner_api:
        for name in ("Outbound sales, night shift — Europe", "Support"):
            subteam = call(owner_api, "POST", "/v1/subteams", 201, json={"name": name})["id"]
            call(owner_api, "POST", f"/v1/subteams/{subteam}/keys", 201, json={"name": "dialer"})
        call(owner_api, "PATCH", f"/v1/subteams/{subteam}", 200, json={"archived": True})
    desktop = signed_in(browser, server, email, screenshots)
    phone = browser.new_context(
        base_url=server.base, viewport=viewport, storage_state=desktop.context.storage_state()
    ).new_page()
    screenshots.append(phone)

    phone.goto("/portal/team/developers")
    expect(phone.get_by_role("heading", name="API keys")).to_be_visible()
    assert fits_the_screen(phone)
    create_key(phone, "Outbound sales, night shift — Europe", "a second dialer")
    assert fits_the_screen(phone)
    phone.goto("/portal/team/developers?revoke=" + _first_key_id(phone))
    expect(phone.get_by_role("button", name="Revoke the key now")).to_be_visible()
    assert fits_the_screen(phone)


def _first_key_id(page: Page) -> str:
    page.goto("/portal/team/developers")
    key_id = page.get_by_test_id("key-row").first.get_attribute("data-key")
    assert key_id
    return key_id
