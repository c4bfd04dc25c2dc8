"""/portal/team/audit: the audit log, who changed what and when, before and after.

Owners and admins read it; members are refused, as the API refuses every key but the
owner's (``GET /v1/audit-log``). The entries come from the service that API uses, newest
first, a page at a time; times are in the agency's time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from refill import services
from refill.audit import SYSTEM, AuditEntry
from refill.bootstrap import Refill
from refill.errors import ValidationFailed
from refill.portal.common import PortalRefused, page
from refill.portal.security import Signed
from refill.portal.views import local_time
from refill.services import members
from refill.webctx import Service

router = APIRouter(prefix="/portal", include_in_schema=False)
PAGE = "/portal/team/audit"
PAGE_SIZE = 50

# Each action in the words of the page; an action not listed here reads as its name.
ACTION_WORDS = {
    "account.password_changed": "Changed their own password",
    "agency.updated": "Changed the agency's details",
    "auto_reload.suspended": "Suspended Auto Reload",
    "auto_reload.updated": "Changed the Auto Reload settings",
    "key.created": "Created an API key",
    "key.revoked": "Revoked an API key",
    "key.rolled": "Rolled an API key",
    "member.added": "Added a member",
    "member.invitation_revoked": "Withdrew an invitation",
    "member.invited": "Invited a member",
    "member.removed": "Removed a member",
    "member.role_changed": "Changed a member's role",
    "payment_method.added": "Added a card",
    "payment_method.removed": "Removed a card",
    "payment_method.updated": "Card details updated by the bank",
    "reload.late_success": "Credited a payment that arrived late",
    "reload.settled_by_operator": "An operator settled a reload",
    "wallet.adjusted": "Adjusted the balance",
    "wallet.alerts_changed": "Changed the low-balance alert",
    "webhook_endpoint.created": "Added a webhook endpoint",
    "webhook_endpoint.deleted": "Deleted a webhook endpoint",
    "webhook_endpoint.rotated": "Rolled a webhook signing secret",
    "webhook_endpoint.updated": "Changed a webhook endpoint",
}
ACTORS = {SYSTEM: "system", "cli": "an operator (command line)"}


@dataclass(frozen=True, slots=True)
class AuditRow:
    when: str
    who: str
    what: str
    changes: list[str]


def plain_value(value: Any) -> str:
    """A value of an audit entry's details, as a person reads it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(plain_value(v) for v in value) or "none"
    return str(value)


def describe_changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
    """Each field that changed as "threshold 20.00 → 30.00"; a field on one side only (an
    entry that adds or removes something) as "role admin"."""
    before, after = before or {}, after or {}
    lines = []
    for field in sorted(before.keys() | after.keys()):
        label = field.replace("_", " ")
        if field in before and field in after:
            if before[field] != after[field]:
                lines.append(f"{label} {plain_value(before[field])} → {plain_value(after[field])}")
        else:
            value = after[field] if field in after else before[field]
            lines.append(f"{label} {plain_value(value)}")
    return lines


def actor_name(actor: str, names: dict[str, str]) -> str:
    """A user by e-mail, an API key by id (and name), the engine as "system"."""
    kind, _, ident = actor.partition(":")
    if kind == "user" and ident:
        return names.get(ident, f"user {ident}")
    if kind == "key" and ident:
        name = names.get(ident)
        return f"API key {ident}" + (f" ({name})" if name else "")
    return ACTORS.get(actor, actor)


def action_words(entry: AuditEntry, names: dict[str, str]) -> str:
    words = ACTION_WORDS.get(entry.action, entry.action.replace("_", " ").replace(".", ": "))
    named_in_details = "email" in (entry.before or {}) or "email" in (entry.after or {})
    target = names.get(entry.target_id or "")
    if target and entry.target_id != entry.actor.partition(":")[2] and not named_in_details:
        return f"{words}: {target}"
    return words


def audit_rows(
    refill: Refill, agency_id: str, zone: ZoneInfo, entries: list[AuditEntry]
) -> list[AuditRow]:
    ids = {e.actor.partition(":")[2] for e in entries} | {e.target_id or "" for e in entries}
    names = members.names_in_audit_log(refill.db, agency_id=agency_id, ids=ids)
    return [
        AuditRow(
            when=local_time(e.created_at, zone),
            who=actor_name(e.actor, names),
            what=action_words(e, names),
            changes=describe_changes(e.before, e.after),
        )
        for e in entries
    ]


def _address(**query: str | None) -> str:
    given = {name: value for name, value in query.items() if value}
    return PAGE + ("?" + urlencode(given) if given else "")


@router.get("/team/audit")
def audit_page(
    request: Request,
    session: Signed,
    refill: Service,
    cursor: str | None = None,
    action: str | None = None,
) -> HTMLResponse:
    if not session.can_change:
        raise PortalRefused(
            403,
            "The audit log is open to the owners and admins of this agency; "
            "your role is member. Ask an owner if you need to see it.",
        )
    action = action or None
    if action is not None and action not in ACTION_WORDS:
        raise PortalRefused(422, "There is no such kind of entry: choose one from the list.")
    try:
        entries = services.list_audit_log(
            refill.db, agency_id=session.agency_id, limit=PAGE_SIZE, cursor=cursor, action=action
        )
    except ValidationFailed:  # a cursor that was tampered with
        raise PortalRefused(
            422, "That page of the audit log does not exist. Open the newest entries."
        ) from None
    zone = ZoneInfo(services.get_agency(refill.db, session.agency_id).timezone)
    context = {
        "session": session,
        "agencies": members.agencies_of(refill.db, user_id=session.user_id),
        "zone": zone.key,
        "rows": audit_rows(refill, session.agency_id, zone, entries.data),
        "actions": sorted(ACTION_WORDS.items(), key=lambda item: item[1]),
        "action": action,
        "newest": _address(action=action) if cursor else None,
        "older": _address(cursor=entries.next_cursor, action=action)
        if entries.next_cursor
        else None,
    }
    return page(request, "audit.html", context)
