"""The billing portal's security: sessions from the cookie, CSRF tokens on every form, and
the headers every page carries (a strict Content-Security-Policy, no framing).

The agency always comes from the session, never from the URL or a form: another agency's
page or card cannot be named, let alone reached.
"""

from __future__ import annotations

import secrets
from typing import Annotated, TypeVar
from urllib.parse import urlsplit

from fastapi import Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from refill.portal.common import PortalRefused, SignInNeeded
from refill.services import sessions
from refill.services.sessions import PortalSession
from refill.webctx import Service

R = TypeVar("R", bound=Response)

SESSION_COOKIE = "refill_session"
LOGIN_CSRF_COOKIE = "refill_login_csrf"


def content_security_policy(stripe_js_url: str | None) -> str:
    """Scripts from the app only (and Stripe.js in Stripe mode); no inline script or style.
    Stripe.js needs its iframes (js, hooks) and its API (Stripe's published CSP list); the
    origin it is loaded from (``REFILL_STRIPE_JS_URL``) is the one allowed."""
    if stripe_js_url is None:
        return (
            "default-src 'self'; script-src 'self'; frame-src 'none'; connect-src 'self'; "
            "img-src 'self' data:; style-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        )
    parts = urlsplit(stripe_js_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return (
        f"default-src 'self'; script-src 'self' {origin}; "
        f"frame-src {origin} https://hooks.stripe.com; "
        f"connect-src 'self' {origin} https://api.stripe.com; img-src 'self' data:; "
        "style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


def secure(response: Response, csp: str) -> Response:
    response.headers["Content-Security-Policy"] = csp
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and secrets.compare_digest(expected.encode(), (given or "").encode())


def public_form_token(request: Request) -> str:
    """The double-submit CSRF token of a form shown before sign-in (sign-in, forgotten
    password, invitation, reset): the cookie's, or a new one that ``with_form_cookie`` sets."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)


def with_form_cookie(response: R, request: Request, token: str) -> R:
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=over_https(request),
        path="/portal",
    )
    return response


def public_form_ok(request: Request, given: str | None) -> bool:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    return bool(expected) and csrf_ok(expected or "", given)


def set_session_cookie(response: Response, request: Request, token: str) -> Response:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(sessions.LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=over_https(request),
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/portal")
    return response


def safe_next(path: str | None) -> str:
    """Where to go after signing in: a page of the portal, never another site."""
    if path and path.startswith("/portal/") and not path.startswith("//") and "\\" not in path:
        return path
    return "/portal/team/billing"


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def over_https(request: Request) -> bool:
    return request.url.scheme == "https"


async def current(request: Request, refill: Service) -> PortalSession:
    session = await run_in_threadpool(
        sessions.session_for, refill.db, request.cookies.get(SESSION_COOKIE)
    )
    if session is None:
        raise SignInNeeded()
    return session


Signed = Annotated[PortalSession, Depends(current)]


def allowed_to_change(session: PortalSession, csrf_token: str | None) -> None:
    if not csrf_ok(session.csrf_token, csrf_token):
        raise PortalRefused(
            403,
            "This form has expired or did not come from this page. Reload the page and try again.",
        )
    if not session.can_change:
        raise PortalRefused(403, "Your role in this agency is read-only (member).")
