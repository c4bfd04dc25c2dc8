"""The billing portal's security: sessions from the cookie, CSRF tokens on every form, and
the headers every page carries (a strict Content-Security-Policy, no framing).

The agency always comes from the session, never from the URL or a form: another agency's
page or card cannot be named, let alone reached.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from refill.portal.common import PortalRefused, SignInNeeded
from refill.services import sessions
from refill.services.sessions import PortalSession
from refill.webctx import Service

SESSION_COOKIE = "refill_session"
LOGIN_CSRF_COOKIE = "refill_login_csrf"


def content_security_policy(stripe_mode: bool) -> str:
    """Scripts from the app only (and Stripe.js in Stripe mode); no inline script or style.
    Stripe.js needs its iframes (js, hooks) and its API (Stripe's published CSP list)."""
    stripe_js = " https://js.stripe.com" if stripe_mode else ""
    frames = "https://js.stripe.com https://hooks.stripe.com" if stripe_mode else "'none'"
    stripe_api = " https://api.stripe.com" if stripe_mode else ""
    return (
        f"default-src 'self'; script-src 'self'{stripe_js}; "
        f"frame-src {frames}; connect-src 'self'{stripe_api}; img-src 'self' data:; "
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
