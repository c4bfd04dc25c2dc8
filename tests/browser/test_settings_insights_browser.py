"""Settings that explain themselves, in Chromium against a real `refill serve`: the
checklist that says why Auto Reload did not reload, and the backtest of settings as typed,
drawn before anything is saved."""

from __future__ import annotations

from collections.abc import Callable

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
from tests.support.server import Server


def test_the_checklist_opens_by_itself_and_says_auto_reload_is_suspended(
    browser: Browser,
    agency: tuple[Server, str, str],
    screenshots: list[Page],
    snap: Callable[[Page, str], None],
) -> None:
    server, email, _ = agency
    page = signed_in(browser, server, email, screenshots)
    box = page.get_by_test_id("explain-box")
    expect(box).to_have_attribute("data-verdict", "off")
    add_card(page, "Visa ending 0069 — expired card")
    enable_auto_reload(page)  # an empty wallet: charged at once, hard-declined, suspended

    page.reload()
    box = page.get_by_test_id("explain-box")
    expect(box).to_have_attribute("data-verdict", "suspended", timeout=SEEN_WITHIN_MS)
    expect(box).to_have_attribute("open", "")
    suspended = box.locator('[data-check="not_suspended"]')
    expect(suspended).to_have_attribute("data-passed", "false")
    expect(box.locator('[data-check="enabled"]')).to_have_attribute("data-passed", "true")
    snap(page, "explain-suspended")
    assert fits_the_screen(page)

    # Closed by the owner, it stays closed when the page refreshes it.
    box.locator("summary").click()
    expect(box).not_to_have_attribute("open", "")
    for _ in range(2):
        with page.expect_response(lambda r: r.url.endswith("/portal/team/billing/explain")):
            pass
    expect(page.get_by_test_id("explain-box")).not_to_have_attribute("open", "")
    expect(page.get_by_test_id("explain-box")).to_have_attribute("data-verdict", "suspended")


def test_settings_are_tried_on_the_last_days_and_drawn_before_they_are_saved(
    browser: Browser,
    agency: tuple[Server, str, str],
    screenshots: list[Page],
    snap: Callable[[Page, str], None],
) -> None:
    server, email, key = agency
    page = signed_in(browser, server, email, screenshots)
    add_card(page, "Visa ending 4242 — succeeds")
    add_credits(page, "$100", "$100.00")
    for i in range(3):
        spend(server, key, "30.00", f"u{i}")  # 10.00 left, no auto-reload

    page.reload()
    page.get_by_label("Minimum threshold (USD)").fill("$25")
    page.get_by_label("Reload amount (USD)").fill("40")
    page.get_by_role("button", name="Try them on my past usage").click()
    backtest = page.get_by_test_id("backtest")
    expect(backtest).to_be_visible()
    # Applied from the wallet's opening (0.00, below 25.00): one reload of 40.00 at once.
    expect(backtest.get_by_test_id("bt-reloads")).to_have_text("1")
    expect(backtest.get_by_test_id("bt-charged")).to_have_text("$40.00")
    expect(backtest.get_by_test_id("bt-opening")).to_contain_text(
        "from its balance of $0.00: below this threshold, so these settings reload at once."
    )
    expect(page.get_by_text("Auto Reload settings saved.")).to_have_count(0)
    expect(page.get_by_label("Minimum threshold (USD)")).to_have_value("$25")
    # Chart.js draws once its deferred script has run, after the text above is shown.
    page.wait_for_function(
        "() => { const c = document.getElementById('backtest-chart');"
        " return !!(window.Chart && Chart.getChart(c)) && c.width > 0; }",
        timeout=SEEN_WITHIN_MS,
    )
    snap(page, "backtest")
    assert fits_the_screen(page)

    page.get_by_label("Payment method", exact=True).select_option(index=1)
    page.get_by_label("Auto Reload on").check()
    page.get_by_role("button", name="Save Auto Reload").click()
    expect(page.get_by_text("Auto Reload settings saved.")).to_be_visible()


def test_the_runway_shows_and_the_recommended_settings_are_saved_in_one_click(
    browser: Browser,
    agency: tuple[Server, str, str],
    screenshots: list[Page],
    snap: Callable[[Page, str], None],
) -> None:
    server, email, key = agency
    page = signed_in(browser, server, email, screenshots)
    add_card(page, "Visa ending 4242 — succeeds")
    add_credits(page, "$200", "$200.00")
    for i, amount in enumerate(["12.00", "8.00", "10.00"]):
        spend(server, key, amount, f"u{i}")

    page.reload()
    expect(page.get_by_test_id("runway")).to_contain_text("At this rate your credits last")
    offer = page.get_by_test_id("recommendation")
    expect(offer).to_contain_text("Recommended: reload")
    expect(offer).to_contain_text("the wallet spent $30.00")  # the page's spelling, not the API's
    snap(page, "recommendation")
    threshold = page.get_by_label("Minimum threshold (USD)").input_value()
    offer.get_by_role("button", name="Use these settings").click()
    expect(page.get_by_text("Auto Reload settings saved.")).to_be_visible()
    assert page.get_by_label("Minimum threshold (USD)").input_value() != threshold
    expect(page.get_by_test_id("reload-cover")).to_contain_text("Your reload covers")
