"""The billing portal in a real browser: Debian's Chromium driven by Playwright, against a
real `refill serve` process. Each test leaves a screenshot of what the user last saw in
test-output/<test name>/ (also when it fails)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support.server import REFILL, Server, call, client

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "a long owner password"
OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
SEEN_WITHIN_MS = 15_000  # the page refreshes itself every 4 s; a reload takes well under 1 s


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "make test installs Debian's chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Iterator[list[Page]]:
    """Pages to photograph at the end of the test, pass or fail."""
    pages: list[Page] = []
    yield pages
    folder = OUTPUT / re.sub(r"[^\w.-]+", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    for number, page in enumerate(pages):
        if not page.is_closed():
            page.screenshot(path=str(folder / f"page-{number}.png"), full_page=True)
        page.context.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """One `refill serve` on a fresh SQLite file for the module; each test has its agency."""
    url = f"sqlite:///{tmp_path_factory.mktemp('portal') / 'portal.db'}"
    env = {**os.environ, "REFILL_DATABASE_URL": url}
    subprocess.run([REFILL, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=60)
    server = Server(url)
    try:
        server.wait_ready()
        yield server, url
    finally:
        server.stop()


@pytest.fixture
def agency(served: tuple[Server, str], request: pytest.FixtureRequest) -> tuple[Server, str, str]:
    """An agency made with the real CLI, whose owner password arrives on stdin.
    Returns the server, the owner's e-mail and the owner's API key."""
    server, url = served
    email = f"Owner@{request.node.name.replace('_', '-')[:40]}.test"
    created = subprocess.run(
        [
            *(REFILL, "agency", "create", "--name", "Browser Agency", "--json"),
            *("--owner-email", email, "--password-stdin"),
        ],
        input=PASSWORD + "\n",
        env={**os.environ, "REFILL_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    out = json.loads(created.stdout)
    assert out["owner_email"] == email.lower()
    return server, out["owner_email"], out["api_key"]


def signed_in(browser: Browser, server: Server, email: str, shots: list[Page]) -> Page:
    page = browser.new_context(base_url=server.base).new_page()
    shots.append(page)
    page.goto("/portal/team/billing")
    expect(page).to_have_url(re.compile(r"/portal/login$"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Billing", exact=True)).to_be_visible()
    return page


def add_card(page: Page, card_name: str) -> None:
    page.get_by_label("Add a test card (sandbox)").select_option(label=card_name)
    page.get_by_role("button", name="Add card").click()
    expect(page.get_by_text("Card saved.")).to_be_visible()


def enable_auto_reload(page: Page) -> None:
    page.get_by_label("Minimum Threshold (USD)").fill("20.00")
    page.get_by_label("Reload Amount (USD)").fill("50.00")
    page.get_by_label("Payment method", exact=True).select_option(index=1)
    page.get_by_label("Auto reload on").check()
    page.get_by_role("button", name="Save auto reload").click()
    expect(page.get_by_text("Auto-reload settings saved.")).to_be_visible()


def test_an_owner_sets_up_auto_reload_and_watches_the_reload_arrive_without_reloading(
    browser: Browser, agency: tuple[Server, str, str], screenshots: list[Page]
) -> None:
    server, email, key = agency
    page = signed_in(browser, server, email, screenshots)
    expect(page.get_by_test_id("service")).to_have_text("No credits: calls are being refused")

    add_card(page, "Visa ending 4242 — succeeds")
    page.get_by_label("Amount (USD)", exact=True).fill("21.00")
    page.get_by_role("button", name="Add credits").click()
    expect(page.get_by_test_id("balance")).to_have_text("21.00")
    enable_auto_reload(page)
    expect(page.get_by_test_id("service")).to_have_text("Subteams can take calls")
    expect(page.get_by_test_id("auto-reload-status")).to_contain_text("Auto-reload is on")

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
    expect(page.get_by_test_id("balance")).to_have_text("69.80", timeout=SEEN_WITHIN_MS)
    newest = page.get_by_test_id("reload-row").first
    expect(newest).to_contain_text("Auto-reload")
    expect(newest).to_contain_text("50.00 USD")
    expect(newest).to_contain_text("succeeded")
    expect(
        page.get_by_role("img", name=re.compile("Balance over the last 30 days"))
    ).to_be_visible()


def test_a_declined_card_shows_the_failure_and_the_suspended_state(
    browser: Browser, agency: tuple[Server, str, str], screenshots: list[Page]
) -> None:
    server, email, _ = agency
    page = signed_in(browser, server, email, screenshots)
    add_card(page, "Visa ending 0069 — expired card")
    # The wallet is empty, below the threshold: enabling reloads at once, with this card.
    enable_auto_reload(page)

    expect(page.get_by_test_id("auto-reload-status")).to_contain_text(
        "Auto-reload is suspended", timeout=SEEN_WITHIN_MS
    )
    expect(page.get_by_test_id("auto-reload-status")).to_contain_text("expired_card")
    failed = page.get_by_test_id("reload-row").first
    expect(failed).to_contain_text("failed")
    expect(failed).to_contain_text("Your card has expired.")
    expect(page.get_by_test_id("service")).to_have_text("No credits: calls are being refused")


def test_a_member_cannot_change_settings_and_a_post_without_csrf_is_refused(
    browser: Browser, agency: tuple[Server, str, str], screenshots: list[Page]
) -> None:
    server, email, _ = agency
    owner = signed_in(browser, server, email, screenshots)
    owner.get_by_role("link", name="Members").click()
    owner.get_by_label("Email").fill("viewer@browser.test")
    owner.get_by_label("Role").select_option("member")
    owner.get_by_label(re.compile("Initial password")).fill(PASSWORD)
    owner.get_by_role("button", name="Add member").click()
    expect(owner.get_by_role("status")).to_contain_text("now has an account in this agency")

    # A forged POST from the owner's own browser, without the form's CSRF token.
    status = owner.evaluate(
        """async () => (await fetch('/portal/team/billing/auto-reload', {method: 'POST',
             headers: {'Content-Type': 'application/x-www-form-urlencoded'},
             body: 'enabled=on&threshold=20.00&reload_amount=50.00'})).status"""
    )
    assert status == 403

    member = signed_in(browser, server, "viewer@browser.test", screenshots)
    expect(member.get_by_text("You have read-only access")).to_be_visible()
    expect(member.get_by_role("button", name="Save auto reload")).to_have_count(0)
    expect(member.get_by_role("button", name="Add credits")).to_have_count(0)
    status = member.evaluate(
        """async (token) => (await fetch('/portal/team/billing/payment-methods', {method: 'POST',
             headers: {'Content-Type': 'application/x-www-form-urlencoded'},
             body: 'token=pm_card_visa&csrf_token=' + token})).status""",
        member.locator("input[name=csrf_token]").first.get_attribute("value"),
    )
    assert status == 403
    expect(member.get_by_test_id("card")).to_have_count(0)
