"""/portal/team/subteams: what each subteam spends from the shared wallet, and its rules.

The list shows every active subteam's status, its spend today and this month against its
limits, and the credits its live calls hold; owners and admins pause and resume a subteam
from it. A subteam's own page adds its spend limits (typed as the owner writes amounts,
"$50" or "1,000.50"; empty removes one), its usage per day or per hour, and its live
calls' holds. The list also sets the agency's minimum call balance: new calls, of every
subteam, are accepted while available credits are above it. Days and months are the
agency's, in its time zone. Every form works without JavaScript (POST, then 303 back with
a notice, or the page again with the errors next to their fields); ``subteams.js`` keeps
the list fresh and draws the usage chart.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from refill import services
from refill.bootstrap import Refill
from refill.errors import RefillError
from refill.money import display_amount, format_amount, parse_typed_amount
from refill.portal.common import FormState, PortalRefused, page
from refill.portal.security import Signed, allowed_to_change
from refill.portal.views import local_time
from refill.services import holds, members, subteam_usage
from refill.services import subteams as subteam_service
from refill.services.sessions import PortalSession
from refill.services.spend import Period
from refill.services.subteams import Subteam, SubteamChange
from refill.webctx import Service

router = APIRouter(prefix="/portal", include_in_schema=False)
PAGE = "/portal/team/subteams"

# The limits form's fields, by what the page calls them.
LIMITS = {"daily_spend_limit": "daily limit", "monthly_spend_limit": "monthly limit"}
FLOOR = "min_call_balance"
# The chart's ranges: the picker's key, the series' step, and what the page calls it.
RANGES = {"30d": ("day", "the last 30 days"), "24h": ("hour", "the last 24 hours")}
HOLDS_SHOWN = 50


# --- what the pages show -------------------------------------------------------------------


def gauge(spent: int, limit: int | None, held: int, currency: str) -> dict[str, Any]:
    """Spent in a day or month against its limit. Held credits count toward a limit, so
    the bar shows spent plus held; a limit is reached when they leave no room."""
    counted = spent + held
    percent = None if limit is None else min(100, round(counted * 100 / limit))
    return {
        "spent": display_amount(spent, currency),
        "limit": None if limit is None else display_amount(limit, currency),
        "percent": percent,
        "reached": limit is not None and counted >= limit,
    }


def row_of(team: Subteam, currency: str) -> dict[str, Any]:
    today = gauge(team.spent_today, team.daily_spend_limit, team.held, currency)
    month = gauge(team.spent_this_month, team.monthly_spend_limit, team.held, currency)
    reached = "daily" if today["reached"] else "monthly" if month["reached"] else None
    return {
        "team": team,
        "today": today,
        "month": month,
        "held": display_amount(team.held, currency),
        "reached": reached,
    }


def _limit_words(limit: int | None, name: str, per: str, currency: str) -> str:
    return f"no {name} limit" if limit is None else f"{display_amount(limit, currency)} {per}"


def _notice(notice: str | None, name: str | None, currency: str, team: Subteam | None) -> str:
    """The flash message of a pause, a resume or new limits, naming the subteam."""
    who = name or "The subteam"
    if notice == "paused":
        return f"{who} is paused: its new calls are refused. Calls already running still settle."
    if notice == "resumed":
        within = ", within its limits" if team is not None and team.limited else ""
        return f"{who} is resumed: its calls are accepted again{within}."
    if notice == "limits_saved" and team is not None:
        daily = _limit_words(team.daily_spend_limit, "daily", "a day", currency)
        monthly = _limit_words(team.monthly_spend_limit, "monthly", "a month", currency)
        return f"Spend limits of {who} saved: {daily}, {monthly}."
    return ""


def _base(refill: Refill, session: PortalSession) -> dict[str, Any]:
    db = refill.db
    agency = services.get_agency(db, session.agency_id)
    zone = ZoneInfo(agency.timezone)
    return {
        "session": session,
        "agencies": members.agencies_of(db, user_id=session.user_id),
        "zone": zone.key,
        "cur": agency.currency,
        "floor": agency.min_call_balance,
        "when": lambda moment: local_time(moment, zone),
    }


def render_list(
    request: Request,
    refill: Refill,
    session: PortalSession,
    *,
    notice: str | None = None,
    subteam_id: str | None = None,
    status: int = 200,
    form: FormState | None = None,
) -> HTMLResponse:
    context = _base(refill, session)
    context.update(_rows(refill, session, context["cur"]))
    rows = context["rows"]
    named = next((r["team"] for r in rows if r["team"].id == subteam_id), None)
    said = _notice(notice, named.name if named else None, context["cur"], named)
    if notice == "floor_saved":
        said = f"Minimum call balance saved: {_floor_words(context['floor'], context['cur'])}."
        wallet = services.get_wallet(refill.db, refill.policy, agency_id=session.agency_id)
        if not wallet.takes_calls:
            now = display_amount(wallet.available, context["cur"])
            said += f" {now} is available now, so new calls are refused."
    context.update(
        form=form or FormState(),
        notice=said,
        # The row the notice is about, marked (the page opens at the top, on the notice).
        changed=named.id if named and notice else None,
        view="list",
    )
    return page(request, "subteams.html", context, status=status)


def _rows(refill: Refill, session: PortalSession, currency: str) -> dict[str, Any]:
    """The list's rows (the first page of active subteams) and whether there are more."""
    listed = services.list_subteams(refill.db, agency_id=session.agency_id, limit=services.MAX_PAGE)
    return {
        "rows": [row_of(t, currency) for t in listed.data],
        "more": listed.next_cursor is not None,
    }


def _floor_words(floor: int, currency: str) -> str:
    if floor <= 0:
        return "new calls are accepted while any credit is available"
    return f"new calls are accepted while more than {display_amount(floor, currency)} is available"


def _read(refill: Refill, session: PortalSession, subteam_id: str) -> Subteam:
    try:
        return subteam_service.read_subteam(
            refill.db, agency_id=session.agency_id, subteam_id=subteam_id
        )
    except RefillError:
        raise PortalRefused(404, "There is no such subteam in this agency.") from None


def _series(refill: Refill, team: Subteam, zone: ZoneInfo, currency: str) -> dict[str, Any]:
    """Both ranges of the usage chart, as ``subteams.js`` draws them (labels in the
    agency's zone: the buckets are its hours and days)."""
    data: dict[str, Any] = {"currency": currency, "ranges": {}}
    for key, (step, words) in RANGES.items():
        series = subteam_usage.usage_series(
            refill.db,
            agency_id=team.agency_id,
            subteam_id=team.id,
            since=None,
            until=None,
            granularity=step,
        )
        points = []
        for point in series.points:
            at = point.start.astimezone(zone)
            if step == "day":
                label, title = f"{at:%b} {at.day}", f"{at:%a} {at:%b} {at.day}"
            else:
                label = f"{at:%H}:00"
                title = f"{at:%b} {at.day}, {at:%H}:00 to {at + timedelta(hours=1):%H}:00"
            points.append(
                {
                    "label": label,
                    "title": title,
                    "y": float(format_amount(point.spent, currency)),
                    "spent": display_amount(point.spent, currency),
                    "events": point.events,
                }
            )
        total = sum(p.spent for p in series.points)
        calls = sum(p.events for p in series.points)
        data["ranges"][key] = {
            "points": points,
            "summary": f"{display_amount(total, currency)} spent in {words}, "
            f"{calls} usage event{'' if calls == 1 else 's'}.",
        }
    return data


def _in(moment: datetime, now: datetime) -> str:
    """How long until ``moment``, in words: "in 1 h 5 min", "in 40 s"."""
    seconds = int((moment - now).total_seconds())
    if seconds <= 0:
        return "now"
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    if hours:
        return f"in {hours} h {minutes} min" if minutes else f"in {hours} h"
    return f"in {minutes} min" if minutes else f"in {seconds} s"


def render_detail(
    request: Request,
    refill: Refill,
    session: PortalSession,
    subteam_id: str,
    *,
    status: int = 200,
    form: FormState | None = None,
    notice: str | None = None,
) -> HTMLResponse:
    team = _read(refill, session, subteam_id)
    context = _base(refill, session)
    zone = ZoneInfo(context["zone"])
    db = refill.db
    now = db.clock.now()
    live = holds.list_holds(db, agency_id=session.agency_id, subteam_id=team.id, limit=HOLDS_SHOWN)
    period = Period.at(now, zone)
    chart = _series(refill, team, zone, context["cur"])
    shown = "24h" if now - team.created_at < timedelta(days=1) else "30d"
    context.update(
        view="detail",
        row=row_of(team, context["cur"]),
        team=team,
        form=form or FormState(),
        notice=_notice(notice, team.name, context["cur"], team),
        holds=[{"hold": h, "ends": _in(h.expires_at, now)} for h in live.data],
        holds_more=live.next_cursor is not None,
        day_ends=local_time(period.day_ends, zone),
        month_ends=local_time(period.month_ends, zone),
        # Inside <script type="application/json">: "</" must not close the element.
        chart_json=json.dumps(chart).replace("</", "<\\/"),
        # A subteam younger than a day shows its hours first, not 30 days of nothing.
        chart_range=shown,
        chart_summary=chart["ranges"][shown]["summary"],
    )
    return page(request, "subteams.html", context, status=status)


# --- the pages -----------------------------------------------------------------------------


@router.get("/team/subteams")
def subteams_page(
    request: Request,
    session: Signed,
    refill: Service,
    notice: str | None = None,
    subteam: str | None = None,
) -> HTMLResponse:
    return render_list(request, refill, session, notice=notice, subteam_id=subteam)


@router.get("/team/subteams/live")
def subteams_live(request: Request, session: Signed, refill: Service) -> HTMLResponse:
    """The list alone, for subteams.js to swap in every few seconds (before the subteam
    route, which would take "live" for an id): only what the list needs, not the page's
    agency switcher."""
    currency = services.get_agency(refill.db, session.agency_id).currency
    return page(
        request, "_subteams_list.html", {"session": session, **_rows(refill, session, currency)}
    )


@router.get("/team/subteams/{subteam_id}")
def subteam_page(
    request: Request, session: Signed, refill: Service, subteam_id: str, notice: str | None = None
) -> HTMLResponse:
    return render_detail(request, refill, session, subteam_id, notice=notice)


def _changeable(refill: Refill, session: PortalSession, subteam_id: str) -> Subteam:
    team = _read(refill, session, subteam_id)
    if team.archived:
        raise PortalRefused(
            409, "That subteam is archived: restore it on the Developers page first."
        )
    return team


def _back(to: str, subteam_id: str, notice: str) -> RedirectResponse:
    """Post/redirect/get, to the page the form was on (the list, or the subteam's page)."""
    if to == "detail":
        return RedirectResponse(f"{PAGE}/{subteam_id}?notice={notice}", status_code=303)
    query = urlencode({"notice": notice, "subteam": subteam_id})
    return RedirectResponse(f"{PAGE}?{query}", status_code=303)


def _typed(
    text: str, name: str, label: str, currency: str, form: FormState, *, empty: str, zero: bool
) -> int | None:
    """An amount as typed (None: left empty); a wrong one goes next to its field, with what
    an empty field means (``empty``). Zero is allowed when ``zero``, never less."""
    if not text.strip():
        return None
    try:
        micros = parse_typed_amount(text, currency, field=name)
    except RefillError as exc:
        said = re.sub(r"\s*\(got .*\)$", "", exc.message.removeprefix(name).strip())
        if said.startswith("must be an amount"):
            said = "must be an amount such as 50 or 1,000.50"
        form.errors[name] = f"The {label} {said}; {empty}."
        return None
    if micros < 0 or (micros == 0 and not zero):
        more = "zero or more" if zero else "more than zero"
        form.errors[name] = f"The {label} must be {more}; {empty}."
        return None
    return micros


def _typed_limit(text: str, name: str, currency: str, form: FormState) -> int | None:
    """A limit as typed (None: left empty, no limit)."""
    return _typed(
        text, name, LIMITS[name], currency, form, empty="leave it empty for no limit", zero=False
    )


@router.post("/team/subteams/min-call-balance")
def save_call_floor(
    request: Request,
    session: Signed,
    refill: Service,
    min_call_balance: Annotated[str, Form(max_length=60)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    """The agency's minimum call balance, typed as owners write amounts (empty: 0, any
    available credit is enough); a wrong one changes nothing. Audited by the service."""
    allowed_to_change(session, csrf_token)
    currency = services.get_agency(refill.db, session.agency_id).currency
    form = FormState({FLOOR: min_call_balance})
    floor = _typed(
        min_call_balance,
        FLOOR,
        "minimum call balance",
        currency,
        form,
        empty="0 or empty: any available credit is enough",
        zero=True,
    )
    if not form.errors:
        try:
            services.update_agency(
                refill.db,
                agency_id=session.agency_id,
                change=services.AgencyChange(min_call_balance=floor or 0),
                actor=session.actor,
            )
        except RefillError as exc:
            form.refused(exc, FLOOR)
    if form.errors:
        return render_list(request, refill, session, status=422, form=form)
    return RedirectResponse(f"{PAGE}?notice=floor_saved#calls", status_code=303)


@router.post("/team/subteams/{subteam_id}/limits")
def save_limits(
    request: Request,
    session: Signed,
    refill: Service,
    subteam_id: str,
    daily_spend_limit: Annotated[str, Form(max_length=60)] = "",
    monthly_spend_limit: Annotated[str, Form(max_length=60)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    """Set, change or remove (empty) both limits at once; a wrong one changes nothing."""
    allowed_to_change(session, csrf_token)
    team = _changeable(refill, session, subteam_id)
    currency = services.get_agency(refill.db, session.agency_id).currency
    typed = {"daily_spend_limit": daily_spend_limit, "monthly_spend_limit": monthly_spend_limit}
    form = FormState(dict(typed))
    limits = {name: _typed_limit(text, name, currency, form) for name, text in typed.items()}
    if not form.errors:
        try:
            subteam_service.update_subteam(
                refill.db,
                agency_id=session.agency_id,
                subteam_id=team.id,
                change=SubteamChange(
                    daily_spend_limit=limits["daily_spend_limit"],
                    monthly_spend_limit=limits["monthly_spend_limit"],
                ),
                actor=session.actor,
            )
        except RefillError as exc:
            form.refused(exc, "daily_spend_limit")
    if form.errors:
        return render_detail(request, refill, session, subteam_id, status=422, form=form)
    return _back("detail", subteam_id, "limits_saved")


@router.post("/team/subteams/{subteam_id}/{action}")
def pause_or_resume(
    session: Signed,
    refill: Service,
    subteam_id: str,
    action: str,
    to: Annotated[str, Form(max_length=10)] = "list",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    """Pause: new calls and usage are refused (calls holding credits still settle); the
    other subteams go on. Resume: accepted again. Audited by the service."""
    allowed_to_change(session, csrf_token)
    if action not in ("pause", "resume"):
        raise PortalRefused(404, "There is no such action.")
    team = _changeable(refill, session, subteam_id)
    paused = action == "pause"
    try:
        subteam_service.update_subteam(
            refill.db,
            agency_id=session.agency_id,
            subteam_id=subteam_id,
            change=SubteamChange(paused=paused),
            actor=session.actor,
        )
    except RefillError as exc:  # changed since the check (archived): say so, change nothing
        raise PortalRefused(exc.status, f"{team.name} was not changed: {exc.message}.") from None
    return _back(to, subteam_id, "paused" if paused else "resumed")
