"""The billing page in Stripe mode, server side, on SQLite and PostgreSQL, against
localstripe: the page loads Stripe.js (and only then), hands out a SetupIntent's client
secret to its own session, and saves the PaymentMethod Stripe.js posts back. Stripe.js
itself runs in the browser against Stripe and is not tested offline."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from refill import services
from refill.bootstrap import Refill, build
from refill.config import Settings
from refill.gateway.stripe import StripeGateway
from refill.reload.settings import SettingsChange
from refill.web import create_app
from tests.support.portal import Agency, make_agency, page_csrf, post, sign_in
from tests.support.stripe_peer import LocalStripe, gateway_on

STRIPE_JS = '<script src="https://js.stripe.com/v3/"></script>'


@pytest.fixture
def stripe_gateway(localstripe: LocalStripe) -> StripeGateway:
    return gateway_on(localstripe)


@pytest.fixture
def refill(db_url: str, stripe_gateway: StripeGateway) -> Iterator[Refill]:
    service = build(
        Settings(database_url=db_url),
        gateway=stripe_gateway,
        webhooks=stripe_gateway,
        in_process_worker=False,
    )
    yield service
    service.close()


@pytest.fixture
def owner(refill: Refill, client: TestClient) -> Agency:
    agency = make_agency(refill)
    assert sign_in(client, agency.owner_email).status_code == 303
    return agency


def test_the_page_loads_stripe_js_and_lets_its_frames_and_api_through_only_in_stripe_mode(
    owner: Agency, client: TestClient
) -> None:
    page = client.get("/portal/team/billing")

    assert STRIPE_JS in page.text
    assert 'id="stripe-add"' in page.text
    assert "Add a test card" not in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self' https://js.stripe.com;" in csp
    assert "frame-src https://js.stripe.com https://hooks.stripe.com;" in csp
    assert "connect-src 'self' https://js.stripe.com https://api.stripe.com;" in csp


def test_stripe_js_is_loaded_from_refill_stripe_js_url_and_the_csp_follows_it(
    db_url: str, stripe_gateway: StripeGateway
) -> None:
    settings = Settings(
        database_url=db_url, stripe_js_url="http://127.0.0.1:8420/js.stripe.com/v3/"
    )
    service = build(settings, gateway=stripe_gateway, in_process_worker=False)
    try:
        with TestClient(create_app(service)) as client:
            assert sign_in(client, make_agency(service).owner_email).status_code == 303
            page = client.get("/portal/team/billing")
    finally:
        service.close()

    assert '<script src="http://127.0.0.1:8420/js.stripe.com/v3/"></script>' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self' http://127.0.0.1:8420;" in csp
    assert "https://js.stripe.com" not in csp


def test_the_sandbox_page_never_loads_stripe_js(db_url: str) -> None:
    sandbox = build(Settings(database_url=db_url), in_process_worker=False)
    try:
        with TestClient(create_app(sandbox)) as client:
            agency = make_agency(sandbox)
            assert sign_in(client, agency.owner_email).status_code == 303
            page = client.get("/portal/team/billing")
    finally:
        sandbox.close()

    assert "js.stripe.com" not in page.text + page.headers["content-security-policy"]
    assert "Add a test card (sandbox)" in page.text


@pytest.mark.parametrize(
    ("header", "status"),
    [pytest.param(None, 403, id="no-token"), pytest.param("forged", 403, id="wrong-token")],
)
def test_a_card_setup_without_the_sessions_csrf_header_is_refused(
    owner: Agency, client: TestClient, header: str | None, status: int
) -> None:
    headers = {"X-CSRF-Token": header} if header else {}

    response = client.post("/portal/team/billing/card-setup", headers=headers)

    assert response.status_code == status


def test_a_card_confirmed_by_stripe_js_is_saved_through_the_add_card_form(
    owner: Agency, refill: Refill, client: TestClient, localstripe: LocalStripe
) -> None:
    setup = client.post(
        "/portal/team/billing/card-setup", headers={"X-CSRF-Token": page_csrf(client)}
    )
    assert setup.status_code == 200, setup.text
    assert setup.json()["client_secret"].startswith("seti_")
    assert setup.json()["publishable_key"] == "pk_test_refill_suite"
    # What Stripe.js hands the page after confirmCardSetup: a PaymentMethod id.
    payment_method = localstripe.card("4242424242424242")

    saved = post(client, "/portal/team/billing/payment-methods", {"token": payment_method})

    assert (saved.status_code, saved.headers["location"]) == (
        303,
        "/portal/team/billing?notice=card_added",
    )
    [card] = services.list_payment_methods(refill.db, agency_id=owner.id).data
    assert (card.token, card.brand, card.last4) == (payment_method, "visa", "4242")
    assert "Visa ending 4242" in client.get("/portal/team/billing").text


def test_a_card_stripe_refuses_to_attach_is_shown_next_to_the_form_and_not_saved(
    owner: Agency, refill: Refill, client: TestClient, localstripe: LocalStripe
) -> None:
    payment_method = localstripe.card("4000000000000002")  # declined on attach

    response = post(client, "/portal/team/billing/payment-methods", {"token": payment_method})

    assert 400 <= response.status_code < 500
    assert '<p class="field-error">' in response.text
    assert services.list_payment_methods(refill.db, agency_id=owner.id).data == []


def test_a_payment_authenticated_with_stripe_js_is_recorded_when_the_browser_returns(
    owner: Agency, refill: Refill, client: TestClient, localstripe: LocalStripe
) -> None:
    card, _ = services.save_payment_method(
        refill.db,
        refill.gateway,
        agency_id=owner.id,
        token=localstripe.card("4000002500003155"),
        actor="test",
    )
    refill.process_new_attempts_inline()
    services.update_auto_reload(
        refill.db,
        refill.gateway,
        refill.policy,
        agency_id=owner.id,
        currency="USD",
        change=SettingsChange(
            enabled=True,
            threshold=20_000_000,
            reload_amount=50_000_000,
            payment_method_id=card.id,
        ),
        actor="test",
    )
    [waiting] = services.list_reloads(refill.db, agency_id=owner.id).data
    assert waiting.status == "requires_action"
    secret = (waiting.next_action or {})["client_secret"]

    page = client.get(f"/portal/team/billing/reloads/{waiting.id}/authenticate")
    assert page.status_code == 200
    assert f'data-client-secret="{secret}"' in page.text
    assert 'data-publishable-key="pk_test_refill_suite"' in page.text
    # What confirmCardPayment does in the owner's browser; no webhook is sent.
    localstripe.authenticate(str(waiting.gateway_payment_id), secret, success=True)
    back = post(client, f"/portal/team/billing/reloads/{waiting.id}/authenticated", {})

    assert (back.status_code, back.headers["location"]) == (
        303,
        "/portal/team/billing?notice=payment_authenticated",
    )
    settled = services.get_reload(refill.db, agency_id=owner.id, attempt_id=waiting.id)
    assert settled.status == "succeeded"
    assert services.get_wallet(refill.db, refill.policy, agency_id=owner.id).balance == 50_000_000
    again = post(client, f"/portal/team/billing/reloads/{waiting.id}/authenticated", {})
    assert again.headers["location"] == "/portal/team/billing?notice=payment_authenticated"
    assert len(services.list_transfers(refill.db, agency_id=owner.id).data) == 1
