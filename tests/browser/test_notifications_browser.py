"""The Notifications section and a receipt in a real browser (Debian's Chromium through
Playwright, against `refill serve`), on a desktop and on a phone."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from tests.browser.conftest import add_card, add_credits, fits_the_screen, signed_in
from tests.support.mailbox import Mailbox
from tests.support.receiver import Receiver
from tests.support.server import Server

PHONE: ViewportSize = {"width": 390, "height": 844}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def on_a_phone(browser: Browser, server: Server, signed_in_page: Page) -> Page:
    """A phone-sized window of the same signed-in person."""
    phone = browser.new_context(
        base_url=server.base, viewport=PHONE, storage_state=signed_in_page.context.storage_state()
    )
    return phone.new_page()


def test_an_owner_adds_a_webhook_endpoint_sees_its_secret_once_and_a_test_delivered(
    browser: Browser,
    agency: tuple[Server, str, str],
    screenshots: list[Page],
    receiver: Receiver,
) -> None:
    server, email, _ = agency
    page = signed_in(browser, server, email, screenshots)
    page.get_by_role("link", name="Notifications").click()
    expect(page.get_by_role("heading", name="Notifications", exact=True)).to_be_visible()
    expect(page.get_by_role("cell", name=f"{email} (you)")).to_be_visible()

    page.get_by_label("URL (https://…)").fill(receiver.url())
    page.get_by_label("Description (optional)").fill("Our CRM")
    page.get_by_role("button", name="Add the endpoint").click()
    secret = page.locator("code.secret-value")
    expect(secret).to_have_text(re.compile(r"^whsec_"))
    shown = secret.inner_text()
    expect(page.get_by_text("Copy it now: it is not shown again.")).to_be_visible()

    page.get_by_role("button", name="Send a test event").click()
    expect(page.get_by_role("status")).to_contain_text("Test event sent")
    [ping] = receiver.wait_for(1)
    assert ping.event["type"] == "ping"
    assert ping.verified_with(shown)  # the secret on the page verifies the delivery
    row = page.locator("table.deliveries tbody tr").first
    for _ in range(20):  # the page is not live: look again until the delivery is recorded
        page.reload()
        if "succeeded" in row.inner_text():
            break
        time.sleep(0.2)
    expect(row).to_contain_text("ping")
    expect(row).to_contain_text("succeeded")
    expect(page.locator("code.secret-value")).to_have_count(0)  # shown once only

    page.get_by_role("button", name="Disable").click()
    expect(page.get_by_role("status")).to_contain_text("Webhook endpoint updated")
    expect(page.get_by_text("disabled", exact=True)).to_be_visible()

    page.get_by_label(re.compile("Alert below")).fill("15.00")
    page.get_by_role("button", name="Save the alert").click()
    expect(page.get_by_role("status")).to_contain_text("Low-balance alert saved")
    expect(page.get_by_text("We e-mail when the balance falls below $15.00")).to_be_visible()

    page.get_by_label(re.compile("Also send billing e-mail to")).fill("not an address")
    page.get_by_role("button", name="Save the addresses").click()
    expect(page.locator("#billing-emails-error")).to_contain_text("e-mail address")
    page.get_by_label(re.compile("Also send billing e-mail to")).fill("Books@Browser.test")
    page.get_by_role("button", name="Save the addresses").click()
    expect(page.get_by_role("cell", name="books@browser.test")).to_be_visible()

    page.get_by_label("A receipt for every charge").uncheck()
    page.get_by_role("button", name="Save my choices").click()
    expect(page.get_by_role("status")).to_contain_text("Your e-mail choices are saved")
    expect(page.get_by_label("A receipt for every charge")).not_to_be_checked()

    on_phone = on_a_phone(browser, server, page)
    screenshots.append(on_phone)
    on_phone.goto("/portal/team/notifications")
    expect(on_phone.get_by_role("heading", name="Webhook endpoints")).to_be_visible()
    assert fits_the_screen(on_phone)


def test_a_receipt_page_shows_what_was_charged_prints_cleanly_and_downloads_as_pdf(
    browser: Browser,
    agency: tuple[Server, str, str],
    screenshots: list[Page],
    mailbox: Mailbox,
) -> None:
    server, email, _ = agency
    page = signed_in(browser, server, email, screenshots)
    add_card(page, "Visa ending 4242 — succeeds")
    add_credits(page, "30.00", "$30.00")
    expect(page.get_by_test_id("balance")).to_have_text("$30.00")

    page.get_by_role("link", name="Receipt").first.click()
    expect(page.get_by_role("heading", name="Receipt R-000001")).to_be_visible()
    receipt = page.locator(".receipt")
    expect(receipt).to_contain_text("Browser Agency")
    expect(receipt).to_contain_text("Visa ending 4242")
    expect(receipt).to_contain_text("$30.00 USD")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download PDF").click()
    assert download.value.suggested_filename == "R-000001.pdf"
    path = download.value.path()
    assert path.read_bytes().startswith(b"%PDF-")

    page.emulate_media(media="print")
    expect(page.locator("header.top")).to_be_hidden()  # prints the receipt, not the page
    expect(page.get_by_role("link", name="Download PDF")).to_be_hidden()
    page.emulate_media(media="screen")
    assert mailbox.first(email).subject == "Receipt R-000001: $30.00 added to your Refill wallet"

    on_phone = on_a_phone(browser, server, page)
    screenshots.append(on_phone)
    on_phone.goto(page.url)
    expect(on_phone.get_by_role("heading", name="Receipt R-000001")).to_be_visible()
    assert fits_the_screen(on_phone)
