"""The pages a link in an e-mail opens: accepting an invitation, and a forgotten password
(asking for a reset link, setting the new password).

Their forms come before sign-in, so they carry the double-submit CSRF cookie of the sign-in
form. The link's token travels in the query string once and in the form after; a wrong or
used link says so in the same words whatever was wrong with it.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from refill.errors import NotFound, RefillError
from refill.portal.common import page
from refill.portal.security import (
    SESSION_COOKIE,
    client_ip,
    public_form_ok,
    public_form_token,
    set_session_cookie,
    with_form_cookie,
)
from refill.services import invitations, passwords, resets, sessions
from refill.webctx import Service

router = APIRouter(prefix="/portal", include_in_schema=False)
EXPIRED_FORM = "This form expired. Open the link from the e-mail again."


def _render(
    request: Request, name: str, context: dict[str, Any], *, status: int = 200
) -> HTMLResponse:
    token = public_form_token(request)
    context = {**context, "csrf_token": token, "min_password": passwords.MIN_PASSWORD_LENGTH}
    return with_form_cookie(page(request, name, context, status=status), request, token)


# --- invitations ---------------------------------------------------------------------------


def _invitation_page(
    request: Request,
    refill: Any,
    invitation_id: str,
    token: str,
    *,
    status: int = 200,
    error: str | None = None,
) -> HTMLResponse:
    try:
        view = invitations.view(refill.db, refill.keyring, invitation_id=invitation_id, token=token)
    except NotFound as exc:
        return _render(request, "invitation.html", {"gone": exc.message}, status=404)
    session = sessions.session_for(refill.db, request.cookies.get(SESSION_COOKIE))
    here = f"/portal/invitations/{invitation_id}?token={quote(token)}"
    context = {
        "view": view,
        "token": token,
        "signed_in_as": session.email if session else None,
        "sign_in_url": f"/portal/login?next={quote(here, safe='')}",
        "error": error,
    }
    return _render(request, "invitation.html", context, status=status)


@router.get("/invitations/{invitation_id}")
def invitation_page(
    request: Request, refill: Service, invitation_id: str, token: str = ""
) -> HTMLResponse:
    return _invitation_page(request, refill, invitation_id, token)


@router.post("/invitations/{invitation_id}")
def accept_invitation(
    request: Request,
    refill: Service,
    invitation_id: str,
    token: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    """Signed in as the invited address: join. Otherwise: a new account with this
    password, signed in."""
    if not public_form_ok(request, csrf_token):
        return _invitation_page(
            request, refill, invitation_id, token, status=403, error=EXPIRED_FORM
        )
    session = sessions.session_for(refill.db, request.cookies.get(SESSION_COOKIE))
    try:
        if session is not None:
            agency_id = invitations.accept_as_user(
                refill.db,
                refill.keyring,
                invitation_id=invitation_id,
                token=token,
                user_id=session.user_id,
            )
            sessions.switch_agency(
                refill.db, request.cookies.get(SESSION_COOKIE, ""), agency_id=agency_id
            )
            return RedirectResponse("/portal/team/billing?notice=joined", status_code=303)
        new_session = invitations.accept_as_new_user(
            refill.db, refill.keyring, invitation_id=invitation_id, token=token, password=password
        )
    except RefillError as exc:
        return _invitation_page(
            request, refill, invitation_id, token, status=exc.status, error=exc.message
        )
    joined = RedirectResponse("/portal/team/billing?notice=joined", status_code=303)
    return set_session_cookie(joined, request, new_session)


# --- forgotten password --------------------------------------------------------------------


@router.get("/forgot")
def forgot_page(request: Request) -> HTMLResponse:
    return _render(request, "forgot.html", {})


@router.post("/forgot")
def forgot(
    request: Request,
    refill: Service,
    email: Annotated[str, Form()] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    if not public_form_ok(request, csrf_token):
        return _render(request, "forgot.html", {"error": EXPIRED_FORM, "email": email}, status=403)
    try:
        resets.request_reset(refill.db, email=email, client_ip=client_ip(request))
    except RefillError as exc:
        response = _render(
            request, "forgot.html", {"error": exc.message, "email": email}, status=exc.status
        )
        if "retry_after" in exc.extra:
            response.headers["Retry-After"] = str(exc.extra["retry_after"])
        return response
    # The same answer whether the address has an account or not.
    return _render(request, "forgot.html", {"sent_to": email.strip()})


def _reset_page(
    request: Request,
    refill: Any,
    reset_id: str,
    token: str,
    *,
    status: int = 200,
    error: str | None = None,
) -> HTMLResponse:
    try:
        resets.check_link(refill.db, refill.keyring, reset_id=reset_id, token=token)
    except NotFound as exc:
        return _render(request, "reset.html", {"gone": exc.message}, status=404)
    context = {"reset_id": reset_id, "token": token, "error": error}
    return _render(request, "reset.html", context, status=status)


@router.get("/reset/{reset_id}")
def reset_page(request: Request, refill: Service, reset_id: str, token: str = "") -> HTMLResponse:
    return _reset_page(request, refill, reset_id, token)


@router.post("/reset/{reset_id}")
def reset(
    request: Request,
    refill: Service,
    reset_id: str,
    token: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    if not public_form_ok(request, csrf_token):
        return _reset_page(request, refill, reset_id, token, status=403, error=EXPIRED_FORM)
    try:
        resets.complete_reset(
            refill.db, refill.keyring, reset_id=reset_id, token=token, password=password
        )
    except RefillError as exc:
        return _reset_page(request, refill, reset_id, token, status=exc.status, error=exc.message)
    done = RedirectResponse("/portal/login?notice=password_changed", status_code=303)
    done.delete_cookie(SESSION_COOKIE, path="/")
    return done
