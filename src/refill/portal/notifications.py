"""/portal/team/notifications: who is told about billing and how.

Who receives billing e-mail (owners and admins, and the agency's billing addresses), each
person's own receipt and low-balance choices, the low-balance alert, what receipts print,
and the webhook endpoints (add, enable or disable, test, rotate the secret, see and retry
recent deliveries). A new secret is shown once, in the answer to the form that made it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse

from refill.errors import RefillError
from refill.money import format_amount, parse_amount
from refill.notify.events import EventType
from refill.portal.common import NOTICES, FormState, PortalRefused, back, page
from refill.portal.security import Signed, allowed_to_change, csrf_ok
from refill.reload import settings as reload_settings
from refill.services import agencies, members, notifications
from refill.services.sessions import PortalSession
from refill.webctx import Service

router = APIRouter(prefix="/portal", include_in_schema=False)
PAGE = "/portal/team/notifications"
EVENT_TYPES = [t.value for t in EventType if t is not EventType.PING]


def render(
    request: Request,
    refill: Any,
    session: PortalSession,
    *,
    status: int = 200,
    form: FormState | None = None,
    notice: str | None = None,
    secret: tuple[str, str] | None = None,
) -> HTMLResponse:
    agency = agencies.get_agency(refill.db, session.agency_id)
    deliveries: dict[str, list[notifications.RecentDelivery]] = defaultdict(list)
    for recent in notifications.recent_deliveries(refill.db, agency_id=session.agency_id):
        if len(deliveries[recent.delivery.endpoint_id]) < 5:
            deliveries[recent.delivery.endpoint_id].append(recent)
    auto = refill.db.read(lambda tx: reload_settings.get_settings(tx, session.agency_id))
    context = {
        "session": session,
        "agency": agency,
        "recipients": members.billing_recipients(refill.db, agency_id=session.agency_id),
        "endpoints": notifications.list_endpoints(refill.db, agency_id=session.agency_id),
        "deliveries": deliveries,
        "event_types": EVENT_TYPES,
        "threshold": auto.threshold,
        "auto_enabled": auto.enabled,
        "form": form or FormState(),
        "notice": NOTICES.get(notice or ""),
        "secret": secret,
        "money": lambda micros: format_amount(micros, agency.currency),
        "agencies": members.agencies_of(refill.db, user_id=session.user_id),
    }
    return page(request, "notifications.html", context, status=status)


@router.get("/team/notifications")
def notifications_page(
    request: Request, session: Signed, refill: Service, notice: str | None = None
) -> HTMLResponse:
    return render(request, refill, session, notice=notice)


def _refused(
    request: Request, refill: Any, session: PortalSession, exc: RefillError, field: str
) -> HTMLResponse:
    form = FormState()
    form.refused(exc, field)
    return render(request, refill, session, status=exc.status, form=form)


# --- people --------------------------------------------------------------------------------


@router.post("/team/notifications/mine")
def my_choices(
    request: Request,
    session: Signed,
    refill: Service,
    receipts: Annotated[str | None, Form()] = None,
    low_balance: Annotated[str | None, Form()] = None,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    """One's own choices: any owner or admin, for themself only."""
    if not csrf_ok(session.csrf_token, csrf_token):
        raise PortalRefused(403, "This form has expired. Reload the page and try again.")
    members.set_email_choices(
        refill.db,
        agency_id=session.agency_id,
        user_id=session.user_id,
        receipts=receipts is not None,
        low_balance=low_balance is not None,
    )
    return back(PAGE, "choices_saved")


@router.post("/team/notifications/recipients")
def billing_emails(
    request: Request,
    session: Signed,
    refill: Service,
    billing_emails: Annotated[str, Form()] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    allowed_to_change(session, csrf_token)
    addresses = [a for a in billing_emails.replace(",", "\n").split() if a]
    try:
        agencies.update_agency(
            refill.db,
            agency_id=session.agency_id,
            change=agencies.AgencyChange(billing_emails=addresses),
            actor=session.actor,
        )
    except RefillError as exc:
        return _refused(request, refill, session, exc, "billing_emails")
    return back(PAGE, "recipients_saved")


@router.post("/team/notifications/alert")
def low_balance_alert(
    request: Request,
    session: Signed,
    refill: Service,
    low_balance_alert: Annotated[str, Form()] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    allowed_to_change(session, csrf_token)
    try:
        text = low_balance_alert.strip()
        alert = parse_amount(text, field="low_balance_alert") if text else None
        agencies.set_low_balance_alert(
            refill.db, agency_id=session.agency_id, alert=alert, actor=session.actor
        )
    except RefillError as exc:
        return _refused(request, refill, session, exc, "low_balance_alert")
    return back(PAGE, "alert_saved")


@router.post("/team/notifications/details")
def receipt_details(
    request: Request,
    session: Signed,
    refill: Service,
    billing_address: Annotated[str, Form(max_length=500)] = "",
    tax_id: Annotated[str, Form(max_length=64)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    allowed_to_change(session, csrf_token)
    try:
        agencies.update_agency(
            refill.db,
            agency_id=session.agency_id,
            change=agencies.AgencyChange(billing_address=billing_address, tax_id=tax_id),
            actor=session.actor,
        )
    except RefillError as exc:
        return _refused(request, refill, session, exc, "billing_address")
    return back(PAGE, "details_saved")


# --- webhook endpoints ---------------------------------------------------------------------


@router.post("/team/webhooks")
def add_endpoint(
    request: Request,
    session: Signed,
    refill: Service,
    url: Annotated[str, Form(max_length=2000)] = "",
    description: Annotated[str, Form(max_length=500)] = "",
    events: Annotated[list[str] | None, Form()] = None,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    allowed_to_change(session, csrf_token)
    chosen = events or []
    try:
        endpoint, secret = notifications.create_endpoint(
            refill.db,
            refill.url_rules,
            refill.keyring,
            agency_id=session.agency_id,
            url=url.strip(),
            event_types=["*"] if "*" in chosen else chosen,
            description=description.strip() or None,
            actor=session.actor,
        )
    except RefillError as exc:
        form = FormState({"url": url, "description": description, "events": ",".join(chosen)})
        form.refused(exc, "url")
        return render(request, refill, session, status=exc.status, form=form)
    # Shown in this answer only: a redirect would have to carry it in the URL.
    return render(request, refill, session, status=201, secret=(endpoint.id, secret))


@router.post("/team/webhooks/{endpoint_id}/{action}")
def endpoint_action(
    request: Request,
    session: Signed,
    refill: Service,
    endpoint_id: str,
    action: str,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    allowed_to_change(session, csrf_token)
    common = {"agency_id": session.agency_id, "endpoint_id": endpoint_id}
    try:
        if action in ("enable", "disable"):
            notifications.update_endpoint(
                refill.db,
                refill.url_rules,
                agency_id=session.agency_id,
                endpoint_id=endpoint_id,
                enabled=action == "enable",
                actor=session.actor,
            )
            return back(PAGE, "endpoint_updated")
        if action == "test":
            notifications.send_test(refill.db, **common)
            return back(PAGE, "test_sent")
        if action == "rotate":
            endpoint, secret = notifications.rotate_secret(
                refill.db, refill.keyring, actor=session.actor, **common
            )
            return render(request, refill, session, secret=(endpoint.id, secret))
        if action == "delete":
            notifications.delete_endpoint(refill.db, actor=session.actor, **common)
            return back(PAGE, "endpoint_deleted")
    except RefillError as exc:
        form = FormState(message=f"Not done: {exc.message}.")
        return render(request, refill, session, status=exc.status, form=form)
    raise PortalRefused(404, "There is no such action.")


@router.post("/team/webhooks/{endpoint_id}/deliveries/{delivery_id}/retry")
def retry_delivery(
    request: Request,
    session: Signed,
    refill: Service,
    endpoint_id: str,
    delivery_id: str,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    allowed_to_change(session, csrf_token)
    try:
        notifications.retry_delivery(
            refill.db,
            agency_id=session.agency_id,
            endpoint_id=endpoint_id,
            delivery_id=delivery_id,
        )
    except RefillError as exc:
        form = FormState(message=f"Not retried: {exc.message}.")
        return render(request, refill, session, status=exc.status, form=form)
    return back(PAGE, "delivery_retried")
