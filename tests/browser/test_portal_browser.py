"""The billing portal in a real browser: Debian's Chromium driven by Playwright, against a
real `refill serve` process. Each test leaves a screenshot of what the user last saw in
test-output/<test name>/ (also when it fails)."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import (
    PASSWORD,
    SEEN_WITHIN_MS,
    add_card,
    add_credits,
    enable_auto_reload,
    link_of,
    signed_in,
)
from tests.support.mailbox import Mailbox
from tests.support.server import Server, call, client


def test_an_owner_sets_up_auto_reload_and_watches_the_reload_arrive_without_reloading(
    browser: Browser, agency: tuple[Server, str, str], screenshots: list[Page]
) -> None:
    server, email, key = agency
    page = signed_in(browser, server, email, screenshots)
    expect(page.get_by_test_id("service")).to_have_text("No credits: calls are being refused")

    add_card(page, "Visa ending 4242 — succeeds")
    add_credits(page, "21", "$21.00")
    expect(page.get_by_test_id("balance")).to_have_text("$21.00")
    enable_auto_reload(page)
    expect(page.get_by_test_id("service")).to_have_text("Subteams can take calls")
    expect(page.get_by_test_id("auto-reload-status")).to_contain_text("On: below $20.00")

    with client(server, key) as owner_api:
        subteam = call(owner_api, "POST", "/v1/subteams", 201, json={"name": "Sales"})["id"]
        subteam_key = call(owner_api, "POST", f"/v1/subteams/{subteam}/keys", 201)["api_key"]
    with client(server, subteam_key) as subteam_api:
        for n in range(3):  # 21.00 -> 20.60 -> 20.20 -> 19.80: below 20.00, a reload
            call(
                subteam_api,
                "POST",
                "/v1/usage",
                201,
                json={"subteam_id": subteam, "amount": "0.40", "reference": f"call-{n}"},
            )

    # No page reload: the page refreshes its live part by itself.
    expect(page.get_by_test_id("balance")).to_have_text("$69.80", timeout=SEEN_WITHIN_MS)
    newest = page.get_by_test_id("reload-row").first
    expect(newest).to_contain_text("Auto Reload")
    expect(newest).to_contain_text("$50.00")
    expect(newest).to_contain_text("Visa ending 4242")
    expect(newest).to_contain_text("Succeeded")
    expect(page.get_by_role("img", name=re.compile("Balance over time"))).to_be_visible()


def test_a_declined_card_shows_the_failure_and_the_suspended_state(
    browser: Browser, agency: tuple[Server, str, str], screenshots: list[Page]
) -> None:
    server, email, _ = agency
    page = signed_in(browser, server, email, screenshots)
    add_card(page, "Visa ending 0069 — expired card")
    # The wallet is empty, below the threshold: enabling reloads at once, with this card.
    enable_auto_reload(page)

    expect(page.get_by_test_id("auto-reload-status")).to_contain_text(
        "Suspended", timeout=SEEN_WITHIN_MS
    )
    banner = page.get_by_test_id("banner")
    expect(banner).to_have_attribute("data-state", "suspended")
    expect(banner).to_contain_text("Auto Reload is suspended")
    expect(banner).to_contain_text("expired_card")
    failed = page.get_by_test_id("reload-row").first
    expect(failed).to_contain_text("Failed")
    expect(failed).to_contain_text("The card has expired")
    expect(page.get_by_test_id("service")).to_have_text("No credits: calls are being refused")


def test_an_invited_member_accepts_sets_a_password_and_can_only_look(
    browser: Browser,
    agency: tuple[Server, str, str],
    screenshots: list[Page],
    mailbox: Mailbox,
) -> None:
    server, email, _ = agency
    owner = signed_in(browser, server, email, screenshots)
    owner.get_by_role("link", name="Members").click()
    owner.get_by_label("Email").fill("viewer@browser.test")
    owner.get_by_label("Role").select_option("member")
    owner.get_by_role("button", name="Send the invitation").click()
    expect(owner.get_by_role("status")).to_contain_text("Invitation sent")
    expect(owner.get_by_role("cell", name="viewer@browser.test", exact=True)).to_be_visible()

    # A forged POST from the owner's own browser, without the form's CSRF token.
    status = owner.evaluate(
        """async () => (await fetch('/portal/team/billing/auto-reload', {method: 'POST',
             headers: {'Content-Type': 'application/x-www-form-urlencoded'},
             body: 'enabled=on&threshold=20.00&reload_amount=50.00'})).status"""
    )
    assert status == 403

    invitation = mailbox.first("viewer@browser.test")
    member = browser.new_context(base_url=server.base).new_page()
    screenshots.append(member)
    member.goto(link_of(invitation))
    expect(member.get_by_role("heading", name=re.compile("Join the billing page"))).to_be_visible()
    member.get_by_label(re.compile("Password")).fill(PASSWORD)
    member.get_by_role("button", name="Create my account and join").click()
    expect(member.get_by_role("status")).to_contain_text("you are now a member")
    expect(member.get_by_text("You have read-only access")).to_be_visible()
    expect(member.get_by_role("button", name="Save Auto Reload")).to_have_count(0)
    expect(member.get_by_role("button", name="Add credits")).to_have_count(0)
    status = member.evaluate(
        """async (token) => (await fetch('/portal/team/billing/payment-methods', {method: 'POST',
             headers: {'Content-Type': 'application/x-www-form-urlencoded'},
             body: 'token=pm_card_visa&csrf_token=' + token})).status""",
        member.locator("input[name=csrf_token]").first.get_attribute("value"),
    )
    assert status == 403
    expect(member.get_by_test_id("card")).to_have_count(0)
    member.goto(link_of(invitation))  # the link worked once
    expect(member.get_by_role("heading", name="This invitation cannot be used")).to_be_visible()
