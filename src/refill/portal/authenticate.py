"""Finishing a payment the bank wants the owner to authenticate (3-D Secure).

Stripe mode: the page runs Stripe.js's ``confirmCardPayment`` with the payment's client
secret (only this signed-in page ever sees it), then posts back; the server asks Stripe what
became of the payment and records it at once, without waiting for the webhook. Sandbox: a
simulated bank page (approve or decline), mounted only with the sandbox gateway, settles the
payment the same way, so the flow can be shown and tested in a browser.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from refill import services
from refill.errors import RefillError
from refill.money import display_amount
from refill.portal.common import PortalRefused, back, page
from refill.portal.security import Signed, allowed_to_change
from refill.portal.views import card_name
from refill.reload.attempt import ReloadAttempt
from refill.reload.states import AttemptStatus
from refill.services.sessions import PortalSession
from refill.webctx import Service

router = APIRouter(prefix="/portal", include_in_schema=False)
# Only with the sandbox gateway: a stand-in for the bank's own page.
sandbox_router = APIRouter(prefix="/portal", include_in_schema=False)
PAGE = "/portal/team/billing"

OUTCOME_NOTICES = {
    AttemptStatus.SUCCEEDED: "payment_authenticated",
    AttemptStatus.FAILED: "authentication_declined",
    AttemptStatus.CANCELED: "authentication_declined",
}


def _waiting(refill: Any, session: PortalSession, reload_id: str) -> ReloadAttempt:
    if not session.can_change:
        raise PortalRefused(403, "Only an owner or admin can authenticate a payment.")
    try:
        return services.get_reload(refill.db, agency_id=session.agency_id, attempt_id=reload_id)
    except RefillError:
        raise PortalRefused(404, "There is no such payment in this agency.") from None


def _settled(attempt: ReloadAttempt) -> RedirectResponse:
    return back(PAGE, OUTCOME_NOTICES.get(attempt.status, "authentication_pending"))


@router.get("/team/billing/reloads/{reload_id}/authenticate")
def authenticate_page(
    request: Request, reload_id: str, session: Signed, refill: Service
) -> Response:
    attempt = _waiting(refill, session, reload_id)
    if attempt.status is not AttemptStatus.REQUIRES_ACTION:
        return back(PAGE, "not_waiting")
    card = services.get_saved_card(
        refill.db, agency_id=session.agency_id, payment_method_id=attempt.payment_method_id
    )
    context = {
        "session": session,
        "attempt": attempt,
        "amount": display_amount(attempt.amount, attempt.currency),
        "card": card_name(card),
        "stripe_mode": refill.gateway.name == "stripe",
        "client_secret": (attempt.next_action or {}).get("client_secret", ""),
        # The Stripe gateway carries its publishable key (REFILL_STRIPE_PUBLISHABLE_KEY).
        "publishable_key": getattr(refill.gateway, "publishable_key", None) or "",
        "stripe_js_url": refill.settings.stripe_js_url,
    }
    name = "authenticate.html" if context["stripe_mode"] else "sandbox_bank.html"
    return page(request, name, context)


@router.post("/team/billing/reloads/{reload_id}/authenticated")
def authenticated(
    reload_id: str,
    session: Signed,
    refill: Service,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    """The browser is back from Stripe.js: record what Stripe says of the payment now."""
    allowed_to_change(session, csrf_token)
    _waiting(refill, session, reload_id)
    attempt = services.finish_authentication(
        refill.db, refill.processor, agency_id=session.agency_id, attempt_id=reload_id
    )
    return _settled(attempt)


@sandbox_router.post("/sandbox-bank/{reload_id}")
def simulated_bank(
    reload_id: str,
    session: Signed,
    refill: Service,
    decision: Annotated[str, Form()] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    allowed_to_change(session, csrf_token)
    _waiting(refill, session, reload_id)
    if decision not in ("approve", "decline"):
        raise PortalRefused(422, "Choose Approve or Decline.")
    try:
        attempt = services.answer_simulated_bank(
            refill.db,
            refill.gateway,
            refill.processor,
            agency_id=session.agency_id,
            attempt_id=reload_id,
            approved=decision == "approve",
        )
    except RefillError:
        return back(PAGE, "not_waiting")
    return _settled(attempt)
