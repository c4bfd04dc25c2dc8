"""/portal/team/members: who can open the billing page, and switching among one's agencies."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from refill.errors import RefillError
from refill.portal.common import NOTICES, FormState, PortalRefused, back, page, plain
from refill.portal.security import SESSION_COOKIE, Signed, allowed_to_change, csrf_ok
from refill.roles import MemberRole
from refill.services import invitations, members, sessions
from refill.services.sessions import PortalSession
from refill.webctx import Service

router = APIRouter(prefix="/portal", include_in_schema=False)
PAGE = "/portal/team/members"
MEMBER_NOTICES = {**NOTICES, "role_changed": "Role changed."}


def render_members(
    request: Request,
    refill: Any,
    session: PortalSession,
    *,
    status: int = 200,
    form: FormState | None = None,
    notice: str | None = None,
) -> HTMLResponse:
    people = members.list_members(refill.db, agency_id=session.agency_id)
    owners = sum(1 for m in people if m.role is MemberRole.OWNER)
    context = {
        "session": session,
        "members": people,
        # The roles each member may be given from this session (none: no form on the row).
        "choices": {
            m.user_id: members.assignable_roles(
                m, by=session.role, by_user_id=session.user_id, owners=owners
            )
            for m in people
        },
        "form": form or FormState(),
        "notice": MEMBER_NOTICES.get(notice or ""),
        "roles": tuple(MemberRole),
        "invitations": invitations.pending_invitations(refill.db, agency_id=session.agency_id)
        if session.can_change
        else [],
        "agencies": members.agencies_of(refill.db, user_id=session.user_id),
    }
    return page(request, "members.html", context, status=status)


@router.get("/team/members")
def members_page(
    request: Request, session: Signed, refill: Service, notice: str | None = None
) -> HTMLResponse:
    return render_members(request, refill, session, notice=notice)


@router.post("/team/members")
def invite_member(
    request: Request,
    session: Signed,
    refill: Service,
    email: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "member",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    """Send an invitation: the same answer whether the address has an account or not."""
    allowed_to_change(session, csrf_token)
    form = FormState({"email": email, "role": role})
    try:
        invitations.invite(
            refill.db,
            agency_id=session.agency_id,
            email=email,
            role=role,
            by=session.role,
            inviter=session.email,
            actor=session.actor,
        )
    except RefillError as exc:
        form.errors[str(exc.extra.get("field") or "email")] = exc.message
        return render_members(request, refill, session, status=exc.status, form=form)
    return back(PAGE, "invitation_sent")


@router.post("/team/invitations/{invitation_id}/revoke")
def revoke_invitation(
    request: Request,
    session: Signed,
    refill: Service,
    invitation_id: str,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    allowed_to_change(session, csrf_token)
    try:
        invitations.revoke(
            refill.db,
            agency_id=session.agency_id,
            invitation_id=invitation_id,
            by=session.role,
            actor=session.actor,
        )
    except RefillError as exc:
        form = FormState(message=f"Not withdrawn: {exc.message}.")
        return render_members(request, refill, session, status=exc.status, form=form)
    return back(PAGE, "invitation_revoked")


@router.post("/team/members/{user_id}/remove")
def remove_member(
    request: Request,
    session: Signed,
    refill: Service,
    user_id: str,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    allowed_to_change(session, csrf_token)
    try:
        members.remove_member(
            refill.db,
            agency_id=session.agency_id,
            user_id=user_id,
            by=session.role,
            actor=session.actor,
        )
    except RefillError as exc:
        form = FormState(message=f"Not removed: {exc.message}.")
        return render_members(request, refill, session, status=exc.status, form=form)
    return back(PAGE, "member_removed")


@router.post("/team/members/{user_id}/role")
def change_role(
    request: Request,
    session: Signed,
    refill: Service,
    user_id: str,
    role: Annotated[str, Form()] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    allowed_to_change(session, csrf_token)
    try:
        members.change_role(
            refill.db,
            agency_id=session.agency_id,
            user_id=user_id,
            role=role,
            by_user_id=session.user_id,
            actor=session.actor,
        )
    except RefillError as exc:
        form = FormState(message=f"Role not changed. {plain(exc.message, '')}.")
        return render_members(request, refill, session, status=exc.status, form=form)
    return back(PAGE, "role_changed")


@router.post("/team/switch")
def switch_agency(
    request: Request,
    session: Signed,
    refill: Service,
    agency_id: Annotated[str, Form()] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    """Open another agency of the same user (members too: it changes no agency)."""
    if not csrf_ok(session.csrf_token, csrf_token):
        raise PortalRefused(403, "This form has expired. Reload the page and try again.")
    try:
        token = request.cookies.get(SESSION_COOKIE, "")
        sessions.switch_agency(refill.db, token, agency_id=agency_id)
    except RefillError:
        raise PortalRefused(404, "You are not a member of that agency.") from None
    return RedirectResponse("/portal/team/billing", status_code=303)
