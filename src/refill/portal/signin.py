"""/portal/login and /portal/logout: signing in to the billing page.

The sign-in form carries a double-submit CSRF cookie; the session cookie is HttpOnly,
SameSite=Lax, and Secure over HTTPS.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from refill.errors import RefillError
from refill.portal.common import PortalRefused, page
from refill.portal.security import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Signed,
    client_ip,
    csrf_ok,
    over_https,
)
from refill.services import sessions
from refill.webctx import Service

router = APIRouter(prefix="/portal", include_in_schema=False)


def render_login(
    request: Request, *, status: int = 200, error: str | None = None, email: str = ""
) -> HTMLResponse:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = page(
        request, "login.html", {"csrf_token": token, "error": error, "email": email}, status=status
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=over_https(request),
        path="/portal",
    )
    return response


@router.get("/login")
def login_page(request: Request) -> HTMLResponse:
    return render_login(request)


@router.post("/login")
def login(
    request: Request,
    refill: Service,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not expected or not csrf_ok(expected, csrf_token):
        return render_login(
            request, status=403, error="The sign-in form expired. Please try again.", email=email
        )
    try:
        token = sessions.sign_in(
            refill.db, email=email, password=password, client_ip=client_ip(request)
        )
    except RefillError as exc:
        message = (
            "The e-mail or the password is wrong."
            if exc.status == 401
            else exc.message[:1].upper() + exc.message[1:] + "."
        )
        response = render_login(request, status=exc.status, error=message, email=email)
        if "retry_after" in exc.extra:
            response.headers["Retry-After"] = str(exc.extra["retry_after"])
        return response
    signed_in = RedirectResponse("/portal/team/billing", status_code=303)
    signed_in.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(sessions.LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=over_https(request),
        path="/",
    )
    signed_in.delete_cookie(LOGIN_CSRF_COOKIE, path="/portal")
    return signed_in


@router.post("/logout")
def logout(
    request: Request,
    session: Signed,
    refill: Service,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    if not csrf_ok(session.csrf_token, csrf_token):
        raise PortalRefused(403, "This form has expired. Reload the page and try again.")
    sessions.sign_out(refill.db, request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/portal/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
