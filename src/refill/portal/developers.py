"""/portal/team/developers: the agency's API keys and subteams.

Owners and admins create a subteam's key, roll and revoke keys, and create, rename,
archive and restore subteams; members see the lists only. A new key's secret is shown
once, in the answer to the form that made it (a redirect would have to carry it in the
URL), and never again: the lists have no secret to show. Only an owner rolls or revokes
an owner key, since rolling one hands over a new owner secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse

from refill import services
from refill.errors import RefillError, ValidationFailed
from refill.portal.common import FormState, PortalRefused, back, page
from refill.portal.security import Signed, allowed_to_change
from refill.portal.views import local_time
from refill.roles import KeyRole, MemberRole
from refill.services import keys as key_service
from refill.services import members
from refill.services import subteams as subteam_service
from refill.services.sessions import PortalSession
from refill.webctx import Service

router = APIRouter(prefix="/portal", include_in_schema=False)
PAGE = "/portal/team/developers"

NOTICES = {
    "key_revoked": "Key revoked: requests with it are refused from now on.",
    "subteam_created": "Subteam created. Give it a key below to record its usage.",
    "subteam_renamed": "Subteam renamed.",
    "subteam_archived": "Subteam archived: its keys were revoked, and its usage and calls "
    "are refused until it is restored.",
    "subteam_restored": "Subteam restored: its usage and calls are accepted again. Its old "
    "keys stay revoked; create a new key for it.",
}

# How long a rolled key's old secret keeps working, in seconds, as the form offers it.
OVERLAPS = {"0": "now", "3600": "in 1 hour", "86400": "in 24 hours", "604800": "in 7 days"}

# Refusals in the page's words, by their stable code.
REFUSALS = {
    "last_owner_key": "This is the agency's last owner key, so it was not revoked: programs "
    "would lose all access. Roll it instead to replace its secret.",
    "key_inactive": "That key is already revoked or expired.",
    "subteam_archived": "That subteam is archived: restore it before giving it a key.",
}


@dataclass(frozen=True, slots=True)
class Issued:
    """A secret just made, for this one answer."""

    key_id: str
    secret: str
    subteam: str | None
    previous: str | None = None  # a roll: what becomes of the previous secret, in words


@dataclass
class Forms:
    """Each form on the page, as typed and with what was wrong (rename: one per subteam)."""

    create_key: FormState
    create_subteam: FormState
    rename: dict[str, FormState]
    message: str | None = None


def _empty_forms() -> Forms:
    return Forms(FormState(), FormState(), {})


def _key_rows(
    keys: list[services.ApiKey], names: dict[str, str], now: datetime, session: PortalSession
) -> list[dict[str, Any]]:
    """Each key with its subteam's name, whether it works, and whether this person may
    roll or revoke it."""
    may_change_owner_keys = session.role is MemberRole.OWNER
    return [
        {
            "key": key,
            "subteam": names.get(key.subteam_id, key.subteam_id) if key.subteam_id else None,
            "active": key.active_at(now),
            "changeable": session.can_change
            and key.active_at(now)
            and (key.role is KeyRole.SUBTEAM or may_change_owner_keys),
        }
        for key in keys
    ]


def render(
    request: Request,
    refill: Any,
    session: PortalSession,
    *,
    status: int = 200,
    forms: Forms | None = None,
    notice: str | None = None,
    issued: Issued | None = None,
    confirm_revoke: str | None = None,
    keys_cursor: str | None = None,
) -> HTMLResponse:
    db = refill.db
    zone = ZoneInfo(services.get_agency(db, session.agency_id).timezone)
    try:
        keys = services.list_keys(
            db, agency_id=session.agency_id, limit=services.MAX_PAGE, cursor=keys_cursor
        )
    except ValidationFailed as exc:  # a cursor that was tampered with
        raise PortalRefused(400, exc.message) from None
    subteams = services.list_subteams(
        db, agency_id=session.agency_id, limit=services.MAX_PAGE, include_archived=True
    )
    names = {t.id: t.name for t in subteams.data}
    rows = _key_rows(keys.data, names, db.clock.now(), session)
    context = {
        "session": session,
        "agencies": members.agencies_of(db, user_id=session.user_id),
        "zone": zone.key,
        "when": lambda moment: local_time(moment, zone),
        "keys": rows,
        "keys_next": keys.next_cursor,
        "subteams": subteams.data,
        "subteams_more": subteams.next_cursor is not None,
        "active_subteams": [t for t in subteams.data if not t.archived],
        "forms": forms or _empty_forms(),
        "notice": NOTICES.get(notice or ""),
        "issued": issued,
        "overlaps": OVERLAPS,
        "confirming": next(
            (r for r in rows if r["key"].id == confirm_revoke and r["changeable"]), None
        ),
    }
    return page(request, "developers.html", context, status=status)


def _in_words(exc: RefillError) -> str:
    return REFUSALS.get(exc.code, exc.message[:1].upper() + exc.message[1:])


@router.get("/team/developers")
def developers_page(
    request: Request,
    session: Signed,
    refill: Service,
    notice: str | None = None,
    revoke: str | None = None,
    keys_cursor: str | None = None,
) -> HTMLResponse:
    """The lists; ``?revoke=<key id>`` asks to confirm that key's revocation."""
    return render(
        request,
        refill,
        session,
        notice=notice,
        confirm_revoke=revoke,
        keys_cursor=keys_cursor,
    )


# --- keys ----------------------------------------------------------------------------------


@router.post("/team/developers/keys")
def create_key(
    request: Request,
    session: Signed,
    refill: Service,
    subteam_id: Annotated[str, Form(max_length=40)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    """A new key for one subteam, its secret shown in this answer only."""
    allowed_to_change(session, csrf_token)
    forms = _empty_forms()
    forms.create_key.values = {"subteam_id": subteam_id, "name": name}
    try:
        if not subteam_id:
            raise ValidationFailed("choose the subteam the key acts for", field="subteam_id")
        issued = services.create_subteam_key(
            refill.db,
            agency_id=session.agency_id,
            subteam_id=subteam_id,
            name=name,
            actor=session.actor,
        )
    except RefillError as exc:
        field = "subteam_id" if exc.extra.get("field") != "name" else "name"
        forms.create_key.errors[field] = _in_words(exc)
        return render(request, refill, session, status=exc.status, forms=forms)
    subteam = subteam_service.read_subteam(
        refill.db, agency_id=session.agency_id, subteam_id=subteam_id
    )
    shown = Issued(issued.id, issued.secret, subteam.name)
    return render(request, refill, session, status=201, issued=shown)


def _changeable_key(refill: Any, session: PortalSession, key_id: str) -> services.ApiKey:
    """The agency's key, if this person may change it (owner keys: owners only)."""
    try:
        key = key_service.read_key(refill.db, agency_id=session.agency_id, key_id=key_id)
    except RefillError:
        raise PortalRefused(404, "There is no such key in this agency.") from None
    if key.role is KeyRole.OWNER and session.role is not MemberRole.OWNER:
        raise PortalRefused(403, "Only an owner can roll or revoke an owner key.")
    return key


@router.post("/team/developers/keys/{key_id}/revoke")
def revoke_key(
    request: Request,
    session: Signed,
    refill: Service,
    key_id: str,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    allowed_to_change(session, csrf_token)
    _changeable_key(refill, session, key_id)
    try:
        services.revoke_key(
            refill.db, agency_id=session.agency_id, key_id=key_id, actor=session.actor
        )
    except RefillError as exc:
        forms = _empty_forms()
        forms.message = _in_words(exc)
        return render(request, refill, session, status=exc.status, forms=forms)
    return back(PAGE, "key_revoked")


@router.post("/team/developers/keys/{key_id}/roll")
def roll_key(
    request: Request,
    session: Signed,
    refill: Service,
    key_id: str,
    overlap: Annotated[str, Form(max_length=10)] = "0",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    """A new secret for the key (shown in this answer only); the old one works on for
    the overlap chosen, so programs can switch without an outage."""
    allowed_to_change(session, csrf_token)
    key = _changeable_key(refill, session, key_id)
    forms = _empty_forms()
    try:
        if overlap not in OVERLAPS:
            raise ValidationFailed("choose when the old secret stops working")
        issued, old = services.roll_key(
            refill.db,
            agency_id=session.agency_id,
            key_id=key_id,
            expires_in=timedelta(seconds=int(overlap)),
            actor=session.actor,
        )
    except RefillError as exc:
        forms.message = f"The key was not rolled: {_in_words(exc)}"
        return render(request, refill, session, status=exc.status, forms=forms)
    zone = ZoneInfo(services.get_agency(refill.db, session.agency_id).timezone)
    subteam = None
    if key.subteam_id is not None:
        subteam = subteam_service.read_subteam(
            refill.db, agency_id=session.agency_id, subteam_id=key.subteam_id
        ).name
    previous = "The previous secret stopped working now."
    if overlap != "0" and old.expires_at is not None:
        until = local_time(old.expires_at, zone)
        previous = f"The previous secret keeps working until {until} ({zone.key})."
    shown = Issued(issued.id, issued.secret, subteam, previous=previous)
    return render(request, refill, session, status=201, issued=shown)


# --- subteams ------------------------------------------------------------------------------


@router.post("/team/developers/subteams")
def create_subteam(
    request: Request,
    session: Signed,
    refill: Service,
    name: Annotated[str, Form(max_length=400)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    allowed_to_change(session, csrf_token)
    try:
        services.create_subteam(
            refill.db, agency_id=session.agency_id, name=name, actor=session.actor
        )
    except RefillError as exc:
        forms = _empty_forms()
        forms.create_subteam.values = {"name": name}
        forms.create_subteam.errors["name"] = _in_words(exc)
        return render(request, refill, session, status=exc.status, forms=forms)
    return back(PAGE, "subteam_created")


@router.post("/team/developers/subteams/{subteam_id}/{action}")
def change_subteam(
    request: Request,
    session: Signed,
    refill: Service,
    subteam_id: str,
    action: str,
    name: Annotated[str, Form(max_length=400)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    """Rename (the name typed), archive or restore one subteam."""
    allowed_to_change(session, csrf_token)
    changes = {
        "rename": (subteam_service.SubteamChange(name=name), "subteam_renamed"),
        "archive": (subteam_service.SubteamChange(archived=True), "subteam_archived"),
        "restore": (subteam_service.SubteamChange(archived=False), "subteam_restored"),
    }
    if action not in changes:
        raise PortalRefused(404, "There is no such action.")
    change, notice = changes[action]
    try:
        subteam_service.update_subteam(
            refill.db,
            agency_id=session.agency_id,
            subteam_id=subteam_id,
            change=change,
            actor=session.actor,
        )
    except RefillError as exc:
        if exc.status == 404:
            raise PortalRefused(404, "There is no such subteam in this agency.") from None
        forms = _empty_forms()
        if action == "rename":
            forms.rename[subteam_id] = FormState({"name": name}, {"name": _in_words(exc)})
        else:
            forms.message = _in_words(exc)
        return render(request, refill, session, status=exc.status, forms=forms)
    return back(PAGE, notice)
