"""The Subteams page in a real browser (Debian's Chromium through Playwright, against
`refill serve`): an owner pauses one subteam by clicking, and over HTTP that subteam's
calls and usage are refused while the other's go on, and the table shows new usage by
itself; a subteam's own page with its usage chart, limits and live calls; the minimum call
balance; and both pages on a phone, where nothing scrolls sideways."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
from playwright.sync_api import Browser, Page, ViewportSize, expect

from tests.browser.conftest import SEEN_WITHIN_MS, fits_the_screen, signed_in
from tests.support.server import Server, call, client

DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 360, "height": 740}


def fits(page: Page) -> bool:
    """No sideways scrolling, measured once the page's stylesheets are in (a page without
    a script is in the DOM, and its text found, before they are)."""
    page.wait_for_load_state("load")
    return fits_the_screen(page)


def two_subteams(server: Server, owner_key: str) -> dict[str, tuple[str, str]]:
    """Sales (limited, some usage) and Support (a live call), each with its subteam key and
    credits in the wallet: their ids and secrets, by name."""
    made: dict[str, tuple[str, str]] = {}
    with client(server, owner_key) as api:
        card = call(api, "POST", "/v1/payment-methods", 201, json={"token": "pm_card_visa"})
        call(
            api,
            "POST",
            "/v1/wallet/credits",
            201,
            json={"amount": "100.00", "payment_method_id": card["id"]},
        )
        for name in ("Sales", "Support"):
            subteam = call(api, "POST", "/v1/subteams", 201, json={"name": name})["id"]
            key = call(api, "POST", f"/v1/subteams/{subteam}/keys", 201, json={"name": "dialer"})
            made[name] = (subteam, key["api_key"])
        call(
            api,
            "PATCH",
            f"/v1/subteams/{made['Sales'][0]}",
            200,
            json={"daily_spend_limit": "50.00", "monthly_spend_limit": "400.00"},
        )
    for name, amount in (("Sales", "12.40"), ("Support", "3.25")):
        subteam, secret = made[name]
        with client(server, secret) as api:
            body = {"subteam_id": subteam, "amount": amount, "reference": f"{name}-1"}
            call(api, "POST", "/v1/usage", 201, json=body)
    subteam, secret = made["Support"]
    with client(server, secret) as api:
        held = {"subteam_id": subteam, "expected_cost": "1.50", "hold": True}
        assert call(api, "POST", "/v1/calls/authorize", 200, json=held)["allowed"] is True
    return made


def authorize(server: Server, subteam: tuple[str, str]) -> dict[str, object]:
    with client(server, subteam[1]) as api:
        answer: dict[str, object] = call(
            api, "POST", "/v1/calls/authorize", 200, json={"subteam_id": subteam[0]}
        )
    return answer


def usage(server: Server, subteam: tuple[str, str], reference: str) -> httpx.Response:
    with client(server, subteam[1]) as api:
        body = {"subteam_id": subteam[0], "amount": "0.75", "reference": reference}
        return api.post("/v1/usage", json=body)


def test_pause_a_subteam_from_the_page_and_see_its_calls_refused_while_anothers_go_on(
    browser: Browser,
    agency: tuple[Server, str, str],
    screenshots: list[Page],
    snap: Callable[[Page, str], None],
) -> None:
    server, email, owner_key = agency
    teams = two_subteams(server, owner_key)
    sales, support = teams["Sales"], teams["Support"]
    assert authorize(server, sales)["allowed"] is True  # both take calls before the pause
    page = signed_in(browser, server, email, screenshots)
    page.set_viewport_size(DESKTOP)

    page.get_by_role("link", name="Subteams", exact=True).click()
    expect(page.get_by_role("heading", name="Subteams", exact=True)).to_be_visible()
    sales_row = page.locator(f"#row-{sales[0]}")
    expect(sales_row.get_by_test_id("status")).to_have_text("Active")
    expect(sales_row.get_by_test_id("today")).to_contain_text("$12.40 of $50.00 today")
    expect(sales_row.get_by_test_id("month")).to_contain_text("$12.40 of $400.00 this month")
    support_row = page.locator(f"#row-{support[0]}")
    expect(support_row.get_by_test_id("today")).to_contain_text("No limit")
    expect(support_row.get_by_test_id("held")).to_have_text("$1.50")
    expect(page.get_by_test_id("explain")).to_contain_text("Limits count in UTC")
    snap(page, "subteams")

    page.get_by_role("button", name="Pause Sales").click()

    expect(page.get_by_role("status")).to_have_text(
        "Sales is paused: its new calls are refused. Calls already running still settle."
    )
    expect(sales_row.get_by_test_id("status")).to_have_text("Paused")
    expect(support_row.get_by_test_id("status")).to_have_text("Active")
    expect(page.get_by_role("button", name="Resume Sales")).to_be_visible()
    expect(page.get_by_role("button", name="Pause Support")).to_be_visible()
    snap(page, "subteams-sales-paused")

    refused = authorize(server, sales)
    assert (refused["allowed"], refused["reason"]) == (False, "subteam_paused")
    answer = usage(server, sales, "Sales-after-pause")
    assert answer.status_code == 403
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == "subteam_paused"
    allowed = authorize(server, support)
    assert (allowed["allowed"], allowed["reason"]) == (True, "credits_available")
    assert usage(server, support, "Support-after-pause").status_code == 201
    # The table refreshes itself: Support's new usage shows without a reload.
    expect(support_row.get_by_test_id("today")).to_contain_text(
        "$4.00 today", timeout=SEEN_WITHIN_MS
    )

    page.get_by_role("link", name="Support", exact=True).click()
    expect(page.get_by_role("heading", name="Support", exact=True)).to_be_visible()
    expect(page.get_by_test_id("hold-row")).to_contain_text("$1.50")
    expect(page.get_by_test_id("usage-summary")).to_have_text(
        "$4.00 spent in the last 24 hours, 2 usage events."
    )
    expect(page.get_by_role("button", name="24 h")).to_have_attribute("aria-pressed", "true")
    page.get_by_role("button", name="30 days").click()
    expect(page.get_by_test_id("usage-summary")).to_have_text(
        "$4.00 spent in the last 30 days, 2 usage events."
    )
    snap(page, "support-detail")

    page.goto(f"/portal/team/subteams/{sales[0]}")
    expect(page.get_by_test_id("status")).to_contain_text("Paused")
    expect(page.get_by_text("No live calls hold credits now.")).to_be_visible()
    page.get_by_role("button", name="Resume Sales").click()
    expect(page.get_by_role("status")).to_contain_text("Sales is resumed")
    assert authorize(server, sales)["allowed"] is True
    snap(page, "sales-detail-resumed")


def test_on_a_phone_both_pages_and_a_wrong_limit_fit_the_screen(
    browser: Browser,
    agency: tuple[Server, str, str],
    screenshots: list[Page],
    snap: Callable[[Page, str], None],
) -> None:
    server, email, owner_key = agency
    teams = two_subteams(server, owner_key)
    with client(server, owner_key) as api:
        long_name = "Outbound sales, night shift — Europe and the Middle East"
        call(api, "POST", "/v1/subteams", 201, json={"name": long_name})
    desktop = signed_in(browser, server, email, screenshots)
    phone = browser.new_context(
        base_url=server.base, viewport=PHONE, storage_state=desktop.context.storage_state()
    ).new_page()
    screenshots.append(phone)

    phone.goto("/portal/team/subteams")
    expect(phone.get_by_test_id("subteam-row")).to_have_count(3)
    assert fits(phone)
    phone.get_by_role("button", name="Pause Support").click()
    expect(phone.get_by_role("status")).to_contain_text("Support is paused")
    assert fits(phone)
    snap(phone, "subteams-support-paused")

    phone.get_by_role("link", name="Limits and usage of Sales").click()
    expect(phone.get_by_role("heading", name="Spend limits")).to_be_visible()
    expect(phone.locator("#usage-chart")).to_be_visible()
    assert fits(phone)
    phone.get_by_label("Daily limit (USD)").fill("fifty")
    phone.get_by_label("Monthly limit (USD)").fill("$1,000")
    phone.get_by_role("button", name="Save limits").click()
    expect(phone.locator("#f-daily_spend_limit-error")).to_contain_text("The daily limit must be")
    expect(phone.get_by_label("Daily limit (USD)")).to_have_value("fifty")
    assert fits(phone)
    snap(phone, "sales-limit-refused")
    with client(server, owner_key) as api:
        unchanged = call(api, "GET", f"/v1/subteams/{teams['Sales'][0]}", 200)
    assert (unchanged["daily_spend_limit"], unchanged["monthly_spend_limit"]) == (
        "50.00",
        "400.00",
    )
    phone.get_by_label("Daily limit (USD)").fill("")
    phone.get_by_role("button", name="Save limits").click()
    expect(phone.get_by_role("status")).to_have_text(
        "Spend limits of Sales saved: no daily limit, $1,000.00 a month."
    )
    expect(phone).to_have_url(re.compile(r"/portal/team/subteams/sub_\w+\?notice=limits_saved$"))
    assert fits(phone)

    # The minimum call balance: above the credits, new calls stop; the billing page says
    # so and links back to where it is lowered.
    phone.goto("/portal/team/subteams")
    phone.get_by_label("Minimum call balance (USD)").fill("$200")
    phone.get_by_role("button", name="Save the minimum").click()
    expect(phone.get_by_role("status")).to_have_text(
        "Minimum call balance saved: new calls are accepted while more than $200.00 is "
        "available. $82.85 is available now, so new calls are refused."
    )
    assert fits(phone)
    snap(phone, "min-call-balance-saved")
    subteam, secret = teams["Sales"]
    with client(server, secret) as api:
        refused = call(api, "POST", "/v1/calls/authorize", 200, json={"subteam_id": subteam})
    assert (refused["allowed"], refused["reason"]) == (False, "no_credits")
    phone.goto("/portal/team/billing")
    expect(phone.get_by_test_id("service")).to_contain_text("Below your minimum call balance")
    phone.get_by_role("link", name="lower the minimum").click()
    phone.get_by_label("Minimum call balance (USD)").fill("")
    phone.get_by_role("button", name="Save the minimum").click()
    expect(phone.get_by_role("status")).to_contain_text("while any credit is available")
    with client(server, secret) as api:
        allowed = call(api, "POST", "/v1/calls/authorize", 200, json={"subteam_id": subteam})
    assert allowed["allowed"] is True
