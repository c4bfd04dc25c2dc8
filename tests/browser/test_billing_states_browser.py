"""Every state of Auto Reload on the billing page, in Chromium against a real `refill
serve`: its banner says what happened in words, and its button does what it says. Also
every setting saved from the page, the confirm step of Add credits, the chart's range
picker, and no page of the portal that scrolls sideways on a phone."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import (
    SEEN_WITHIN_MS,
    add_card,
    add_credits,
    enable_auto_reload,
    fits_the_screen,
    signed_in,
    spend,
)
from tests.support.server import Server, call, client

PHONES = [pytest.param((390, 844), id="390x844"), pytest.param((360, 740), id="360x740")]


def banner(page: Page, state: str) -> None:
    expect(page.get_by_test_id("banner")).to_have_attribute(
        "data-state", state, timeout=SEEN_WITHIN_MS
    )


def test_a_soft_decline_shows_retrying_with_its_time_and_retry_now_tries_again(
    browser: Browser,
    agency: tuple[Server, str, str],
    screenshots: list[Page],
    snap: Callable[[Page, str], None],
) -> None:
    server, email, _ = agency
    page = signed_in(browser, server, email, screenshots)
    add_card(page, "Visa ending 9995 — insufficient funds")
    enable_auto_reload(page)  # an empty wallet: the reload is charged at once, and declined

    banner(page, "retrying")
    snap(page, "retrying")
    shown = page.get_by_test_id("banner")
    expect(shown).to_contain_text("The last Auto Reload was declined")
    expect(shown).to_contain_text("the bank said the card does not have enough funds")
    expect(shown).to_contain_text(re.compile(r"tries Visa ending 9995 again at \d{4}-\d\d-\d\d"))
    page.get_by_role("button", name="Retry now").click()
    expect(page.get_by_role("status")).to_have_text("Retried now: the outcome is below.")
    rows = page.get_by_test_id("reload-row")
    expect(rows.nth(1)).to_contain_text("(retry 1)")
    expect(rows.nth(1)).to_contain_text("Failed")
    expect(rows.first).to_contain_text("(retry 2)")  # declined again: the next waits its time
    expect(rows.first).to_contain_text("Scheduled for")
    banner(page, "retrying")
    shown.get_by_role("link", name="Update the card").click()
    expect(page).to_have_url(re.compile("#auto-reload$"))


def test_a_hard_decline_suspends_and_choosing_a_working_card_resumes_at_once(
    browser: Browser,
    agency: tuple[Server, str, str],
    screenshots: list[Page],
    snap: Callable[[Page, str], None],
) -> None:
    server, email, _ = agency
    page = signed_in(browser, server, email, screenshots)
    add_card(page, "Visa ending 0069 — expired card")
    enable_auto_reload(page)
    banner(page, "suspended")
    expect(page.get_by_test_id("banner")).to_contain_text("Auto Reload is suspended")
    snap(page, "suspended")

    add_card(page, "Visa ending 4242 — succeeds")
    page.get_by_test_id("banner").get_by_role("link", name="Update the card").click()
    page.get_by_label("Payment method", exact=True).select_option(label="Visa ending 4242")
    page.get_by_role("button", name="Save Auto Reload").click()

    expect(page.get_by_test_id("banner")).to_have_count(0, timeout=SEEN_WITHIN_MS)
    expect(page.get_by_test_id("balance")).to_have_text("$50.00", timeout=SEEN_WITHIN_MS)
    expect(page.get_by_test_id("auto-reload-status")).to_contain_text("On: below $20.00")
    snap(page, "active")


@pytest.mark.parametrize(
    ("decision", "notice", "balance"),
    [
        pytest.param(
            "Approve payment",
            "Payment authenticated: the credits are in the wallet.",
            "$50.00",
            id="approve",
        ),
        pytest.param(
            "Decline",
            "The payment was not authenticated, so nothing was charged.",
            "$0.00",
            id="decline",
        ),
    ],
)
def test_3d_secure_is_finished_on_the_simulated_bank_page(
    browser: Browser,
    agency: tuple[Server, str, str],
    screenshots: list[Page],
    snap: Callable[[Page, str], None],
    decision: str,
    notice: str,
    balance: str,
) -> None:
    server, email, _ = agency
    page = signed_in(browser, server, email, screenshots)
    add_card(page, "Visa ending 3184 — needs 3-D Secure")
    enable_auto_reload(page)
    banner(page, "action_required")
    expect(page.get_by_test_id("banner")).to_contain_text("Your bank asks you to confirm")
    snap(page, "action_required")

    page.get_by_role("link", name="Authenticate payment").click()
    expect(page.get_by_role("heading", name="Confirm this payment")).to_be_visible()
    expect(page.get_by_test_id("bank-amount")).to_have_text("$50.00")
    snap(page, "simulated-bank")
    page.set_viewport_size({"width": 360, "height": 740})
    assert fits_the_screen(page)
    page.set_viewport_size({"width": 1280, "height": 720})
    page.get_by_role("button", name=decision).click()

    expect(page.get_by_role("status")).to_have_text(notice)
    expect(page.get_by_test_id("balance")).to_have_text(balance)
    if balance == "$0.00":  # a failed authentication is a soft decline: retried later
        banner(page, "retrying")
    else:
        expect(page.get_by_test_id("banner")).to_have_count(0)


def test_a_daily_limit_block_shows_until_when_and_raising_the_limit_lifts_it(
    browser: Browser,
    agency: tuple[Server, str, str],
    screenshots: list[Page],
    snap: Callable[[Page, str], None],
) -> None:
    server, email, key = agency
    page = signed_in(browser, server, email, screenshots)
    add_card(page, "Visa ending 4242 — succeeds")
    page.get_by_text("Safety limits").click()
    page.get_by_label("Reloads per day, at most").fill("1")
    enable_auto_reload(page)  # the day's one reload: 50.00
    expect(page.get_by_test_id("balance")).to_have_text("$50.00", timeout=SEEN_WITHIN_MS)

    spend(server, key, "35.00", "big-call")  # 15.00: the second reload meets the limit
    banner(page, "blocked")
    expect(page.get_by_test_id("banner")).to_contain_text("paused by your daily reload limit")
    # The checklist under Auto Reload follows the banner without a reload, and opens.
    box = page.get_by_test_id("explain-box")
    expect(box).to_have_attribute("data-verdict", "paused_by_limit", timeout=SEEN_WITHIN_MS)
    expect(box).to_have_attribute("open", "")
    expect(box.locator('[data-check="not_blocked"]')).to_have_attribute("data-passed", "false")
    snap(page, "blocked")
    page.get_by_role("link", name="Raise the limit").click()
    page.get_by_text("Safety limits").click()
    page.get_by_label("Reloads per day, at most").fill("5")
    page.get_by_role("button", name="Save Auto Reload").click()

    expect(page.get_by_test_id("banner")).to_have_count(0, timeout=SEEN_WITHIN_MS)
    expect(page.get_by_test_id("balance")).to_have_text("$65.00", timeout=SEEN_WITHIN_MS)


def test_every_auto_reload_setting_is_saved_from_the_page_in_the_owners_spelling(
    browser: Browser, agency: tuple[Server, str, str], screenshots: list[Page]
) -> None:
    server, email, key = agency
    page = signed_in(browser, server, email, screenshots)
    add_card(page, "Visa ending 4242 — succeeds")
    page.get_by_label("Top up to a balance").check()
    expect(page.get_by_label("Reload amount (USD)")).to_be_hidden()  # target mode hides it
    page.get_by_label("Minimum threshold (USD)").fill("$1,000")
    page.get_by_label("Tops up to (USD)").fill("2,500.50")
    page.get_by_label("Payment method", exact=True).select_option(label="Visa ending 4242")
    page.get_by_text("Safety limits").click()
    page.get_by_label("Reloads per day, at most").fill("3")
    page.get_by_label("Monthly spending cap (USD)").fill("$9,000")
    page.get_by_label("Auto Reload on").check()
    page.get_by_role("button", name="Save Auto Reload").click()

    expect(page.get_by_role("status")).to_have_text("Auto Reload settings saved.")
    with client(server, key) as api:
        saved = call(api, "GET", "/v1/wallet", 200)["auto_reload"]
    assert {k: saved[k] for k in ("mode", "threshold", "target_balance", "daily_limit")} == {
        "mode": "target",
        "threshold": "1000.00",
        "target_balance": "2500.50",
        "daily_limit": 3,
    }
    assert saved["monthly_cap"] == "9000.00"
    assert saved["state"] == "active"
    expect(page.get_by_label("Tops up to (USD)")).to_have_value("2500.50")


def test_missing_fields_are_all_named_at_once_and_nothing_is_saved(
    browser: Browser,
    agency: tuple[Server, str, str],
    screenshots: list[Page],
    snap: Callable[[Page, str], None],
) -> None:
    server, email, _ = agency
    page = signed_in(browser, server, email, screenshots)
    expect(page.get_by_test_id("auto-reload-status")).to_contain_text("Off")
    snap(page, "off")  # a new wallet: no banner, Auto Reload off, no credits
    page.get_by_label("Auto Reload on").check()
    page.get_by_role("button", name="Save Auto Reload").click()
    snap(page, "missing-fields")

    expect(page.locator("#f-threshold-error")).to_contain_text("Set a threshold")
    expect(page.locator("#f-reload_amount-error")).to_have_text(
        "Set a reload amount to enable Auto Reload"
    )
    expect(page.locator("#auto-card-error")).to_contain_text("Choose a saved payment method")
    expect(page.get_by_test_id("auto-reload-status")).to_contain_text("Off")


def test_add_credits_asks_to_confirm_and_a_refresh_does_not_charge_again(
    browser: Browser,
    agency: tuple[Server, str, str],
    screenshots: list[Page],
    snap: Callable[[Page, str], None],
) -> None:
    server, email, _ = agency
    page = signed_in(browser, server, email, screenshots)
    add_card(page, "Visa ending 4242 — succeeds")
    page.get_by_label("Amount (USD)", exact=True).fill("$1,050.5")
    page.get_by_role("button", name="Review").click()
    snap(page, "confirm-add-credits")
    page.get_by_role("link", name="Change").click()
    add_credits(page, "$1,050.5", "$1,050.50")
    page.reload()
    expect(page.get_by_test_id("balance")).to_have_text("$1,050.50")
    expect(page.get_by_test_id("reload-row")).to_have_count(1)

    page.get_by_role("button", name="30 days").click()
    expect(page.get_by_role("button", name="30 days")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("button", name="24 h")).to_have_attribute("aria-pressed", "false")


@pytest.mark.parametrize("size", PHONES)
def test_no_portal_page_scrolls_sideways_on_a_phone(
    browser: Browser,
    agency: tuple[Server, str, str],
    screenshots: list[Page],
    size: tuple[int, int],
) -> None:
    server, email, _ = agency
    page = signed_in(browser, server, email, screenshots)
    add_card(page, "Visa ending 4242 — succeeds")
    add_credits(page, "40", "$40.00")
    receipt = page.get_by_role("link", name="Receipt").first.get_attribute("href")
    width, height = size
    # The same signed-in browser, at phone size.
    phone = browser.new_context(
        base_url=server.base,
        viewport={"width": width, "height": height},
        storage_state=page.context.storage_state(),
    )
    pages = [
        "/portal/team/billing",
        "/portal/team/notifications",
        "/portal/team/members",
        "/portal/team/developers",
        "/portal/team/audit",
        "/portal/account",
        str(receipt),
        "/portal/team/no-such-page",  # a refusal is a page too
    ]
    for path in pages:
        view = phone.new_page()
        screenshots.append(view)
        view.goto(path)
        expect(view.locator("main")).to_be_visible()
        assert fits_the_screen(view), path
    anonymous = browser.new_context(
        base_url=server.base, viewport={"width": width, "height": height}
    ).new_page()
    screenshots.append(anonymous)
    for path in ("/portal/login", "/portal/forgot"):
        anonymous.goto(path)
        assert fits_the_screen(anonymous), path
