"""The Stripe gateway, through the official ``stripe`` SDK: the only module that imports it.

Off-session reloads follow Stripe's guidance for saved cards: one Customer per agency, the
card attached to it (from a SetupIntent in the portal, or a test token), and each reload a
PaymentIntent created with ``confirm=true, off_session=true`` under the attempt's
idempotency key. Stripe's answers are translated into the engine's four outcomes here and
nowhere else:

- ``succeeded`` → SUCCEEDED;
- authentication needed (status ``requires_action``, or the off-session error
  ``authentication_required``) → REQUIRES_ACTION, keeping the PaymentIntent id and its
  client secret so the owner can authenticate later with Stripe.js;
- card errors → DECLINED with the ``decline_code`` (else the error ``code``), which the
  engine's policy classes as soft or hard;
- no answer (network, timeout, 5xx, 429, a refused API key) → UNKNOWN: the reconciler asks
  again with ``find_charge`` before anything is sent twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import stripe

from refill.errors import GatewayUnavailable, InvalidPaymentMethod, InvalidWebhook
from refill.gateway.base import (
    CardDetails,
    CardReport,
    CardSetup,
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    EventKind,
    GatewayEvent,
    PaymentReport,
)
from refill.ids import wallet_id_for

log = logging.getLogger("refill.gateway.stripe")

# The metadata keys that name Refill's reload on every PaymentIntent it creates: known here
# and nowhere else (the engine speaks of a charge's ``reference``).
RELOAD_ID_KEY = "refill_reload_id"
AGENCY_ID_KEY = "refill_agency_id"

_PAYMENT_EVENTS = {
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
}
_CARD_UPDATED_EVENTS = {"payment_method.updated", "payment_method.automatically_updated"}


def metadata_for(request: ChargeRequest) -> dict[str, str]:
    return {
        AGENCY_ID_KEY: request.agency_id,
        "refill_wallet_id": wallet_id_for(request.agency_id),
        RELOAD_ID_KEY: request.reference,
        "refill_trigger": request.trigger,
    }


def payment_report(intent: Mapping[str, Any]) -> PaymentReport:
    """A PaymentIntent (an API answer or a webhook's object) in Refill's terms."""
    metadata = intent.get("metadata") or {}
    amount = intent.get("amount")
    return PaymentReport(
        payment_id=str(intent.get("id")),
        result=charge_result_from_payment_intent(intent),
        reference=str(metadata[RELOAD_ID_KEY]) if metadata.get(RELOAD_ID_KEY) else None,
        agency_id=str(metadata[AGENCY_ID_KEY]) if metadata.get(AGENCY_ID_KEY) else None,
        amount_minor=amount if isinstance(amount, int) else None,
        currency=str(intent["currency"]).upper() if intent.get("currency") else None,
    )


def card_report(method: Mapping[str, Any]) -> CardReport:
    card = method.get("card") or {}
    return CardReport(
        token=str(method.get("id")),
        brand=str(card["brand"]) if card.get("brand") else None,
        last4=str(card["last4"]) if card.get("last4") else None,
        exp_month=int(card["exp_month"]) if card.get("exp_month") else None,
        exp_year=int(card["exp_year"]) if card.get("exp_year") else None,
    )


def event_from_stripe(event: Mapping[str, Any]) -> GatewayEvent:
    """A verified Stripe event in Refill's terms."""
    obj = event["data"]["object"]
    if not isinstance(obj, dict):
        raise TypeError(type(obj).__name__)
    kind_of = str(event["type"])
    event_id = str(event["id"])
    object_id = str(obj["id"]) if obj.get("id") else None
    payment, card = None, None
    if kind_of in _PAYMENT_EVENTS:
        kind, payment = EventKind.PAYMENT, payment_report(obj)
    elif kind_of in _CARD_UPDATED_EVENTS:
        kind, card = EventKind.CARD_UPDATED, card_report(obj)
    elif kind_of == "payment_method.detached":
        kind, card = EventKind.CARD_DETACHED, card_report(obj)
    else:
        kind = EventKind.OTHER
    return GatewayEvent(event_id, "stripe", kind_of, kind, object_id, payment, card)


# Errors after which Stripe may or may not have acted: ask again, never assume.
_NO_ANSWER = (
    stripe.APIConnectionError,
    stripe.APIError,
    stripe.RateLimitError,
    stripe.IdempotencyError,
)
# Errors that mean Refill's own configuration is wrong (bad key, missing permission).
_MISCONFIGURED = (stripe.AuthenticationError, stripe.PermissionError)


def charge_result_from_payment_intent(intent: Mapping[str, Any]) -> ChargeResult:
    """What a PaymentIntent (an API answer or a webhook's object) means for the attempt."""
    status = intent.get("status")
    payment_id = intent.get("id")
    error = intent.get("last_payment_error") or {}
    if status == "succeeded":
        return ChargeResult(ChargeStatus.SUCCEEDED, payment_id)
    if status == "requires_action" or error.get("code") == "authentication_required":
        return _authentication_needed(intent)
    if status == "requires_payment_method":
        return ChargeResult(
            ChargeStatus.DECLINED,
            payment_id,
            error.get("decline_code") or error.get("code") or "card_declined",
            error.get("message") or "The card was declined.",
        )
    if status == "canceled":
        return ChargeResult(
            ChargeStatus.CANCELED,
            payment_id,
            "canceled",
            f"The payment was canceled ({intent.get('cancellation_reason') or 'no reason'}).",
        )
    # processing, requires_confirmation, requires_capture: no final answer yet.
    return ChargeResult(ChargeStatus.UNKNOWN, payment_id, failure_message=f"status {status}")


def _authentication_needed(intent: Mapping[str, Any]) -> ChargeResult:
    return ChargeResult(
        ChargeStatus.REQUIRES_ACTION,
        intent.get("id"),
        "authentication_required",
        "The bank asks the card holder to authenticate this payment (3-D Secure).",
        next_action={
            "type": "authenticate",
            "payment_intent": str(intent.get("id")),
            "client_secret": str(intent.get("client_secret")),
        },
    )


class StripeGateway:
    name = "stripe"

    def __init__(
        self,
        api_key: str,
        *,
        publishable_key: str | None = None,
        webhook_secret: str | None = None,
        webhook_tolerance_seconds: int = 300,
        api_base: str | None = None,
        timeout_seconds: float = 30.0,
        max_network_retries: int = 2,
    ) -> None:
        # The SDK retries network failures itself, with the same idempotency key.
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else {},
            max_network_retries=max_network_retries,
            http_client=stripe.HTTPXClient(timeout=timeout_seconds, allow_sync_methods=True),
        )
        self.publishable_key = publishable_key
        self.webhook_secret = webhook_secret
        self.webhook_tolerance_seconds = webhook_tolerance_seconds

    # --- customers and cards -------------------------------------------------------------

    def create_customer(self, agency_id: str, name: str) -> str | None:
        with _interactive("creating the Stripe customer"):
            customer = self.client.v1.customers.create(
                params={"name": name, "metadata": {AGENCY_ID_KEY: agency_id}},
                # Two first cards saved at once make one Customer, not two.
                options={"idempotency_key": f"refill-customer-{agency_id}"},
            )
        return str(customer.id)

    def describe_payment_method(
        self, agency_id: str, token: str, customer: str | None = None
    ) -> CardDetails:
        if customer is None:
            raise GatewayUnavailable("a Stripe card needs the agency's Stripe customer")
        with _interactive("saving the card at Stripe"):
            if token.startswith("pm_card_"):
                # Stripe's test-mode shortcuts: attaching makes a new PaymentMethod.
                method = self.client.v1.payment_methods.attach(token, params={"customer": customer})
            else:
                method = self.client.v1.payment_methods.retrieve(token)
                if method.customer is None:
                    method = self.client.v1.payment_methods.attach(
                        token, params={"customer": customer}
                    )
                elif _id_of(method.customer) != customer:
                    raise InvalidPaymentMethod(
                        "this payment method belongs to another Stripe customer", field="token"
                    )
        card = method.card
        if method.type != "card" or card is None:
            raise InvalidPaymentMethod("only cards can pay for reloads", field="token")
        return CardDetails(
            token=str(method.id),
            brand=str(card.brand),
            last4=str(card.last4),
            exp_month=int(card.exp_month),
            exp_year=int(card.exp_year),
        )

    def forget_payment_method(self, token: str) -> None:
        try:
            self.client.v1.payment_methods.detach(token)
        except stripe.InvalidRequestError:
            pass  # already detached (or deleted) at Stripe
        except stripe.StripeError as exc:
            log.warning("could not detach %s at Stripe (%s); detach it there", token, exc)

    def begin_card_setup(self, customer: str | None) -> CardSetup | None:
        if not self.publishable_key:
            raise GatewayUnavailable(
                "adding a card in the browser needs REFILL_STRIPE_PUBLISHABLE_KEY",
                code="gateway_not_configured",
            )
        if customer is None:
            raise GatewayUnavailable("a Stripe card needs the agency's Stripe customer")
        with _interactive("starting a card setup at Stripe"):
            intent = self.client.v1.setup_intents.create(
                params={
                    "customer": customer,
                    "payment_method_types": ["card"],
                    "usage": "off_session",
                }
            )
        return CardSetup(
            client_secret=str(intent.client_secret), publishable_key=self.publishable_key
        )

    # --- charges -------------------------------------------------------------------------

    def charge(self, request: ChargeRequest) -> ChargeResult:
        params: Any = {
            "amount": request.amount_minor,
            "currency": request.currency.lower(),
            "customer": request.customer,
            "payment_method": request.token,
            "payment_method_types": ["card"],
            "confirm": True,
            "off_session": True,
            "metadata": metadata_for(request),
        }
        try:
            intent = self.client.v1.payment_intents.create(
                params=params, options={"idempotency_key": request.idempotency_key}
            )
        except stripe.CardError as exc:
            return _card_error_result(exc)
        except stripe.InvalidRequestError as exc:
            return _invalid_request_result(exc)
        except _NO_ANSWER as exc:
            log.warning("no answer from Stripe for %s: %s", request.idempotency_key, exc)
            return ChargeResult(ChargeStatus.UNKNOWN, failure_message=type(exc).__name__)
        except _MISCONFIGURED as exc:
            log.error("Stripe refused Refill's API key (%s); fix REFILL_STRIPE_API_KEY", exc)
            return ChargeResult(ChargeStatus.UNKNOWN, failure_message=type(exc).__name__)
        return charge_result_from_payment_intent(intent)

    def find_charge(self, request: ChargeRequest, payment_id: str | None) -> ChargeResult | None:
        """The PaymentIntent made for this attempt: by its id when the answer was recorded,
        else by the attempt id in its metadata (Stripe's Search API).

        Search is eventually consistent (Stripe indexes within about a minute). A miss
        answers None and the reconciler sends the create again with the *same* idempotency
        key, which Stripe answers with the original PaymentIntent for 24 hours; the
        reconciler runs a minute after a claim, far inside that window. When Stripe cannot
        be asked (network, search unavailable), the answer is UNKNOWN: the attempt stays
        ``charging`` and nothing is sent, so a card is never charged twice.
        """
        try:
            if payment_id:
                intent = self.client.v1.payment_intents.retrieve(payment_id)
                return charge_result_from_payment_intent(intent)
            reload_id = request.reference
            found = self.client.v1.payment_intents.search(
                params={"query": f"metadata['{RELOAD_ID_KEY}']:'{reload_id}'", "limit": 10}
            )
        except stripe.StripeError as exc:
            log.warning("cannot look up the charge %s at Stripe: %s", request.idempotency_key, exc)
            return ChargeResult(ChargeStatus.UNKNOWN, payment_id, failure_message=str(exc)[:200])
        intents = list(found.data)
        if not intents:
            return None
        if len(intents) > 1:
            log.error("Stripe holds %d PaymentIntents for reload %s", len(intents), reload_id)
        # Prefer the one that took the money, if any did.
        intents.sort(key=lambda intent: intent.status != "succeeded")
        return charge_result_from_payment_intent(intents[0])

    def cancel_charge(self, request: ChargeRequest, payment_id: str | None) -> ChargeResult:
        """Cancel the PaymentIntent so the owner's client secret can no longer pay it; when
        Stripe refuses (it was paid, or already canceled), say what it is now."""
        if payment_id is None:
            found = self.find_charge(request, None)
            if found is None:
                return ChargeResult(ChargeStatus.CANCELED, None)  # never created at Stripe
            if found.status is not ChargeStatus.REQUIRES_ACTION or found.payment_id is None:
                return found
            payment_id = found.payment_id
        try:
            intent = self.client.v1.payment_intents.cancel(payment_id)
            return charge_result_from_payment_intent(intent)
        except stripe.InvalidRequestError as exc:
            log.info("Stripe did not cancel %s (%s); asking what it is", payment_id, exc.code)
        except stripe.StripeError as exc:
            log.warning("no answer from Stripe canceling %s: %s", payment_id, exc)
            return ChargeResult(ChargeStatus.UNKNOWN, payment_id, failure_message=str(exc)[:200])
        try:
            result = charge_result_from_payment_intent(
                self.client.v1.payment_intents.retrieve(payment_id)
            )
        except stripe.StripeError as exc:
            return ChargeResult(ChargeStatus.UNKNOWN, payment_id, failure_message=str(exc)[:200])
        if result.status is ChargeStatus.REQUIRES_ACTION:
            # Refused to cancel, yet still waiting: not a state Stripe documents.
            return ChargeResult(ChargeStatus.UNKNOWN, payment_id, failure_message="not canceled")
        return result

    # --- webhooks ------------------------------------------------------------------------

    def parse_webhook(self, payload: bytes, signature: str | None) -> GatewayEvent:
        """Verify ``Stripe-Signature`` (HMAC with the endpoint secret, timestamp within the
        tolerance) and return the event; raises ``InvalidWebhook`` otherwise."""
        if not self.webhook_secret:
            raise GatewayUnavailable(
                "Stripe webhooks need REFILL_STRIPE_WEBHOOK_SECRET", code="gateway_not_configured"
            )
        if not signature:
            raise InvalidWebhook("the Stripe-Signature header is missing", code="invalid_signature")
        try:
            text = payload.decode("utf-8")
            stripe.WebhookSignature.verify_header(  # type: ignore[no-untyped-call]
                text, signature, self.webhook_secret, tolerance=self.webhook_tolerance_seconds
            )
        except UnicodeDecodeError:
            raise InvalidWebhook("the body is not UTF-8 JSON", code="malformed_webhook") from None
        except stripe.SignatureVerificationError as exc:
            raise InvalidWebhook(
                f"the Stripe signature does not check out: {exc.user_message or exc}",
                code="invalid_signature",
            ) from None
        try:
            event = json.loads(text)
            if "\x00" in json.dumps(event, ensure_ascii=False):
                raise ValueError("NUL")  # no id or name Refill stores can hold one
            return event_from_stripe(event)
        except (ValueError, KeyError, TypeError, RecursionError):
            raise InvalidWebhook(
                "the body is not a Stripe event", code="malformed_webhook"
            ) from None


def _id_of(value: Any) -> str:
    return str(value if isinstance(value, str) else value.id)


def _card_error_result(exc: stripe.CardError) -> ChargeResult:
    error = exc.error
    intent = getattr(error, "payment_intent", None) if error is not None else None
    if exc.code == "authentication_required":
        if intent is not None:
            return _authentication_needed(intent)
        return ChargeResult(
            ChargeStatus.REQUIRES_ACTION,
            None,
            "authentication_required",
            "The bank asks the card holder to authenticate this payment (3-D Secure).",
        )
    decline_code = getattr(error, "decline_code", None) if error is not None else None
    return ChargeResult(
        ChargeStatus.DECLINED,
        str(intent["id"]) if intent is not None else None,
        decline_code or exc.code or "card_declined",
        exc.user_message or "The card was declined.",
    )


def _invalid_request_result(exc: stripe.InvalidRequestError) -> ChargeResult:
    if exc.code == "idempotency_key_in_use":
        # A concurrent request with the same key is still running at Stripe.
        return ChargeResult(ChargeStatus.UNKNOWN, failure_message=exc.code)
    log.error("Stripe refused a reload charge: %s (%s)", exc.user_message, exc.code)
    if exc.param in ("payment_method", "customer") or exc.code == "resource_missing":
        # The card or customer is gone at Stripe: no retry will fix it.
        return ChargeResult(
            ChargeStatus.DECLINED,
            None,
            "invalid_payment_method",
            "Stripe no longer has this card for the agency; choose another card.",
        )
    return ChargeResult(
        ChargeStatus.DECLINED, None, exc.code or "invalid_request", exc.user_message or None
    )


@contextmanager
def _interactive(doing: str) -> Iterator[None]:
    """Stripe's errors on a call the owner waits for (saving a card, starting a setup):
    a card or request error is the owner's card (422); no answer is a 503 to try again."""
    try:
        yield
    except stripe.CardError as exc:
        raise InvalidPaymentMethod(
            f"the card was declined when saved: {exc.user_message or exc.code}",
            field="token",
            decline_code=getattr(exc.error, "decline_code", None) or exc.code,
        ) from exc
    except stripe.InvalidRequestError as exc:
        raise InvalidPaymentMethod(
            f"Stripe does not accept this payment method: {exc.user_message or exc.code}",
            field="token",
        ) from exc
    except _NO_ANSWER as exc:
        raise GatewayUnavailable(f"Stripe did not answer while {doing}; try again") from exc
    except _MISCONFIGURED as exc:
        log.error("Stripe refused Refill's API key: %s", exc)
        raise GatewayUnavailable(
            f"Refill is not allowed to use Stripe ({doing}); the operator must check "
            "REFILL_STRIPE_API_KEY",
            code="gateway_not_configured",
        ) from exc
