"""Backup cards on the billing page, in Chromium against a real `refill serve`: the owner
lists a second card as a backup, moves it up to be the primary, and the list of cards
Auto Reload charges fits a phone."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import add_card, enable_auto_reload, fits_the_screen, signed_in
from tests.support.server import Server

VISA = "Visa ending 4242"
MASTERCARD = "Mastercard ending 4444"


def in_order(page: Page) -> list[str]:
    """The list's rows as the owner reads them: "Primary Visa ending 4242", ..."""
    rows = page.get_by_test_id("reload-card")
    return [
        f"{row.locator('.place').inner_text()} {row.locator('.name').inner_text()}"
        for row in rows.all()
    ]


def test_the_owner_adds_a_backup_card_and_moves_it_up_to_be_the_primary(
    browser: Browser,
    agency: tuple[Server, str, str],
    screenshots: list[Page],
    snap: Callable[[Page, str], None],
) -> None:
    server, email, _ = agency
    page = signed_in(browser, server, email, screenshots)
    add_card(page, f"{VISA} — succeeds")
    add_card(page, f"{MASTERCARD} — succeeds")
    enable_auto_reload(page)
    [only] = in_order(page)
    primary = only.removeprefix("Primary ")
    backup = MASTERCARD if primary == VISA else VISA
    expect(page.get_by_role("button", name=f"Move up: {primary}")).to_have_count(0)

    page.get_by_role("button", name=f"Add as backup: {backup}").click()
    expect(page.get_by_role("status")).to_have_text(
        "The order of the cards Auto Reload charges is saved."
    )
    assert in_order(page) == [f"Primary {primary}", f"Backup 1 {backup}"]
    expect(page.get_by_test_id("card").filter(has_text=backup)).to_contain_text(
        "Backup 1 of Auto Reload: take it out of the list to remove it."
    )
    expect(page.get_by_role("button", name=f"Remove {backup}")).to_have_count(0)
    snap(page, "backup-added")

    page.get_by_role("button", name=f"Move up: {backup}").click()
    expect(page.get_by_test_id("reload-card").first).to_contain_text(backup)
    assert in_order(page) == [f"Primary {backup}", f"Backup 1 {primary}"]
    # The Auto Reload form's select shows the new primary, and names the backup under it.
    chosen = page.get_by_label("Payment method", exact=True).locator("option:checked")
    expect(chosen).to_have_text(backup)
    expect(page.locator("#auto-card-hint")).to_contain_text(f"Refill charges {primary} at once")
    snap(page, "moved-up")

    page.set_viewport_size({"width": 360, "height": 740})
    assert fits_the_screen(page)
    page.set_viewport_size({"width": 1280, "height": 720})
