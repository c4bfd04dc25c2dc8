"""End to end: a real `refill serve` on the Stripe gateway, localstripe as Stripe, and
localstripe's own signed webhooks delivered over HTTP to /v1/webhooks/stripe."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from typing import Any

from tests.support.server import (
    REFILL,
    RELOAD_WITHIN,
    Server,
    call,
    client,
    create_agency,
    wait_for,
)
from tests.support.stripe_peer import API_KEY, WEBHOOK_SECRET, LocalStripe


def stripe_env(localstripe: LocalStripe) -> dict[str, str]:
    return {
        "REFILL_GATEWAY": "stripe",
        "REFILL_STRIPE_API_KEY": API_KEY,
        "REFILL_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "REFILL_STRIPE_API_BASE": localstripe.base,
    }


def test_serve_on_stripe_reloads_at_the_threshold_and_finishes_an_authenticated_reload_by_webhook(
    start_server: Callable[..., Server], db_url: str, localstripe: LocalStripe
) -> None:
    server = start_server(db_url, env=stripe_env(localstripe))
    localstripe.send_webhooks_to(f"{server.base}/v1/webhooks/stripe", WEBHOOK_SECRET)
    with client(server, create_agency(db_url)) as api:
        agency = call(api, "GET", "/v1/agency", 200)["id"]
        subteam = call(api, "POST", "/v1/subteams", 201, json={"name": "Sales"})["id"]
        visa = call(api, "POST", "/v1/payment-methods", 201, json={"token": "pm_card_visa"})
        assert (visa["brand"], visa["last4"]) == ("visa", "4242")
        topup = call(
            api,
            "POST",
            "/v1/wallet/credits",
            201,
            json={"amount": "21.00", "payment_method_id": visa["id"]},
        )
        assert topup["status"] == "succeeded"

        def balance_is(amount: str) -> Callable[[], bool]:
            return lambda: call(api, "GET", "/v1/wallet", 200)["balance"] == amount

        def use(amount: str, reference: str) -> None:
            body = {"subteam_id": subteam, "amount": amount, "reference": reference}
            call(api, "POST", "/v1/usage", 201, json=body)

        settings = {"enabled": True, "threshold": "20.00", "reload_amount": "50.00"}
        call(
            api,
            "PUT",
            "/v1/wallet/auto-reload",
            200,
            json={**settings, "payment_method_id": visa["id"]},
        )
        use("2.00", "call-1")
        wait_for(balance_is("69.00"), RELOAD_WITHIN, lambda: f"no reload:\n{server.output}")

        # A card whose bank asks for 3-D Secure: the reload waits for the owner.
        strict = call(
            api,
            "POST",
            "/v1/payment-methods",
            201,
            json={"token": localstripe.card("4000002500003155")},
        )
        call(
            api,
            "PUT",
            "/v1/wallet/auto-reload",
            200,
            json={**settings, "payment_method_id": strict["id"]},
        )
        use("50.00", "call-2")

        def waiting() -> dict[str, Any] | None:
            reloads = call(api, "GET", "/v1/reloads", 200)["data"]
            return next((r for r in reloads if r["status"] == "requires_action"), None)

        pending = wait_for(waiting, RELOAD_WITHIN, lambda: f"no 3DS wait:\n{server.output}")
        action = pending["next_action"]
        localstripe.authenticate(action["payment_intent"], action["client_secret"], success=True)
        # localstripe signs payment_intent.succeeded and POSTs it to the server.
        wait_for(
            balance_is("69.00"), RELOAD_WITHIN, lambda: f"webhook did not credit:\n{server.output}"
        )
        assert call(api, "GET", f"/v1/reloads/{pending['id']}", 200)["status"] == "succeeded"

        intents = localstripe.payment_intents(refill_agency_id=agency)
        assert sorted(i.status for i in intents) == ["succeeded"] * 3  # top-up, visa, 3DS
        kinds = [t["kind"] for t in call(api, "GET", "/v1/transactions", 200)["data"]]
        assert kinds.count("auto_reload") == 2
        assert kinds.count("manual_reload") == 1
    assert API_KEY not in server.output  # the secret key never reaches the logs


def test_serve_refuses_to_start_on_stripe_without_a_secret_key(db_url: str) -> None:
    result = subprocess.run(
        [REFILL, "serve", "--port", "1"],
        env={**os.environ, "REFILL_DATABASE_URL": db_url, "REFILL_GATEWAY": "stripe"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert "REFILL_GATEWAY=stripe needs REFILL_STRIPE_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr
