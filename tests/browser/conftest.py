"""What the browser tests share: Debian's Chromium through Playwright, one `refill serve`
per module (on SQLite, e-mailing a real SMTP server, webhooks allowed to loopback), an
agency per test, and a screenshot of every page a test opened, in test-output/<test>/."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support.mailbox import Mailbox, Received
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
    # Closed only once every page is photographed: pages may share a context.
    for context in {id(page.context): page.context for page in pages}.values():
        context.close()


@pytest.fixture
def snap(request: pytest.FixtureRequest) -> Callable[[Page, str], None]:
    """Photograph a page as it is now, at desktop and at phone size, as ``<label>-desktop.png``
    and ``<label>-phone.png`` in the test's folder (a state that the test then resolves)."""
    folder = OUTPUT / re.sub(r"[^\w.-]+", "_", request.node.name)

    def take(page: Page, label: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        size = page.viewport_size or {"width": 1280, "height": 720}
        for name, (width, height) in (("desktop", (1280, 900)), ("phone", (390, 844))):
            page.set_viewport_size({"width": width, "height": height})
            page.screenshot(path=str(folder / f"{label}-{name}.png"), full_page=True)
        page.set_viewport_size(size)

    return take


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox().start()
    yield box
    box.stop()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, mailbox: Mailbox
) -> Iterator[tuple[Server, str]]:
    """One `refill serve` on a fresh SQLite file for the module; each test has its agency."""
    url = f"sqlite:///{tmp_path_factory.mktemp('portal') / 'portal.db'}"
    env = {**os.environ, "REFILL_DATABASE_URL": url}
    subprocess.run([REFILL, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=60)
    server = Server(
        url,
        env={
            "REFILL_SMTP_URL": mailbox.url,
            "REFILL_WEBHOOK_ALLOW_PRIVATE": "true",
            "REFILL_PUBLIC_URL": "https://billing.example.com",
        },
    )
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
    # A valid host name (no label ends in "-"), unique per test and per parameter.
    name = request.node.name
    label = re.sub(r"[^a-z0-9]+", "-", name.lower())[:32].strip("-")
    email = f"Owner@{label}-{hashlib.sha256(name.encode()).hexdigest()[:8]}.test"
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


def link_of(received: Received) -> str:
    """The portal path (and query) of the link in an e-mail, to open on the test server."""
    found = re.search(r"https://billing\.example\.com(/portal/\S+)", received.text)
    assert found, received.text
    return found.group(1)


def signed_in(browser: Browser, server: Server, email: str, shots: list[Page]) -> Page:
    page = browser.new_context(base_url=server.base).new_page()
    shots.append(page)
    page.goto("/portal/team/billing")
    expect(page).to_have_url(re.compile(r"/portal/login$"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    # An argon2 check takes a while when the machine is busy (the suite runs in parallel).
    expect(page.get_by_role("heading", name="Billing", exact=True)).to_be_visible(
        timeout=SEEN_WITHIN_MS
    )
    return page


def add_card(page: Page, card_name: str) -> None:
    page.get_by_label("Add a test card (sandbox)").select_option(label=card_name)
    page.get_by_role("button", name="Add card").click()
    expect(page.get_by_text("Card saved.")).to_be_visible()


def add_credits(page: Page, typed: str, shown: str, card: str = "Visa ending 4242") -> None:
    """Add credits as an owner does: type, review what will be charged, confirm."""
    page.get_by_label("Amount (USD)", exact=True).fill(typed)
    page.get_by_label("Pay with").select_option(label=card)
    page.get_by_role("button", name="Review").click()
    expect(page.get_by_test_id("credits-confirm")).to_contain_text(f"Charge {shown} to {card}")
    page.get_by_role("button", name=f"Charge {shown}").click()
    expect(page.get_by_role("status")).to_have_text(f"Added {shown} from {card}.")


def enable_auto_reload(page: Page, threshold: str = "20.00", reload_amount: str = "50.00") -> None:
    page.get_by_label("Minimum threshold (USD)").fill(threshold)
    page.get_by_label("Reload amount (USD)").fill(reload_amount)
    page.get_by_label("Payment method", exact=True).select_option(index=1)
    page.get_by_label("Auto Reload on").check()
    page.get_by_role("button", name="Save Auto Reload").click()
    expect(page.get_by_text("Auto Reload settings saved.")).to_be_visible()


def fits_the_screen(page: Page) -> bool:
    """No horizontal scrolling: the page is no wider than the window. When it is, the
    elements that stick out are printed (shown with the failure). Measured once the page
    has loaded: its stylesheets block the first paint, but not the text a test waits for."""
    page.wait_for_load_state("load")
    if page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"):
        return True
    print("wider than the window:", page.evaluate(_STICKING_OUT))  # noqa: T201  the failure's why
    return False


_STICKING_OUT = """() => [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
  .slice(0, 8)
  .map(e => `${e.tagName.toLowerCase()}.${e.className} `
    + `${Math.round(e.getBoundingClientRect().right)}px`)"""


def spend(server: Server, key: str, amount: str, reference: str) -> None:
    """Usage through the API, for the agency's first subteam (made when it has none)."""
    with client(server, key) as api:
        subteams = call(api, "GET", "/v1/subteams", 200)["data"]
        subteam = subteams[0]["id"] if subteams else None
        if subteam is None:
            subteam = call(api, "POST", "/v1/subteams", 201, json={"name": "Calls"})["id"]
        usage = {"subteam_id": subteam, "amount": amount, "reference": reference}
        call(api, "POST", "/v1/usage", 201, json=usage)
