"""The built-in sandbox gateway: deterministic, no network, the default.

Tokens are Stripe's test PaymentMethod ids, so scenarios read the same on both gateways.
Unlike Stripe, every sandbox token can be saved (with a future expiry) and fails only when
charged, so each failure path of auto-reload can be driven from the API. The outcome is a
pure function of the token, and the payment id a pure function of the idempotency key, so
repeating a charge with the same key gives the same answer: no double charge by design.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

from refill.clock import Clock, SystemClock
from refill.errors import InvalidPaymentMethod
from refill.gateway.base import CardDetails, CardSetup, ChargeRequest, ChargeResult, ChargeStatus


@dataclass(frozen=True, slots=True)
class _TestCard:
    brand: str
    last4: str
    decline_code: str | None = None
    message: str | None = None
    requires_action: bool = False


TEST_CARDS: dict[str, _TestCard] = {
    "pm_card_visa": _TestCard("visa", "4242"),
    "pm_card_mastercard": _TestCard("mastercard", "4444"),
    "pm_card_chargeCustomerFail": _TestCard(
        "visa", "0341", "card_declined", "Your card was declined."
    ),
    "pm_card_visa_chargeDeclinedInsufficientFunds": _TestCard(
        "visa", "9995", "insufficient_funds", "Your card has insufficient funds."
    ),
    "pm_card_chargeDeclinedProcessingError": _TestCard(
        "visa", "0119", "processing_error", "An error occurred while processing your card."
    ),
    "pm_card_chargeDeclinedExpiredCard": _TestCard(
        "visa", "0069", "expired_card", "Your card has expired."
    ),
    "pm_card_visa_chargeDeclinedLostCard": _TestCard(
        "visa", "9987", "lost_card", "Your card was declined."
    ),
    "pm_card_authenticationRequired": _TestCard(
        "visa",
        "3184",
        requires_action=True,
        message="The card requires authentication (3-D Secure) before it can be charged.",
    ),
}


class SandboxGateway:
    name = "sandbox"

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        # The simulated bank's answers to 3-D Secure, by payment id: the one thing the
        # sandbox remembers, because the owner decides it (this process only).
        self._authenticated: dict[str, bool] = {}
        self._lock = threading.Lock()

    def authenticate(self, payment_id: str, *, approved: bool) -> None:
        """The owner answered the simulated bank page: the waiting payment succeeds, or
        is declined, the next time it is looked up or sent."""
        with self._lock:
            self._authenticated.setdefault(payment_id, approved)

    def create_customer(self, agency_id: str, name: str) -> str | None:
        return None

    def forget_payment_method(self, token: str) -> None:
        return None

    def begin_card_setup(self, customer: str | None) -> CardSetup | None:
        return None

    def describe_payment_method(
        self, agency_id: str, token: str, customer: str | None = None
    ) -> CardDetails:
        card = TEST_CARDS.get(token)
        if card is None:
            raise InvalidPaymentMethod(
                f"unknown sandbox payment method {token!r}; use one of: " + ", ".join(TEST_CARDS),
                field="token",
            )
        return CardDetails(
            token=token,
            brand=card.brand,
            last4=card.last4,
            exp_month=12,
            exp_year=self._clock.now().year + 4,
        )

    def charge(self, request: ChargeRequest) -> ChargeResult:
        payment_id = "sbx_pi_" + hashlib.sha256(request.idempotency_key.encode()).hexdigest()[:24]
        card = TEST_CARDS.get(request.token)
        if card is None:
            return ChargeResult(
                ChargeStatus.DECLINED, payment_id, "invalid_payment_method", "Unknown card."
            )
        if card.requires_action:
            answered = self._answer(payment_id)
            if answered is not None:
                return answered
            return ChargeResult(
                ChargeStatus.REQUIRES_ACTION,
                payment_id,
                "authentication_required",
                card.message,
                next_action={"type": "authenticate", "client_secret": f"{payment_id}_secret"},
            )
        if card.decline_code:
            return ChargeResult(ChargeStatus.DECLINED, payment_id, card.decline_code, card.message)
        return ChargeResult(ChargeStatus.SUCCEEDED, payment_id)

    def _answer(self, payment_id: str) -> ChargeResult | None:
        with self._lock:
            approved = self._authenticated.get(payment_id)
        if approved is None:
            return None
        if approved:
            return ChargeResult(ChargeStatus.SUCCEEDED, payment_id)
        return ChargeResult(
            ChargeStatus.DECLINED,
            payment_id,
            "authentication_failed",
            "The bank could not authenticate the payment.",
        )

    def find_charge(self, request: ChargeRequest, payment_id: str | None) -> ChargeResult | None:
        # Apart from 3-D Secure answers the sandbox keeps no state: its answer to a request
        # is a pure function of it, so "not found" makes the reconciler send the same
        # request again, which is safe.
        return self._answer(payment_id) if payment_id else None

    def cancel_charge(self, request: ChargeRequest, payment_id: str | None) -> ChargeResult:
        # Nothing waits at a sandbox bank: a payment waiting for authentication is simply
        # never completed.
        return ChargeResult(ChargeStatus.CANCELED, payment_id)
