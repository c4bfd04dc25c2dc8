"""/portal/team/billing: the owner's wallet page and its forms.

Every form works without JavaScript (POST, then 303 back to the page with a notice, or the
page again with the errors next to their fields). ``portal.js`` refreshes the live part
(``/live``) and draws the balance chart.
"""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, Field

from refill import services
from refill.errors import RefillError, ValidationFailed, refuse_all
from refill.money import display_amount, format_amount, parse_typed_amount
from refill.notify import words
from refill.portal.common import FormState, PortalRefused, back, page, plain
from refill.portal.security import Signed, allowed_to_change
from refill.portal.views import billing_context, card_name, local_time
from refill.reload.settings import UNSET, AutoReloadSettings, SettingsChange, change_from_text
from refill.reload.states import AttemptStatus, SettingsStatus
from refill.services.explain import explain_auto_reload
from refill.services.sessions import PortalSession
from refill.webctx import Service

router = APIRouter(prefix="/portal", include_in_schema=False)
PAGE = "/portal/team/billing"


class AutoReloadForm(BaseModel):
    """The Auto Reload form as typed: amounts in the owner's spelling ("$1,000")."""

    enabled: str | None = None
    mode: str = "fixed"
    threshold: str = ""
    reload_amount: str = ""
    target_balance: str = ""
    payment_method_id: str = ""
    daily_limit: str = ""
    monthly_cap: str = ""


def render_billing(
    request: Request,
    refill: Any,
    session: PortalSession,
    *,
    status: int = 200,
    forms: dict[str, FormState] | None = None,
    cursor: str | None = None,
    notice: str | None = None,
    added: str | None = None,
    shown: HistoryShown | None = None,
    extra: dict[str, Any] | None = None,
) -> HTMLResponse:
    try:
        context = billing_context(
            refill, session, cursor, forms=forms, notice=notice, added=added, shown=shown
        )
    except ValidationFailed as exc:  # a tampered cursor, a filter date that is no date
        raise PortalRefused(exc.status, exc.message) from None
    return page(request, "billing.html", {**context, **(extra or {})}, status=status)


@router.get("")
def root() -> RedirectResponse:
    return RedirectResponse(PAGE, status_code=303)


class HistoryShown(BaseModel):
    """The billing history's filter as the page's form sends it: dates, the last one
    included (the API's ``to`` is the day after), and which kind of charge."""

    since: str = Field("", alias="from")
    through: str = ""
    trigger: str = ""

    def as_query(self) -> dict[str, str]:
        given = {"from": self.since, "through": self.through, "trigger": self.trigger}
        return {name: value for name, value in given.items() if value}


Shown = Annotated[HistoryShown, Query()]


@router.get("/team/billing")
def billing_page(
    request: Request,
    session: Signed,
    refill: Service,
    shown: Shown,
    cursor: str | None = None,
    notice: str | None = None,
    added: str | None = None,
) -> HTMLResponse:
    return render_billing(
        request, refill, session, cursor=cursor, notice=notice, added=added, shown=shown
    )


@router.get("/team/billing/live")
def billing_live(
    request: Request, session: Signed, refill: Service, shown: Shown, cursor: str | None = None
) -> HTMLResponse:
    try:
        context = billing_context(refill, session, cursor, full_page=False, shown=shown)
    except ValidationFailed as exc:
        raise PortalRefused(exc.status, exc.message) from None
    return page(request, "_live.html", context)


@router.get("/team/billing/explain")
def billing_explain(request: Request, session: Signed, refill: Service) -> HTMLResponse:
    """The "Why it did or didn't reload" checklist alone, refreshed with the live part (a
    banner that changes under the owner's eyes must not contradict it)."""
    zone = ZoneInfo(services.get_agency(refill.db, session.agency_id).timezone)
    context = {
        "explanation": explain_auto_reload(refill.db, refill.policy, agency_id=session.agency_id),
        "zone": zone.key,
        "when": lambda moment: local_time(moment, zone),
    }
    return page(request, "_explain.html", context)


@router.post("/team/billing/credits")
def add_credits(
    request: Request,
    session: Signed,
    refill: Service,
    amount: Annotated[str, Form()] = "",
    payment_method_id: Annotated[str, Form()] = "",
    request_key: Annotated[str, Form()] = "",
    confirmed: Annotated[str, Form()] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    """Two steps: the first shows the amount and card to confirm; the confirmed form
    charges (once per rendered form: its request key) and redirects to the outcome."""
    allowed_to_change(session, csrf_token)
    form = FormState({"amount": amount, "payment_method_id": payment_method_id})
    currency = services.get_agency(refill.db, session.agency_id).currency
    try:
        micros = parse_typed_amount(amount, currency, field="amount")
        if not payment_method_id:
            raise ValidationFailed("choose a card to pay with", field="payment_method_id")
        card = services.get_saved_card(
            refill.db, agency_id=session.agency_id, payment_method_id=payment_method_id
        )
        if confirmed != "yes":
            form.values["amount"] = format_amount(micros, currency)
            form.confirming = {"amount": display_amount(micros, currency), "card": card_name(card)}
            return render_billing(request, refill, session, forms={"credits": form})
        key = request_key.strip()
        attempt, _ = services.add_credits(
            refill.db,
            refill.processor,
            agency_id=session.agency_id,
            currency=currency,
            amount=micros,
            payment_method_id=payment_method_id,
            request_key=f"portal:{key[:64]}" if key else None,
        )
    except RefillError as exc:
        form.refused(exc, "amount")
        return render_billing(request, refill, session, status=exc.status, forms={"credits": form})
    if attempt.status is AttemptStatus.FAILED:
        reason = words.decline(attempt.failure_code)
        form.message = (
            f"{card_name(card)} was declined: {reason}. Nothing was charged. Try another "
            "card, or update this one."
        )
        return render_billing(request, refill, session, status=402, forms={"credits": form})
    return RedirectResponse(f"{PAGE}?notice=credits_added&added={attempt.id}", status_code=303)


def _typed_amount(text: str, currency: str, name: str, wrong: list[RefillError]) -> str | None:
    """A form's amount as the API's strict decimal (None when left blank)."""
    if not text.strip():
        return None
    try:
        return format_amount(parse_typed_amount(text, currency, field=name), currency)
    except RefillError as exc:
        wrong.append(exc)
        return None


def chosen_cards(chosen: str, saved: AutoReloadSettings | None) -> dict[str, Any]:
    """The form's card select chooses the primary; the saved backups stay, in their order.

    The saved primary chosen again names no list at all (the list stays as saved, skips
    included); no card chosen is an empty list; ``saved`` None (a caller that has not read
    the settings) makes the chosen card a list of one."""
    if not chosen:
        return {"payment_method_id": None}
    if saved is None:
        return {"payment_method_id": chosen}
    if chosen == saved.payment_method_id:
        return {}
    backups = [pm for pm in saved.payment_method_ids if pm != chosen]
    return {"payment_method_ids": [chosen, *backups]}


def auto_reload_change(
    fields: AutoReloadForm, currency: str, saved: AutoReloadSettings | None = None
) -> SettingsChange:
    """The Auto Reload form as the owner typed it, as a settings change (every wrong
    field named at once); ``saved``: the settings saved now (see ``chosen_cards``)."""
    typed = fields.model_dump()
    wrong: list[RefillError] = []
    # Every field is on the page with its saved value, so a blank optional field means
    # "none" (no monthly cap); a blank required one is named when auto-reload is on.
    given: dict[str, Any] = {"enabled": bool(fields.enabled), "mode": fields.mode or "fixed"}
    if fields.enabled and saved is not None and saved.status == SettingsStatus.ACTIVE:
        # Already on: not "turn it on again", which would clear the skipped cards' skips.
        del given["enabled"]
    for name in ("threshold", "reload_amount", "target_balance", "monthly_cap"):
        value = _typed_amount(typed[name], currency, name, wrong)
        if value is not None or fields.enabled or name == "monthly_cap":
            given[name] = value
    given.update(chosen_cards(fields.payment_method_id, saved))
    if fields.daily_limit.strip():
        if fields.daily_limit.strip().isdigit():
            given["daily_limit"] = int(fields.daily_limit.strip())
        else:
            wrong.append(
                ValidationFailed("daily_limit must be a whole number", field="daily_limit")
            )
    if wrong:
        refuse_all(wrong)
    return change_from_text({k: v for k, v in given.items() if v is not UNSET})


def typed_form(fields: AutoReloadForm) -> FormState:
    return FormState({**fields.model_dump(), "enabled": "on" if fields.enabled else ""})


@router.post("/team/billing/auto-reload")
def save_auto_reload(
    request: Request,
    session: Signed,
    refill: Service,
    fields: Annotated[AutoReloadForm, Form()],
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    allowed_to_change(session, csrf_token)
    form = typed_form(fields)
    wallet = services.get_wallet(refill.db, refill.policy, agency_id=session.agency_id)
    currency = wallet.currency
    try:
        services.update_auto_reload(
            refill.db,
            refill.gateway,
            refill.policy,
            agency_id=session.agency_id,
            currency=currency,
            change=auto_reload_change(fields, currency, wallet.auto_reload),
            actor=session.actor,
        )
    except RefillError as exc:
        form.refused(exc, "enabled")
        return render_billing(request, refill, session, status=422, forms={"auto_reload": form})
    return back(PAGE, "auto_reload_saved")


ORDER_ACTIONS = ("up", "down", "add", "drop")


def reordered(listed: tuple[str, ...], action: str, card: str, enabled: bool) -> tuple[str, ...]:
    """Auto Reload's list after one of the page's buttons (the same list: nothing to do)."""
    if action not in ORDER_ACTIONS:
        raise ValidationFailed("choose move up, move down, add or take out", field="action")
    if action == "add":
        return listed if card in listed else (*listed, card)
    if card not in listed:
        raise ValidationFailed("that card is not in the Auto Reload list", field="action")
    at = listed.index(card)
    if action == "drop":
        if enabled and len(listed) == 1:
            raise ValidationFailed(
                "Auto Reload is on and needs a card to charge: add another card first, or "
                "turn Auto Reload off",
                field="action",
            )
        return listed[:at] + listed[at + 1 :]
    other = at - 1 if action == "up" else at + 1
    if not 0 <= other < len(listed):
        return listed  # already first (or last)
    ids = list(listed)
    ids[at], ids[other] = ids[other], ids[at]
    return tuple(ids)


@router.post("/team/billing/auto-reload/cards")
def order_reload_cards(
    request: Request,
    session: Signed,
    refill: Service,
    action: Annotated[str, Form()] = "",
    payment_method_id: Annotated[str, Form()] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    """The buttons of "Cards Auto Reload charges, in order": move a card up or down, add a
    saved card as the last backup, take one out. The whole list is named again, so a
    skipped card in it is tried again."""
    allowed_to_change(session, csrf_token)
    wallet = services.get_wallet(refill.db, refill.policy, agency_id=session.agency_id)
    saved = wallet.auto_reload
    try:
        ids = reordered(saved.payment_method_ids, action, payment_method_id, saved.enabled)
        if ids != saved.payment_method_ids:
            services.update_auto_reload(
                refill.db,
                refill.gateway,
                refill.policy,
                agency_id=session.agency_id,
                currency=wallet.currency,
                change=SettingsChange(payment_method_ids=ids),
                actor=session.actor,
            )
    except RefillError as exc:
        if exc.status == 404:
            raise PortalRefused(404, "There is no such card in this agency.") from None
        form = FormState(message=f"The list was not changed: {plain(exc.message, 'action')}.")
        return render_billing(
            request, refill, session, status=exc.status, forms={"reload_cards": form}
        )
    return RedirectResponse(f"{PAGE}?notice=reload_cards_saved#reload-cards", status_code=303)


@router.post("/team/billing/auto-reload/retry")
def retry_auto_reload(
    session: Signed, refill: Service, csrf_token: Annotated[str | None, Form()] = None
) -> Response:
    """ "Retry now" on a declined auto-reload waiting for its retry time."""
    allowed_to_change(session, csrf_token)
    try:
        services.retry_now(refill.db, refill.processor, agency_id=session.agency_id)
    except RefillError as exc:
        raise PortalRefused(exc.status, "No declined reload is waiting for a retry.") from None
    return back(PAGE, "retrying_now")


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
