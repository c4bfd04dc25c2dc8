"""/portal/account: the signed-in person's own account (password).

Any role may change their own password. The current password is checked inside the
sign-in throttle, so this form is no way round the limit on guesses; the other sessions of
the person end, and the one that changed the password stays signed in.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse

from refill.errors import RefillError
from refill.portal.common import FormState, PortalRefused, back, page, plain
from refill.portal.security import SESSION_COOKIE, Signed, client_ip, csrf_ok
from refill.services import members, passwords, sessions
from refill.services.sessions import PortalSession
from refill.webctx import Service

router = APIRouter(prefix="/portal", include_in_schema=False)
PAGE = "/portal/account"

# Distinct from the reset page's "password_changed": here this session stays signed in.
ACCOUNT_NOTICES = {
    "own_password_changed": "Your password was changed. Every other session of your account "
    "was signed out; this one stays signed in.",
}
FIELDS = ("current_password", "new_password", "repeat_password")


def render_account(
    request: Request,
    refill: Any,
    session: PortalSession,
    *,
    status: int = 200,
    form: FormState | None = None,
    notice: str | None = None,
) -> HTMLResponse:
    context = {
        "session": session,
        "form": form or FormState(),
        "notice": ACCOUNT_NOTICES.get(notice or ""),
        "min_password": passwords.MIN_PASSWORD_LENGTH,
        "agencies": members.agencies_of(refill.db, user_id=session.user_id),
    }
    return page(request, "account.html", context, status=status)


@router.get("/account")
def account_page(
    request: Request, session: Signed, refill: Service, notice: str | None = None
) -> HTMLResponse:
    return render_account(request, refill, session, notice=notice)


@router.post("/account/password")
def change_password(
    request: Request,
    session: Signed,
    refill: Service,
    current_password: Annotated[str, Form()] = "",
    new_password: Annotated[str, Form()] = "",
    repeat_password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    """Members too: a password is the person's own, not the agency's."""
    if not csrf_ok(session.csrf_token, csrf_token):
        raise PortalRefused(
            403,
            "This form has expired or did not come from this page. Reload the page and try again.",
        )
    try:
        sessions.change_own_password(
            refill.db,
            session,
            token=request.cookies.get(SESSION_COOKIE, ""),
            current=current_password,
            new=new_password,
            repeat=repeat_password,
            client_ip=client_ip(request),
        )
    except RefillError as exc:
        # Passwords are never sent back into the form.
        form = FormState()
        if exc.extra.get("field") in FIELDS:
            form.refused(exc, "current_password")
        else:
            form.message = plain(exc.message, "") + "."
        response = render_account(request, refill, session, status=exc.status, form=form)
        if "retry_after" in exc.extra:
            response.headers["Retry-After"] = str(exc.extra["retry_after"])
        return response
    return back(PAGE, "own_password_changed")
