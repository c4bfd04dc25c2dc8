"""localstripe, a Stripe emulator, as the real peer of the Stripe gateway in tests.

It runs as its own process on a free loopback port for the whole session and is stopped
at the end. It keeps its state in a fixed file (/tmp/localstripe.pickle), so it is always
started with ``--from-scratch`` and only once at a time; tests stay apart by using a new
agency (hence a new Stripe customer) each.

What localstripe cannot show, and how the suite covers it instead:
- it ignores ``Idempotency-Key``: a second create with the same key makes a second
  PaymentIntent. The engine's own guarantee (one claim per attempt, find-before-resend)
  is what the no-double-charge tests count;
- it has no Search API: the lost-answer tests put a fault-injecting wrapper around the SDK
  call (``LostAnswer``) whose ``search`` lists the PaymentIntents localstripe really holds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import stripe

from refill.gateway.stripe import StripeGateway

LOCALSTRIPE = str(Path(sys.executable).parent / "localstripe")
WEBHOOK_SECRET = "whsec_test_" + "0" * 24
API_KEY = "sk_test_refill_suite"  # localstripe accepts any sk_test_ key
START_WITHIN = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalStripe:
    def __init__(self) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [LOCALSTRIPE, "--port", str(self.port), "--from-scratch"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.client = stripe.StripeClient(
            API_KEY,
            base_addresses={"api": self.base},
            http_client=stripe.HTTPXClient(timeout=10, allow_sync_methods=True),
        )
        deadline = time.monotonic() + START_WITHIN
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"localstripe did not start on {self.base}")
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.base}/v1/customers", auth=(API_KEY, ""), timeout=1).is_success
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    # --- what a test needs of the peer ---------------------------------------------------

    def card(self, number: str) -> str:
        """A PaymentMethod for a test card number (as Stripe.js would make in the browser)."""
        return self.card_on(self.base, number)

    def payment_intents(self, **metadata: str) -> list[Any]:
        """Every PaymentIntent localstripe holds whose metadata has these values."""
        return self.intents_on(self.base, **metadata)

    @staticmethod
    def _client_for(base: str) -> stripe.StripeClient:
        return stripe.StripeClient(
            API_KEY,
            base_addresses={"api": base},
            http_client=stripe.HTTPXClient(timeout=10, allow_sync_methods=True),
        )

    @staticmethod
    def card_on(base: str, number: str) -> str:
        """``card`` for a localstripe known only by its address (another process's)."""
        method = LocalStripe._client_for(base).v1.payment_methods.create(
            params={
                "type": "card",
                "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
            }
        )
        return str(method.id)

    @staticmethod
    def intents_on(base: str, **metadata: str) -> list[Any]:
        """``payment_intents`` for a localstripe known only by its address."""
        found = LocalStripe._client_for(base).v1.payment_intents.list(params={"limit": 100})
        return [
            intent
            for intent in found.auto_paging_iter()
            if all(intent.metadata.get(key) == value for key, value in metadata.items())
        ]

    def authenticate(self, payment_intent: str, client_secret: str, *, success: bool) -> None:
        """What the owner does in the 3-D Secure window Stripe.js opens."""
        response = httpx.post(
            f"{self.base}/v1/payment_intents/{payment_intent}/_authenticate",
            data={
                "client_secret": client_secret,
                "success": "true" if success else "false",
                "key": "pk_test_refill_suite",
            },
            timeout=10,
        )
        response.raise_for_status()

    def send_webhooks_to(self, url: str, secret: str) -> None:
        """Make localstripe sign and POST its events to ``url``."""
        response = httpx.post(
            f"{self.base}/_config/webhooks/refill",
            data={"url": url, "secret": secret},
            auth=(API_KEY, ""),
            timeout=10,
        )
        response.raise_for_status()


def gateway_on(peer: LocalStripe) -> StripeGateway:
    """Refill's Stripe gateway pointed at the emulator (no SDK retries: faults stay visible)."""
    return StripeGateway(
        API_KEY,
        publishable_key="pk_test_refill_suite",
        webhook_secret=WEBHOOK_SECRET,
        api_base=peer.base,
        max_network_retries=0,
    )


class LostAnswer:
    """Wraps the SDK's PaymentIntent service: ``create`` goes through to localstripe (so the
    charge is real) but the caller gets a network error, as when a response is lost; with
    ``reach=False`` the request is lost on the way and nothing is created. ``search``
    answers from the PaymentIntents localstripe holds, which it cannot search itself."""

    def __init__(self, inner: Any, peer: LocalStripe, *, reach: bool = True) -> None:
        self.inner = inner
        self.peer = peer
        self.reach = reach
        self.creates = 0
        self.searches: list[str] = []

    def create(self, *args: Any, **kwargs: Any) -> Any:
        self.creates += 1
        if self.creates == 1:
            if self.reach:
                self.inner.create(*args, **kwargs)
            raise stripe.APIConnectionError("the connection was reset (injected by the test)")  # type: ignore[no-untyped-call]  # the SDK is untyped
        return self.inner.create(*args, **kwargs)

    def retrieve(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.retrieve(*args, **kwargs)

    def search(self, params: dict[str, Any]) -> Any:
        query = params["query"]
        self.searches.append(query)
        reload_id = query.split(":'", 1)[1].rstrip("'")
        return SimpleNamespace(data=self.peer.payment_intents(refill_reload_id=reload_id))
