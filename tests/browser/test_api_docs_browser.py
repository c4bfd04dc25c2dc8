"""The API docs at /docs in a real browser that may reach nothing but the test server:
Swagger UI renders every operation and can call the API, with no request to another site
and nothing refused by the page's Content-Security-Policy. Screenshots in
test-output/<test name>/."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect

from tests.support.server import Server

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


class OfflinePage:
    """A page whose requests to any host but loopback are aborted (and remembered), and
    whose console errors (a CSP refusal is one) and uncaught exceptions are remembered."""

    def __init__(self, browser: Browser, server: Server, shots: list[Page]) -> None:
        self.elsewhere: list[str] = []
        self.errors: list[str] = []
        context = browser.new_context(base_url=server.base)
        context.route("**/*", self._only_loopback)
        self.page = context.new_page()
        shots.append(self.page)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _only_loopback(self, route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            self.elsewhere.append(route.request.url)
            route.abort()

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)


def operation_count(server: Server) -> int:
    document = httpx.get(f"{server.base}/openapi.json", timeout=10).json()
    return sum(
        1 for item in document["paths"].values() for method in item if method in HTTP_METHODS
    )


def test_api_docs_render_every_operation_with_nothing_from_another_site(
    browser: Browser, served: tuple[Server, str], screenshots: list[Page]
) -> None:
    server, _ = served
    offline = OfflinePage(browser, server, screenshots)
    page = offline.page
    page.goto("/docs")

    expect(page.get_by_role("heading", name="Refill")).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile(r"^wallet\b"))).to_be_visible()
    add_credits = page.locator("#operations-wallet-add_credits")
    expect(add_credits).to_be_visible()
    expect(add_credits).to_contain_text("/v1/wallet/credits")
    expect(page.locator(".opblock")).to_have_count(operation_count(server))
    assert offline.elsewhere == []
    assert offline.errors == []


def test_api_docs_call_the_api_with_the_key_typed_into_authorize(
    browser: Browser, agency: tuple[Server, str, str], screenshots: list[Page]
) -> None:
    server, _, key = agency
    offline = OfflinePage(browser, server, screenshots)
    page = offline.page
    page.goto("/docs")

    page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".dialog-ux")
    dialog.get_by_label("Value").fill(key)
    dialog.get_by_role("button", name="Apply credentials").click()
    expect(dialog.get_by_role("button", name="Remove authorization")).to_be_visible()
    dialog.get_by_role("button", name="Close").click()
    get_wallet = page.locator("#operations-wallet-get_wallet")
    get_wallet.locator(".opblock-summary").click()
    get_wallet.get_by_role("button", name="Try it out").click()
    get_wallet.get_by_role("button", name="Execute").click()

    status = get_wallet.locator(".live-responses-table tr.response .response-col_status")
    expect(status).to_have_text("200")
    expect(get_wallet.locator(".live-responses-table")).to_contain_text('"balance"')
    assert offline.elsewhere == []
    assert offline.errors == []
