"""/portal/login and /portal/logout: signing in to the billing page.

The sign-in form carries a double-submit CSRF cookie; the session cookie is HttpOnly,
SameSite=Lax, and Secure over HTTPS.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from refill.errors import RefillError
from refill.portal.common import NOTICES, PortalRefused, page
from refill.portal.security import (
    SESSION_COOKIE,
    Signed,
    client_ip,
    csrf_ok,
    public_form_ok,
    public_form_token,
    safe_next,
    set_session_cookie,
    with_form_cookie,
)
from refill.services import sessions
from refill.webctx import Service

router = APIRouter(prefix="/portal", include_in_schema=False)


def render_login(
    request: Request,
    *,
    status: int = 200,
    error: str | None = None,
    email: str = "",
    next_page: str | None = None,
    notice: str | None = None,
) -> HTMLResponse:
    token = public_form_token(request)
    context = {
        "csrf_token": token,
        "error": error,
        "email": email,
        "next": safe_next(next_page),
        "notice": NOTICES.get(notice or ""),
    }
    response = page(request, "login.html", context, status=status)
    with_form_cookie(response, request, token)
    return response


@router.get("/login")
def login_page(
    request: Request, next: str | None = None, notice: str | None = None
) -> HTMLResponse:
    return render_login(request, next_page=next, notice=notice)


@router.post("/login")
def login(
    request: Request,
    refill: Service,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str | None, Form()] = None,
    next: Annotated[str | None, Form()] = None,
) -> Response:
    if not public_form_ok(request, csrf_token):
        return render_login(
            request,
            status=403,
            error="The sign-in form expired. Please try again.",
            email=email,
            next_page=next,
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
        response = render_login(
            request, status=exc.status, error=message, email=email, next_page=next
        )
        if "retry_after" in exc.extra:
            response.headers["Retry-After"] = str(exc.extra["retry_after"])
        return response
    signed_in = RedirectResponse(safe_next(next), status_code=303)
    return set_session_cookie(signed_in, request, token)


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
