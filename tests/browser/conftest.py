"""What the browser tests share: Debian's Chromium through Playwright, one `refill serve`
per module (on SQLite, e-mailing a real SMTP server, webhooks allowed to loopback), an
agency per test, and a screenshot of every page a test opened, in test-output/<test>/."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support.mailbox import Mailbox, Received
from tests.support.server import REFILL, Server

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
    expect(page.get_by_role("heading", name="Billing", exact=True)).to_be_visible()
    return page


def add_card(page: Page, card_name: str) -> None:
    page.get_by_label("Add a test card (sandbox)").select_option(label=card_name)
    page.get_by_role("button", name="Add card").click()
    expect(page.get_by_text("Card saved.")).to_be_visible()
