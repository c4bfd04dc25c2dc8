"""3-D Secure from the billing page in Stripe mode, in Chromium: the page loads Stripe.js
from REFILL_STRIPE_JS_URL (here localstripe's own mock of Stripe.js), confirms the waiting
payment with its client secret, and the server records Stripe's answer as soon as the
browser returns, with no webhook configured."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import SEEN_WITHIN_MS, signed_in
from tests.support.mailbox import Mailbox
from tests.support.server import REFILL, Server, call, client
from tests.support.stripe_peer import API_KEY, LocalStripe


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, mailbox: Mailbox, localstripe: LocalStripe
) -> Iterator[tuple[Server, str]]:
    """This module's `refill serve` is in Stripe mode against localstripe; no webhook secret,
    so only the return from the bank can credit the payment."""
    url = f"sqlite:///{tmp_path_factory.mktemp('stripe-portal') / 'portal.db'}"
    env = {**os.environ, "REFILL_DATABASE_URL": url}
    subprocess.run([REFILL, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=60)
    server = Server(
        url,
        env={
            "REFILL_GATEWAY": "stripe",
            "REFILL_STRIPE_API_KEY": API_KEY,
            "REFILL_STRIPE_API_BASE": localstripe.base,
            "REFILL_STRIPE_PUBLISHABLE_KEY": "pk_test_refill_browser",
            "REFILL_STRIPE_JS_URL": f"{localstripe.base}/js.stripe.com/v3/",
            "REFILL_SMTP_URL": mailbox.url,
        },
    )
    try:
        server.wait_ready()
        yield server, url
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("button", "notice", "balance"),
    [
        pytest.param(
            "Complete authentication",
            "Payment authenticated: the credits are in the wallet.",
            "$50.00",
            id="completed",
        ),
        pytest.param(
            "Fail authentication",
            "The payment was not authenticated, so nothing was charged.",
            "$0.00",
            id="failed",
        ),
    ],
)
def test_an_owner_authenticates_a_waiting_reload_with_stripe_js_and_it_is_recorded_at_once(
    browser: Browser,
    agency: tuple[Server, str, str],
    screenshots: list[Page],
    snap: Callable[[Page, str], None],
    localstripe: LocalStripe,
    button: str,
    notice: str,
    balance: str,
) -> None:
    server, email, key = agency
    with client(server, key) as api:
        token = localstripe.card("4000002500003155")
        card = call(api, "POST", "/v1/payment-methods", 201, json={"token": token})
        settings = {
            "enabled": True,
            "threshold": "20.00",
            "reload_amount": "50.00",
            "payment_method_id": card["id"],
        }
        call(api, "PUT", "/v1/wallet/auto-reload", 200, json=settings)
    page = signed_in(browser, server, email, screenshots)
    expect(page.get_by_test_id("banner")).to_have_attribute(
        "data-state", "action_required", timeout=SEEN_WITHIN_MS
    )

    page.get_by_role("link", name="Authenticate payment").click()
    expect(page.get_by_role("heading", name="Authenticate payment")).to_be_visible()
    page.get_by_role("button", name="Continue to your bank").click()
    expect(page.get_by_role("button", name=button)).to_be_visible()  # Stripe.js's own dialog
    snap(page, "stripe-authentication")
    page.get_by_role("button", name=button).click()

    expect(page.get_by_role("status")).to_have_text(notice, timeout=SEEN_WITHIN_MS)
    expect(page.get_by_test_id("balance")).to_have_text(balance)
    with client(server, key) as api:
        statuses = [r["status"] for r in call(api, "GET", "/v1/reloads", 200)["data"]]
    # A failed authentication is a soft decline: the retry waits for its time.
    assert statuses == (["succeeded"] if balance == "$50.00" else ["pending", "failed"])
