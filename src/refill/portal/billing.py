"""/portal/team/billing: the owner's wallet page and its forms.

Every form works without JavaScript (POST, then 303 back to the page with a notice, or the
page again with the errors next to their fields). ``portal.js`` refreshes the live part
(``/live``) and draws the balance chart.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from refill import services
from refill.errors import RefillError, ValidationFailed
from refill.money import parse_amount
from refill.portal.common import FormState, PortalRefused, back, page
from refill.portal.security import Signed, allowed_to_change
from refill.portal.views import billing_context
from refill.reload.settings import UNSET, change_from_text
from refill.reload.states import AttemptStatus
from refill.services.sessions import PortalSession
from refill.webctx import Service

router = APIRouter(prefix="/portal", include_in_schema=False)
PAGE = "/portal/team/billing"


def render_billing(
    request: Request,
    refill: Any,
    session: PortalSession,
    *,
    status: int = 200,
    forms: dict[str, FormState] | None = None,
    cursor: str | None = None,
    notice: str | None = None,
) -> HTMLResponse:
    try:
        context = billing_context(refill, session, cursor, forms=forms, notice=notice)
    except ValidationFailed as exc:  # a cursor that was tampered with
        raise PortalRefused(400, exc.message) from None
    return page(request, "billing.html", context, status=status)


@router.get("")
def root() -> RedirectResponse:
    return RedirectResponse(PAGE, status_code=303)


@router.get("/team/billing")
def billing_page(
    request: Request,
    session: Signed,
    refill: Service,
    cursor: str | None = None,
    notice: str | None = None,
) -> HTMLResponse:
    return render_billing(request, refill, session, cursor=cursor, notice=notice)


@router.get("/team/billing/live")
def billing_live(
    request: Request, session: Signed, refill: Service, cursor: str | None = None
) -> HTMLResponse:
    try:
        context = billing_context(refill, session, cursor, full_page=False)
    except ValidationFailed as exc:
        raise PortalRefused(400, exc.message) from None
    return page(request, "_live.html", context)


@router.post("/team/billing/credits")
def add_credits(
    request: Request,
    session: Signed,
    refill: Service,
    amount: Annotated[str, Form()] = "",
    payment_method_id: Annotated[str, Form()] = "",
    request_key: Annotated[str, Form()] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    allowed_to_change(session, csrf_token)
    form = FormState({"amount": amount, "payment_method_id": payment_method_id})
    key = request_key.strip()
    try:
        attempt, _ = services.add_credits(
            refill.db,
            refill.processor,
            agency_id=session.agency_id,
            currency=services.get_agency(refill.db, session.agency_id).currency,
            amount=parse_amount(amount.strip(), field="amount"),
            payment_method_id=payment_method_id,
            request_key=f"portal:{key[:64]}" if key else None,
        )
    except RefillError as exc:
        form.refused(exc, "amount")
        return render_billing(request, refill, session, status=exc.status, forms={"credits": form})
    if attempt.status is AttemptStatus.FAILED:
        reason = (attempt.failure_message or attempt.failure_code or "no reason given").rstrip(".")
        form.message = f"The card was declined: {reason}. Nothing was charged."
        return render_billing(request, refill, session, status=402, forms={"credits": form})
    succeeded = attempt.status is AttemptStatus.SUCCEEDED
    return back(PAGE, "credits_added" if succeeded else "credits_waiting")


@router.post("/team/billing/auto-reload")
def save_auto_reload(
    request: Request,
    session: Signed,
    refill: Service,
    enabled: Annotated[str | None, Form()] = None,
    threshold: Annotated[str, Form()] = "",
    reload_amount: Annotated[str, Form()] = "",
    payment_method_id: Annotated[str, Form()] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    allowed_to_change(session, csrf_token)
    typed = {"threshold": threshold, "reload_amount": reload_amount}
    form = FormState(
        {"enabled": "on" if enabled else "", **typed, "payment_method_id": payment_method_id}
    )
    # A field left blank keeps its saved value, except that turning auto-reload on with a
    # blank field means "not set" (and is refused by name).
    given: dict[str, Any] = {"enabled": bool(enabled)}
    for name, text in typed.items():
        if text.strip():
            given[name] = text.strip()
        elif enabled:
            given[name] = None
    if payment_method_id or enabled:
        given["payment_method_id"] = payment_method_id or None
    try:
        change = change_from_text({k: v for k, v in given.items() if v is not UNSET})
        services.update_auto_reload(
            refill.db,
            refill.gateway,
            refill.policy,
            agency_id=session.agency_id,
            currency=services.get_agency(refill.db, session.agency_id).currency,
            change=change,
            actor=session.actor,
        )
    except RefillError as exc:
        form.refused(exc, "enabled")
        return render_billing(request, refill, session, status=422, forms={"auto_reload": form})
    return back(PAGE, "auto_reload_saved")


@router.post("/team/billing/payment-methods")
def add_card(
    request: Request,
    session: Signed,
    refill: Service,
    token: Annotated[str, Form()] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    allowed_to_change(session, csrf_token)
    form = FormState({"token": token})
    try:
        if not token.strip():
            raise ValidationFailed("choose a card", field="token")
        services.save_payment_method(
            refill.db,
            refill.gateway,
            agency_id=session.agency_id,
            token=token.strip(),
            actor=session.actor,
        )
    except RefillError as exc:
        form.errors["token"] = exc.message
        return render_billing(request, refill, session, status=exc.status, forms={"card": form})
    return back(PAGE, "card_added")


@router.post("/team/billing/payment-methods/{payment_method_id}/remove")
def remove_card(
    request: Request,
    session: Signed,
    refill: Service,
    payment_method_id: str,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    allowed_to_change(session, csrf_token)
    try:
        services.remove_payment_method(
            refill.db,
            agency_id=session.agency_id,
            payment_method_id=payment_method_id,
            actor=session.actor,
            gateway=refill.gateway,
        )
    except RefillError as exc:
        if exc.status == 404:
            raise PortalRefused(404, "There is no such card in this agency.") from None
        form = FormState(message=f"That card was not removed: {exc.message}.")
        return render_billing(request, refill, session, status=exc.status, forms={"cards": form})
    return back(PAGE, "card_removed")


@router.post("/team/billing/card-setup")
def card_setup(request: Request, session: Signed, refill: Service) -> JSONResponse:
    """For Stripe.js: a SetupIntent's client secret (the CSRF token in a header)."""
    allowed_to_change(session, request.headers.get("X-CSRF-Token"))
    try:
        setup = services.begin_card_setup(refill.db, refill.gateway, agency_id=session.agency_id)
    except RefillError as exc:
        return JSONResponse({"error": exc.message}, status_code=exc.status)
    if setup is None:
        return JSONResponse({"error": "the sandbox takes test cards by name"}, status_code=404)
    return JSONResponse(
        {"client_secret": setup.client_secret, "publishable_key": setup.publishable_key}
    )
