"""The billing portal: server-rendered pages for agency owners, at /portal.

Every form works without JavaScript (POST, then 303 back to the page with a notice, or the
page again with the errors next to their fields). A few lines of JavaScript (static
``portal.js``) refresh the live part of the page and draw the balance chart. The agency
always comes from the session, never from the URL or a form: another agency's page or
card cannot be named, let alone reached.
"""

import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, Form, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from refill import services
from refill.api.problems import unexpected_problem
from refill.bootstrap import Refill
from refill.errors import Forbidden, RefillError, ValidationFailed
from refill.gateway.sandbox import TEST_CARDS
from refill.money import format_amount, parse_amount
from refill.portal import auth, billing
from refill.reload import UNSET, SettingsChange

log = logging.getLogger("refill.portal")
HERE = Path(__file__).parent
SESSION_COOKIE = "refill_session"
LOGIN_CSRF_COOKIE = "refill_login_csrf"
HISTORY_PAGE = 20

# Sandbox test cards, by what an owner would call them.
SANDBOX_CARD_NAMES = {
    "pm_card_visa": "Visa ending 4242 — succeeds",
    "pm_card_mastercard": "Mastercard ending 4444 — succeeds",
    "pm_card_visa_chargeDeclinedInsufficientFunds": "Visa ending 9995 — insufficient funds",
    "pm_card_chargeCustomerFail": "Visa ending 0341 — declined",
    "pm_card_chargeDeclinedExpiredCard": "Visa ending 0069 — expired card",
    "pm_card_visa_chargeDeclinedLostCard": "Visa ending 9987 — lost card",
    "pm_card_chargeDeclinedProcessingError": "Visa ending 0119 — processing error",
    "pm_card_authenticationRequired": "Visa ending 3184 — needs 3-D Secure",
}
assert set(SANDBOX_CARD_NAMES) == set(TEST_CARDS), "name every sandbox card"

NOTICES = {
    "credits_added": "Credits added.",
    "credits_waiting": "The bank asks you to authenticate this payment before it is credited.",
    "auto_reload_saved": "Auto-reload settings saved.",
    "card_added": "Card saved.",
    "card_removed": "Card removed.",
    # The same words whether or not the e-mail had an account (which is never attached).
    "member_added": "Done: a person new to Refill now has an account in this agency. Someone "
    "who already has a Refill account cannot be added yet (invitations are coming).",
    "member_removed": "Member removed.",
}

RAIL_NAMES = {"daily_limit": "daily reload limit", "monthly_cap": "monthly spending cap"}

PROBLEM = "application/problem+json"


def _plain_status(status: int) -> str:
    if status == 404:
        return "There is no such page."
    if status == 405:
        return "This address does not take that kind of request."
    if status < 500:
        return "The request was not understood. Go back and try again."
    return "Something went wrong on our side. Try again in a minute."


# Refusals whose problem+json says something a person can act on, in the page's words.
_PAGE_WORDS = {
    "request_too_large": "That was more than this page accepts. Go back and send less.",
    "invalid_characters": "What you sent contains a character that is never valid (a NUL). "
    "Go back, retype it and try again.",
}


async def _refusal_message(response: Response) -> str:
    body = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
    try:
        code = json.loads(body).get("code")
    except ValueError:
        code = None
    return _PAGE_WORDS.get(str(code), _plain_status(response.status_code))


class SignInNeeded(Exception):
    """No live session: browsers are sent to the sign-in page."""


class PortalRefused(Exception):
    """A refusal shown to a person as a page (the API's problem+json is for programs)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class FormState:
    """What the person typed and what was wrong with it, to show the form again."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    message: str | None = None


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _field_of(exc: RefillError, default: str) -> str:
    return str(exc.extra.get("field") or default)


# The API's messages name JSON fields; the page names what the owner sees.
FIELD_LABELS = {
    "threshold": "The minimum threshold",
    "reload_amount": "The reload amount",
    "payment_method_id": "The payment method",
    "amount": "The amount",
}


def _plain(exc: RefillError, field: str) -> str:
    label = FIELD_LABELS.get(field)
    if label and exc.message.startswith(field + " "):
        return label + exc.message[len(field) :]
    return exc.message[:1].upper() + exc.message[1:]


def install_portal(app: FastAPI, refill: Refill) -> None:
    db = refill.db
    templates = Jinja2Templates(directory=HERE / "templates")
    app.mount("/portal/static", StaticFiles(directory=HERE / "static"), name="portal-static")
    router = APIRouter(prefix="/portal", include_in_schema=False)
    stripe_mode = refill.gateway.name == "stripe"

    def zone_of(agency_id: str) -> ZoneInfo:
        return ZoneInfo(services.get_agency(db, agency_id).timezone)

    def when(moment: datetime | None, zone: ZoneInfo) -> str:
        if moment is None:
            return ""
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    templates.env.filters["money"] = lambda micros, currency: format_amount(micros, currency)
    templates.env.globals["RAIL_NAMES"] = RAIL_NAMES

    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, exc: SignInNeeded) -> Response:
        return RedirectResponse("/portal/login", status_code=303)

    def secure(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = csp
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        """A bug: under /portal a page with the portal's headers, elsewhere problem+json."""
        if not request.url.path.startswith("/portal"):
            return await unexpected_problem(request, exc)
        log.exception("unexpected error on %s", request.url.path)
        return secure(
            templates.TemplateResponse(
                request,
                "error.html",
                {"message": _plain_status(500), "status": 500},
                status_code=500,
            )
        )

    @app.exception_handler(PortalRefused)
    async def _refused(request: Request, exc: PortalRefused) -> Response:
        return templates.TemplateResponse(
            request,
            "error.html",
            {"message": exc.message, "status": exc.status},
            status_code=exc.status,
        )

    # Scripts only from the app (and Stripe.js in Stripe mode); no inline script or style.
    # Stripe.js needs its iframes (js, hooks) and its API (Stripe's published CSP list).
    stripe_js = " https://js.stripe.com" if stripe_mode else ""
    frames = "https://js.stripe.com https://hooks.stripe.com" if stripe_mode else "'none'"
    stripe_api = " https://api.stripe.com" if stripe_mode else ""
    csp = (
        f"default-src 'self'; script-src 'self'{stripe_js}; "
        f"frame-src {frames}; connect-src 'self'{stripe_api}; img-src 'self' data:; "
        "style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )

    @app.middleware("http")
    async def _portal_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        portal = request.url.path.startswith("/portal")
        if portal and response.headers.get("content-type", "").startswith(PROBLEM):
            # The portal's own refusals are pages already; what is left (an unknown address,
            # a wrong method, a malformed request) came from the API's problem+json handlers.
            response = templates.TemplateResponse(
                request,
                "error.html",
                {
                    "message": await _refusal_message(response),
                    "status": response.status_code,
                },
                status_code=response.status_code,
                headers={"Retry-After": response.headers["Retry-After"]}
                if "Retry-After" in response.headers
                else None,
            )
        if portal:
            secure(response)
        return response

    async def current(request: Request) -> auth.PortalSession:
        session = await run_in_threadpool(auth.session_for, db, request.cookies.get(SESSION_COOKIE))
        if session is None:
            raise SignInNeeded()
        return session

    Signed = Annotated[auth.PortalSession, Depends(current)]

    def allowed_to_change(session: auth.PortalSession, csrf_token: str | None) -> None:
        if not auth.csrf_ok(session.csrf_token, csrf_token):
            raise PortalRefused(
                403,
                "This form has expired or did not come from this page. Reload the page "
                "and try again.",
            )
        if not session.can_change:
            raise PortalRefused(403, "Your role in this agency is read-only (member).")

    def back(notice: str) -> RedirectResponse:
        return RedirectResponse(f"/portal/team/billing?notice={notice}", status_code=303)

    # --- pages ---------------------------------------------------------------------------

    def billing_context(
        session: auth.PortalSession,
        cursor: str | None,
        *,
        forms: dict[str, FormState] | None = None,
        notice: str | None = None,
        full_page: bool = True,
    ) -> dict[str, Any]:
        wallet = services.get_wallet(db, refill.policy, agency_id=session.agency_id)
        zone = zone_of(session.agency_id)
        now = db.clock.now()
        cards = services.list_payment_methods(db, agency_id=session.agency_id, limit=100).data
        card_rows = [
            {
                "card": card,
                "expired": card.is_expired(now),
                # A card works to the end of its expiry month: flag the last 30 days of it.
                "expires_soon": not card.is_expired(now)
                and card.is_expired(now + timedelta(days=30)),
                "in_use": card.id == wallet.auto_reload.payment_method_id,
            }
            for card in cards
        ]
        history = services.list_reloads(
            db, agency_id=session.agency_id, limit=HISTORY_PAGE, cursor=cursor
        )
        settings = wallet.auto_reload
        chart = billing.balance_history(db, agency_id=session.agency_id)
        chart_json = {
            "currency": wallet.currency,
            "threshold": float(format_amount(settings.threshold, wallet.currency))
            if settings.threshold is not None and settings.status != "off"
            else None,
            "points": [
                {"t": int(p.at.timestamp() * 1000), "y": float(format_amount(p.balance))}
                for p in chart.points
            ],
            "reloads": [
                {
                    "t": int(m.at.timestamp() * 1000),
                    "amount": format_amount(m.amount, wallet.currency),
                    "status": m.status,
                    "trigger": m.trigger,
                    "y": None if m.balance_after is None else float(format_amount(m.balance_after)),
                }
                for m in chart.reloads
            ],
        }
        forms = forms or {}
        blocked = settings.blocked_at(now)
        return {
            "session": session,
            "wallet": wallet,
            "settings": settings,
            "blocked": blocked,
            "blocked_until": when(settings.blocked_until, zone) if blocked else None,
            "zone": zone.key,
            "cards": card_rows,
            "history": history,
            "cursor": cursor,
            # A month of usage summed: on the full page, not on every refresh of the live part.
            "usage": billing.usage_by_subteam(db, agency_id=session.agency_id) if full_page else [],
            "agencies": auth.agencies_of(db, user_id=session.user_id) if full_page else [],
            # Inside <script type="application/json">: "</" must not close the element.
            "chart_json": json.dumps(chart_json).replace("</", "<\\/"),
            "when": lambda moment: when(moment, zone),
            "test_cards": SANDBOX_CARD_NAMES if not stripe_mode else {},
            "stripe_mode": stripe_mode,
            "notice": NOTICES.get(notice or ""),
            "forms": {
                name: forms.get(name, FormState())
                for name in ("credits", "auto_reload", "card", "cards")
            },
            "policy": refill.policy,
            # One key per rendered "Add credits" form: a double submit charges once.
            "credits_key": secrets.token_urlsafe(18),
        }

    def render_billing(
        request: Request,
        session: auth.PortalSession,
        *,
        status: int = 200,
        forms: dict[str, FormState] | None = None,
        cursor: str | None = None,
        notice: str | None = None,
    ) -> HTMLResponse:
        context = billing_context(session, cursor, forms=forms, notice=notice)
        return templates.TemplateResponse(request, "billing.html", context, status_code=status)

    @router.get("")
    def root() -> RedirectResponse:
        return RedirectResponse("/portal/team/billing", status_code=303)

    @router.get("/team/billing")
    def billing_page(
        request: Request,
        session: Signed,
        cursor: str | None = None,
        notice: str | None = None,
    ) -> HTMLResponse:
        try:
            return render_billing(request, session, cursor=cursor, notice=notice)
        except ValidationFailed as exc:  # a cursor that was tampered with
            raise PortalRefused(400, exc.message) from None

    @router.get("/team/billing/live")
    def billing_live(request: Request, session: Signed, cursor: str | None = None) -> HTMLResponse:
        try:
            context = billing_context(session, cursor, full_page=False)
        except ValidationFailed as exc:
            raise PortalRefused(400, exc.message) from None
        return templates.TemplateResponse(request, "_live.html", context)

    @router.post("/team/billing/credits")
    def add_credits(
        request: Request,
        session: Signed,
        amount: Annotated[str, Form()] = "",
        payment_method_id: Annotated[str, Form()] = "",
        request_key: Annotated[str, Form()] = "",
        csrf_token: Annotated[str | None, Form()] = None,
    ) -> Response:
        allowed_to_change(session, csrf_token)
        form = FormState({"amount": amount, "payment_method_id": payment_method_id})
        try:
            attempt, _ = services.add_credits(
                db,
                refill.processor,
                refill.policy,
                agency_id=session.agency_id,
                currency=services.get_agency(db, session.agency_id).currency,
                amount=parse_amount(amount.strip() or "", field="amount"),
                payment_method_id=payment_method_id,
                request_key=f"portal:{request_key.strip()[:64]}" if request_key.strip() else None,
            )
        except RefillError as exc:
            field = _field_of(exc, "amount")
            form.errors[field] = _plain(exc, field)
            return render_billing(request, session, status=exc.status, forms={"credits": form})
        if attempt.status == "failed":
            reason = (attempt.failure_message or attempt.failure_code or "no reason given").rstrip(
                "."
            )
            form.message = f"The card was declined: {reason}. Nothing was charged."
            return render_billing(request, session, status=402, forms={"credits": form})
        return back("credits_added" if attempt.status == "succeeded" else "credits_waiting")

    @router.post("/team/billing/auto-reload")
    def save_auto_reload(
        request: Request,
        session: Signed,
        enabled: Annotated[str | None, Form()] = None,
        threshold: Annotated[str, Form()] = "",
        reload_amount: Annotated[str, Form()] = "",
        payment_method_id: Annotated[str, Form()] = "",
        csrf_token: Annotated[str | None, Form()] = None,
    ) -> Response:
        allowed_to_change(session, csrf_token)
        form = FormState(
            {
                "enabled": "on" if enabled else "",
                "threshold": threshold,
                "reload_amount": reload_amount,
                "payment_method_id": payment_method_id,
            }
        )

        def amount(name: str, text: str) -> Any:
            text = text.strip()
            if not text:
                return UNSET if not enabled else None
            try:
                return parse_amount(text, field=name)
            except RefillError as exc:
                form.errors[name] = _plain(exc, name)
                return UNSET

        change = SettingsChange(
            enabled=bool(enabled),
            threshold=amount("threshold", threshold),
            reload_amount=amount("reload_amount", reload_amount),
            payment_method_id=payment_method_id or (None if enabled else UNSET),
        )
        if not form.errors:
            try:
                services.update_auto_reload(
                    db,
                    refill.gateway,
                    refill.policy,
                    agency_id=session.agency_id,
                    currency=services.get_agency(db, session.agency_id).currency,
                    change=change,
                    actor=session.actor,
                )
                return back("auto_reload_saved")
            except RefillError as exc:
                field = _field_of(exc, "enabled")
                form.errors[field] = _plain(exc, field)
        return render_billing(request, session, status=422, forms={"auto_reload": form})

    @router.post("/team/billing/payment-methods")
    def add_card(
        request: Request,
        session: Signed,
        token: Annotated[str, Form()] = "",
        csrf_token: Annotated[str | None, Form()] = None,
    ) -> Response:
        allowed_to_change(session, csrf_token)
        form = FormState({"token": token})
        try:
            if not token.strip():
                raise ValidationFailed("choose a card", field="token")
            services.save_payment_method(
                db,
                refill.gateway,
                agency_id=session.agency_id,
                token=token.strip(),
                actor=session.actor,
            )
        except RefillError as exc:
            form.errors["token"] = exc.message
            return render_billing(request, session, status=exc.status, forms={"card": form})
        return back("card_added")

    @router.post("/team/billing/payment-methods/{payment_method_id}/remove")
    def remove_card(
        request: Request,
        session: Signed,
        payment_method_id: str,
        csrf_token: Annotated[str | None, Form()] = None,
    ) -> Response:
        allowed_to_change(session, csrf_token)
        try:
            services.remove_payment_method(
                db,
                agency_id=session.agency_id,
                payment_method_id=payment_method_id,
                actor=session.actor,
                gateway=refill.gateway,
            )
        except RefillError as exc:
            if exc.status == 404:
                raise PortalRefused(404, "There is no such card in this agency.") from None
            form = FormState(message=f"That card was not removed: {exc.message}.")
            return render_billing(request, session, status=exc.status, forms={"cards": form})
        return back("card_removed")

    @router.post("/team/billing/card-setup")
    def card_setup(request: Request, session: Signed) -> JSONResponse:
        """For Stripe.js: a SetupIntent's client secret (the CSRF token in a header)."""
        allowed_to_change(session, request.headers.get("X-CSRF-Token"))
        try:
            setup = services.begin_card_setup(db, refill.gateway, agency_id=session.agency_id)
        except RefillError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        if setup is None:
            return JSONResponse({"error": "the sandbox takes test cards by name"}, status_code=404)
        return JSONResponse(
            {"client_secret": setup.client_secret, "publishable_key": setup.publishable_key}
        )

    # --- members -------------------------------------------------------------------------

    def render_members(
        request: Request,
        session: auth.PortalSession,
        *,
        status: int = 200,
        form: FormState | None = None,
        notice: str | None = None,
    ) -> HTMLResponse:
        return templates.TemplateResponse(
            request,
            "members.html",
            {
                "session": session,
                "members": auth.list_members(db, agency_id=session.agency_id),
                "form": form or FormState(),
                "notice": NOTICES.get(notice or ""),
                "roles": auth.ROLES,
                "min_password": auth.MIN_PASSWORD_LENGTH,
                "agencies": auth.agencies_of(db, user_id=session.user_id),
            },
            status_code=status,
        )

    @router.get("/team/members")
    def members_page(
        request: Request,
        session: Signed,
        notice: str | None = None,
    ) -> HTMLResponse:
        return render_members(request, session, notice=notice)

    @router.post("/team/members")
    def add_member(
        request: Request,
        session: Signed,
        email: Annotated[str, Form()] = "",
        role: Annotated[str, Form()] = "member",
        password: Annotated[str, Form()] = "",
        csrf_token: Annotated[str | None, Form()] = None,
    ) -> Response:
        allowed_to_change(session, csrf_token)
        form = FormState({"email": email, "role": role})
        try:
            if role == "owner" and session.role != "owner":
                raise Forbidden("only an owner can make another owner", field="role")
            auth.add_member(
                db,
                agency_id=session.agency_id,
                email=email,
                role=role,  # type: ignore[arg-type]  # checked by add_member
                password=password or None,
                actor=session.actor,
            )
        except RefillError as exc:
            form.errors[_field_of(exc, "email")] = exc.message
            return render_members(request, session, status=exc.status, form=form)
        return RedirectResponse("/portal/team/members?notice=member_added", status_code=303)

    @router.post("/team/members/{user_id}/remove")
    def remove_member(
        request: Request,
        session: Signed,
        user_id: str,
        csrf_token: Annotated[str | None, Form()] = None,
    ) -> Response:
        allowed_to_change(session, csrf_token)
        try:
            auth.remove_member(db, session, user_id=user_id)
        except RefillError as exc:
            form = FormState(message=f"Not removed: {exc.message}.")
            return render_members(request, session, status=exc.status, form=form)
        return RedirectResponse("/portal/team/members?notice=member_removed", status_code=303)

    @router.post("/team/switch")
    def switch_agency(
        request: Request,
        session: Signed,
        agency_id: Annotated[str, Form()] = "",
        csrf_token: Annotated[str | None, Form()] = None,
    ) -> Response:
        """Open another agency of the same user (members too: it changes no agency)."""
        if not auth.csrf_ok(session.csrf_token, csrf_token):
            raise PortalRefused(403, "This form has expired. Reload the page and try again.")
        try:
            auth.switch_agency(db, request.cookies.get(SESSION_COOKIE, ""), agency_id=agency_id)
        except RefillError:
            raise PortalRefused(404, "You are not a member of that agency.") from None
        return RedirectResponse("/portal/team/billing", status_code=303)

    # --- sign-in -------------------------------------------------------------------------

    def render_login(
        request: Request, *, status: int = 200, error: str | None = None, email: str = ""
    ) -> HTMLResponse:
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
        response = templates.TemplateResponse(
            request,
            "login.html",
            {"csrf_token": token, "error": error, "email": email},
            status_code=status,
        )
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            token,
            httponly=True,
            samesite="lax",
            secure=_secure(request),
            path="/portal",
        )
        return response

    @router.get("/login")
    def login_page(request: Request) -> HTMLResponse:
        return render_login(request)

    @router.post("/login")
    def login(
        request: Request,
        email: Annotated[str, Form()] = "",
        password: Annotated[str, Form()] = "",
        csrf_token: Annotated[str | None, Form()] = None,
    ) -> Response:
        expected = request.cookies.get(LOGIN_CSRF_COOKIE)
        if not expected or not auth.csrf_ok(expected, csrf_token):
            return render_login(
                request,
                status=403,
                error="The sign-in form expired. Please try again.",
                email=email,
            )
        try:
            token = auth.sign_in(db, email=email, password=password, client_ip=_client_ip(request))
        except RefillError as exc:
            message = (
                "The e-mail or the password is wrong."
                if exc.status == 401
                else exc.message[:1].upper() + exc.message[1:] + "."
            )
            return render_login(request, status=exc.status, error=message, email=email)
        response = RedirectResponse("/portal/team/billing", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(auth.LIFETIME.total_seconds()),
            httponly=True,
            samesite="lax",
            secure=_secure(request),
            path="/",
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/portal")
        return response

    @router.post("/logout")
    def logout(
        request: Request,
        session: Signed,
        csrf_token: Annotated[str | None, Form()] = None,
    ) -> Response:
        if not auth.csrf_ok(session.csrf_token, csrf_token):
            raise PortalRefused(403, "This form has expired. Reload the page and try again.")
        auth.sign_out(db, request.cookies.get(SESSION_COOKIE, ""))
        response = RedirectResponse("/portal/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    app.include_router(router)
