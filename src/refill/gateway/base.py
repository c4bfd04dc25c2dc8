"""The one interface every payment gateway implements, and the results it returns.

Gateway SDKs and their exceptions never cross this border: each implementation translates
them into these types, so the reload engine reasons about four outcomes only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class ChargeStatus(StrEnum):
    SUCCEEDED = "succeeded"
    DECLINED = "declined"
    REQUIRES_ACTION = "requires_action"
    # The payment was canceled before any money moved (by Refill, or at the gateway).
    CANCELED = "canceled"
    # The gateway's answer was lost (timeout, reset, 5xx): the charge may or may not exist.
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class CardDetails:
    """What Refill may keep of a card: the gateway's token and display details. No PAN."""

    token: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    token: str
    amount_minor: int
    currency: str
    # Derived from the attempt id: sending it again is the same request to the gateway.
    idempotency_key: str
    # Refill's names for the charge: the reload attempt's id (``reference``), its agency and
    # trigger. The gateway files them with the payment in its own way (Stripe: metadata),
    # so the payment can be found by them and its webhooks matched to the attempt.
    reference: str
    agency_id: str
    trigger: str
    # The agency's customer at the gateway (Stripe); None where the gateway has none.
    customer: str | None = None


@dataclass(frozen=True, slots=True)
class ChargeResult:
    status: ChargeStatus
    payment_id: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    # requires_action: what the owner must do to finish the payment (e.g. a client secret
    # for Stripe.js). Never card data.
    next_action: dict[str, str] | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is ChargeStatus.SUCCEEDED


@dataclass(frozen=True, slots=True)
class CardSetup:
    """What a browser needs to collect a card for later off-session charges."""

    client_secret: str
    publishable_key: str


class EventKind(StrEnum):
    PAYMENT = "payment"  # a payment's state changed
    CARD_UPDATED = "card_updated"  # a saved card's details changed (e.g. a renewed expiry)
    CARD_DETACHED = "card_detached"  # a saved card can no longer be charged
    OTHER = "other"  # nothing Refill acts on


@dataclass(frozen=True, slots=True)
class PaymentReport:
    """What a gateway says of one of its payments, in Refill's words."""

    payment_id: str
    result: ChargeResult
    # Refill's own names the payment carries (see ``ChargeRequest``), when it carries them.
    reference: str | None
    agency_id: str | None
    amount_minor: int | None
    currency: str | None  # upper case ISO 4217


@dataclass(frozen=True, slots=True)
class CardReport:
    token: str
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None


@dataclass(frozen=True, slots=True)
class GatewayEvent:
    """A verified webhook event, parsed by its gateway into Refill's terms: no other module
    reads a gateway's own event format."""

    id: str
    gateway: str
    type: str  # the gateway's own name of the event, for logs
    kind: EventKind
    object_id: str | None = None
    payment: PaymentReport | None = None
    card: CardReport | None = None


class PaymentGateway(Protocol):
    @property
    def name(self) -> str:
        """The gateway's name, as stored with each card (``sandbox``, ``stripe``)."""
        ...

    def create_customer(self, agency_id: str, name: str) -> str | None:
        """The agency's customer at the gateway, created now (idempotently per agency);
        None for a gateway without customers."""
        ...

    def describe_payment_method(
        self, agency_id: str, token: str, customer: str | None = None
    ) -> CardDetails:
        """Check a token (attaching it to ``customer`` where the gateway needs that) and
        return its card details; raises ``InvalidPaymentMethod`` or ``GatewayUnavailable``.
        ``CardDetails.token`` is what later charges use."""
        ...

    def forget_payment_method(self, token: str) -> None:
        """Tell the gateway the card is no longer to be used (Stripe: detach it)."""
        ...

    def begin_card_setup(self, customer: str | None) -> CardSetup | None:
        """Start collecting a card in the browser (Stripe: a SetupIntent); None when the
        gateway takes test tokens instead."""
        ...

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Charge off-session, idempotently by ``request.idempotency_key``.

        Never raises for a gateway outcome: UNKNOWN says "the answer was lost, ask later".
        """
        ...

    def find_charge(self, request: ChargeRequest, payment_id: str | None) -> ChargeResult | None:
        """The current state of a charge made earlier for this request, or None if the
        gateway has no record of it (then sending the same request again is safe).
        UNKNOWN when the gateway cannot be asked."""
        ...

    def cancel_charge(self, request: ChargeRequest, payment_id: str | None) -> ChargeResult:
        """Cancel a charge that waits for the card holder (3-D Secure), so it can no longer
        take money. CANCELED once it cannot; SUCCEEDED if it was paid first; UNKNOWN when
        the gateway cannot confirm either."""
        ...


class WebhookVerifier(Protocol):
    def parse_webhook(self, payload: bytes, signature: str | None) -> GatewayEvent:
        """The event, if its signature and timestamp check out; raises ``InvalidWebhook``."""
        ...
