"""The Stripe gateway through the official SDK: against localstripe, and its translation of
Stripe's answers (PaymentIntents, SDK errors, webhook signatures) into the engine's terms."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import pytest
import stripe

from refill.errors import GatewayUnavailable, InvalidPaymentMethod, InvalidWebhook
from refill.gateway.base import ChargeRequest, ChargeStatus, EventKind
from refill.gateway.stripe import StripeGateway, charge_result_from_payment_intent
from refill.reload.policy import DeclineClass, ReloadPolicy
from tests.support.stripe_events import event_body, signed
from tests.support.stripe_peer import API_KEY, WEBHOOK_SECRET, LocalStripe, LostAnswer, gateway_on


@pytest.fixture
def gw(localstripe: LocalStripe) -> StripeGateway:
    return gateway_on(localstripe)


@pytest.fixture
def customer(gw: StripeGateway) -> str:
    created = gw.create_customer("agc_" + secrets.token_hex(6), "Gateway Test Agency")
    assert created is not None
    assert created.startswith("cus_")
    return created


def charge_request(token: str, customer: str, amount_minor: int = 2500) -> ChargeRequest:
    reload_id = "rld_" + secrets.token_hex(8)
    return ChargeRequest(
        token=token,
        amount_minor=amount_minor,
        currency="USD",
        idempotency_key=f"refill-reload-{reload_id}",
        reference=reload_id,
        agency_id="agc_x",
        trigger="auto",
        customer=customer,
    )


# --- against localstripe ------------------------------------------------------------------


def test_saving_a_card_attaches_it_to_the_agencys_customer_and_reads_brand_last4_and_expiry(
    gw: StripeGateway, customer: str, localstripe: LocalStripe
) -> None:
    card = gw.describe_payment_method("agc_x", "pm_card_visa", customer)

    assert card.token.startswith("pm_")
    assert card.token != "pm_card_visa"
    assert (card.brand, card.last4) == ("visa", "4242")
    assert 1 <= card.exp_month <= 12
    assert card.exp_year >= 2026
    assert localstripe.client.v1.payment_methods.retrieve(card.token).customer == customer


def test_a_card_made_in_the_browser_is_attached_once_and_saved_with_its_own_id(
    gw: StripeGateway, customer: str, localstripe: LocalStripe
) -> None:
    token = localstripe.card("4000002500003155")

    first = gw.describe_payment_method("agc_x", token, customer)
    again = gw.describe_payment_method("agc_x", token, customer)

    assert first.token == again.token == token
    assert first.last4 == "3155"


def test_a_card_that_another_customer_holds_is_refused(
    gw: StripeGateway, customer: str, localstripe: LocalStripe
) -> None:
    other = gw.create_customer("agc_" + secrets.token_hex(6), "Another Agency")
    token = gw.describe_payment_method("agc_other", "pm_card_visa", other).token

    with pytest.raises(InvalidPaymentMethod, match="another Stripe customer"):
        gw.describe_payment_method("agc_x", token, customer)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("pm_card_visa_chargeDeclined", id="declined-when-attached"),
        pytest.param("pm_doesnotexist", id="unknown-payment-method"),
    ],
)
def test_a_card_stripe_will_not_keep_is_refused_with_a_clear_error(
    gw: StripeGateway, customer: str, token: str
) -> None:
    with pytest.raises(InvalidPaymentMethod) as caught:
        gw.describe_payment_method("agc_x", token, customer)
    assert caught.value.status == 422
    assert caught.value.extra["field"] == "token"


@pytest.mark.parametrize(
    ("card", "status", "failure_code"),
    [
        pytest.param("pm_card_visa", ChargeStatus.SUCCEEDED, None, id="visa-succeeds"),
        pytest.param(
            "4000000000000341", ChargeStatus.DECLINED, "card_declined", id="0341-declined"
        ),
        pytest.param(
            "4000002500003155",
            ChargeStatus.REQUIRES_ACTION,
            "authentication_required",
            id="3155-needs-authentication",
        ),
    ],
)
def test_an_off_session_charge_maps_stripes_answer_onto_the_engines_outcome(
    gw: StripeGateway,
    customer: str,
    localstripe: LocalStripe,
    card: str,
    status: ChargeStatus,
    failure_code: str | None,
) -> None:
    token = card if card.startswith("pm_") else localstripe.card(card)
    token = gw.describe_payment_method("agc_x", token, customer).token
    request = charge_request(token, customer)

    result = gw.charge(request)

    assert (result.status, result.failure_code) == (status, failure_code)
    [intent] = localstripe.payment_intents(refill_reload_id=request.reference)
    assert (intent.amount, intent.currency, intent.customer) == (2500, "usd", customer)
    assert intent.payment_method == token
    if status is ChargeStatus.REQUIRES_ACTION:
        assert result.payment_id == intent.id
        assert result.next_action == {
            "type": "authenticate",
            "payment_intent": intent.id,
            "client_secret": intent.client_secret,
        }
    if status is ChargeStatus.SUCCEEDED:
        assert result.payment_id == intent.id
        assert gw.find_charge(request, intent.id) == result


def test_after_a_lost_answer_the_charge_is_found_by_the_reload_id_in_its_metadata(
    gw: StripeGateway, customer: str, localstripe: LocalStripe
) -> None:
    token = gw.describe_payment_method("agc_x", "pm_card_visa", customer).token
    lost = LostAnswer(gw.client.v1.payment_intents, localstripe)
    gw.client.v1.payment_intents = lost  # type: ignore[assignment]
    request = charge_request(token, customer)

    assert gw.charge(request).status is ChargeStatus.UNKNOWN
    found = gw.find_charge(request, None)

    reload_id = request.reference
    assert lost.searches == [f"metadata['refill_reload_id']:'{reload_id}'"]
    [intent] = localstripe.payment_intents(refill_reload_id=reload_id)
    assert found is not None
    assert found.status is ChargeStatus.SUCCEEDED
    assert found.payment_id == intent.id


def test_a_charge_stripe_never_received_is_not_found_so_it_may_be_sent_again(
    gw: StripeGateway, customer: str, localstripe: LocalStripe
) -> None:
    token = gw.describe_payment_method("agc_x", "pm_card_visa", customer).token
    gw.client.v1.payment_intents = LostAnswer(  # type: ignore[assignment]
        gw.client.v1.payment_intents, localstripe, reach=False
    )
    request = charge_request(token, customer)

    assert gw.charge(request).status is ChargeStatus.UNKNOWN
    assert gw.find_charge(request, None) is None
    assert localstripe.payment_intents(refill_reload_id=request.reference) == []


def test_when_stripe_cannot_search_the_charge_stays_unknown_and_nothing_is_sent_again(
    gw: StripeGateway, customer: str
) -> None:
    # localstripe has no Search API (404), like a Stripe account where search is off.
    token = gw.describe_payment_method("agc_x", "pm_card_visa", customer).token

    found = gw.find_charge(charge_request(token, customer), None)

    assert found is not None
    assert found.status is ChargeStatus.UNKNOWN


def test_an_unreachable_stripe_gives_an_unknown_charge_and_a_503_when_saving_a_card() -> None:
    closed = f"http://127.0.0.1:{_closed_port()}"
    gw = StripeGateway(API_KEY, api_base=closed, max_network_retries=0, timeout_seconds=2)

    result = gw.charge(charge_request("pm_x", "cus_x"))
    assert result.status is ChargeStatus.UNKNOWN
    with pytest.raises(GatewayUnavailable) as caught:
        gw.describe_payment_method("agc_x", "pm_card_visa", "cus_x")
    assert caught.value.status == 503


def test_a_card_setup_gives_a_setup_intent_secret_and_the_publishable_key(
    gw: StripeGateway, customer: str, localstripe: LocalStripe
) -> None:
    setup = gw.begin_card_setup(customer)

    assert setup is not None
    assert setup.publishable_key == "pk_test_refill_suite"
    intent_id = setup.client_secret.split("_secret_")[0]
    intent = localstripe.client.v1.setup_intents.retrieve(intent_id)
    assert (intent.customer, intent.usage) == (customer, "off_session")


def test_forgetting_a_card_detaches_it_at_stripe_and_forgetting_it_twice_is_harmless(
    gw: StripeGateway, customer: str, localstripe: LocalStripe
) -> None:
    token = gw.describe_payment_method("agc_x", "pm_card_visa", customer).token

    gw.forget_payment_method(token)
    gw.forget_payment_method(token)

    assert localstripe.client.v1.payment_methods.retrieve(token).customer is None


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- translation of Stripe's answers (no network) -----------------------------------------


@pytest.mark.parametrize(
    ("intent", "status", "code"),
    [
        pytest.param({"status": "succeeded"}, ChargeStatus.SUCCEEDED, None, id="succeeded"),
        pytest.param(
            {"status": "requires_action", "client_secret": "pi_1_secret_x"},
            ChargeStatus.REQUIRES_ACTION,
            "authentication_required",
            id="requires-action",
        ),
        pytest.param(
            {
                "status": "requires_payment_method",
                "last_payment_error": {"code": "authentication_required"},
            },
            ChargeStatus.REQUIRES_ACTION,
            "authentication_required",
            id="off-session-authentication-required",
        ),
        pytest.param(
            {
                "status": "requires_payment_method",
                "last_payment_error": {"code": "card_declined", "decline_code": "lost_card"},
            },
            ChargeStatus.DECLINED,
            "lost_card",
            id="declined-with-decline-code",
        ),
        pytest.param(
            {"status": "requires_payment_method", "last_payment_error": {"code": "expired_card"}},
            ChargeStatus.DECLINED,
            "expired_card",
            id="declined-with-error-code",
        ),
        pytest.param({"status": "canceled"}, ChargeStatus.CANCELED, "canceled", id="canceled"),
        pytest.param({"status": "processing"}, ChargeStatus.UNKNOWN, None, id="processing"),
    ],
)
def test_a_payment_intents_status_maps_onto_the_engines_outcome(
    intent: dict[str, Any], status: ChargeStatus, code: str | None
) -> None:
    result = charge_result_from_payment_intent({"id": "pi_1", **intent})

    assert (result.status, result.failure_code, result.payment_id) == (status, code, "pi_1")


def _card_error(code: str, decline_code: str | None = None) -> stripe.CardError:
    body = {"error": {"type": "card_error", "code": code, "message": "Your card was declined."}}
    if decline_code:
        body["error"]["decline_code"] = decline_code
    return stripe.CardError(  # type: ignore[no-untyped-call]  # the SDK is untyped
        "Your card was declined.", None, code, http_status=402, json_body=body, http_body=""
    )


class _Raises:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def create(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status", "code", "decline_class"),
    [
        pytest.param(
            _card_error("card_declined", "insufficient_funds"),
            ChargeStatus.DECLINED,
            "insufficient_funds",
            DeclineClass.SOFT,
            id="insufficient-funds-soft",
        ),
        pytest.param(
            _card_error("expired_card"),
            ChargeStatus.DECLINED,
            "expired_card",
            DeclineClass.HARD,
            id="expired-card-hard",
        ),
        pytest.param(
            _card_error("card_declined", "stolen_card"),
            ChargeStatus.DECLINED,
            "stolen_card",
            DeclineClass.HARD,
            id="stolen-card-hard",
        ),
        pytest.param(
            _card_error("card_declined"),
            ChargeStatus.DECLINED,
            "card_declined",
            DeclineClass.SOFT,
            id="generic-decline-soft",
        ),
        pytest.param(
            _card_error("authentication_required"),
            ChargeStatus.REQUIRES_ACTION,
            "authentication_required",
            None,
            id="authentication-required",
        ),
        pytest.param(
            stripe.InvalidRequestError(  # type: ignore[no-untyped-call]  # the SDK is untyped
                "No such PaymentMethod", "payment_method", code="resource_missing"
            ),
            ChargeStatus.DECLINED,
            "invalid_payment_method",
            DeclineClass.HARD,
            id="card-gone-at-stripe-hard",
        ),
        pytest.param(
            stripe.APIConnectionError("reset"),  # type: ignore[no-untyped-call]  # untyped SDK
            ChargeStatus.UNKNOWN,
            None,
            None,
            id="network",
        ),
        pytest.param(
            stripe.APIError("boom", http_status=500), ChargeStatus.UNKNOWN, None, None, id="5xx"
        ),
        pytest.param(
            stripe.RateLimitError("slow down", http_status=429),
            ChargeStatus.UNKNOWN,
            None,
            None,
            id="rate-limited",
        ),
        pytest.param(
            stripe.AuthenticationError("bad key", http_status=401),
            ChargeStatus.UNKNOWN,
            None,
            None,
            id="refused-api-key-is-not-the-cards-fault",
        ),
        pytest.param(
            stripe.InvalidRequestError(  # type: ignore[no-untyped-call]  # the SDK is untyped
                "Keys for idempotent requests can only be used once at a time",
                None,
                code="idempotency_key_in_use",
            ),
            ChargeStatus.UNKNOWN,
            None,
            None,
            id="same-key-still-running",
        ),
    ],
)
def test_an_sdk_error_on_a_charge_maps_onto_the_engines_outcome_and_decline_class(
    error: Exception, status: ChargeStatus, code: str | None, decline_class: DeclineClass | None
) -> None:
    gw = StripeGateway(API_KEY, api_base="http://127.0.0.1:9")
    gw.client.v1.payment_intents = _Raises(error)  # type: ignore[assignment]

    result = gw.charge(charge_request("pm_1", "cus_1"))

    assert (result.status, result.failure_code) == (status, code)
    if decline_class is not None:
        assert ReloadPolicy().classify(result.failure_code) is decline_class


# --- webhook signatures (no network) ------------------------------------------------------


def test_a_correctly_signed_webhook_gives_its_event() -> None:
    gw = StripeGateway(API_KEY, webhook_secret=WEBHOOK_SECRET)
    body = event_body()

    event = gw.parse_webhook(body, signed(body))

    assert (event.type, event.kind, event.object_id) == (
        "payment_intent.succeeded",
        EventKind.PAYMENT,
        "pi_1",
    )
    assert event.id == json.loads(body)["id"]


@pytest.mark.parametrize(
    ("make_header", "body", "code"),
    [
        pytest.param(
            lambda b: signed(b, secret="whsec_wrong"),
            event_body(),
            "invalid_signature",
            id="wrong-secret",
        ),
        pytest.param(
            lambda b: signed(b, at=int(time.time()) - 301),
            event_body(),
            "invalid_signature",
            id="stale-timestamp",
        ),
        pytest.param(lambda b: "", event_body(), "invalid_signature", id="no-signature"),
        pytest.param(
            lambda b: signed(event_body()), event_body(), "invalid_signature", id="other-body"
        ),
        pytest.param(signed, b"{not json", "malformed_webhook", id="malformed-body"),
        pytest.param(signed, b"\xff\xfe", "malformed_webhook", id="not-utf8"),
        pytest.param(signed, b'{"id": "evt_1"}', "malformed_webhook", id="not-an-event"),
    ],
)
def test_a_webhook_that_does_not_check_out_is_rejected(
    make_header: Any, body: bytes, code: str
) -> None:
    gw = StripeGateway(API_KEY, webhook_secret=WEBHOOK_SECRET)

    with pytest.raises(InvalidWebhook) as caught:
        gw.parse_webhook(body, make_header(body))
    assert caught.value.code == code
    assert caught.value.status == 400


def test_webhooks_without_a_configured_secret_are_refused_as_not_configured() -> None:
    body = event_body()
    with pytest.raises(GatewayUnavailable) as caught:
        StripeGateway(API_KEY).parse_webhook(body, signed(body))
    assert caught.value.code == "gateway_not_configured"
