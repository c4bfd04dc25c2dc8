"""/portal/team/billing/auto-reload/preview: the Auto Reload form's "Try them on my past
usage" button (the last 30 days). The settings as typed are replayed against the wallet's own usage
(``services.preview``) and shown beside what the settings of the time did; nothing is
saved, and the form keeps what the owner typed, ready to save."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response

from refill import services
from refill.errors import RefillError
from refill.money import display_amount, format_amount
from refill.portal.billing import AutoReloadForm, auto_reload_change, render_billing, typed_form
from refill.portal.security import Signed, allowed_to_change
from refill.reload.replay import Replay
from refill.services import preview as previews
from refill.webctx import Service

router = APIRouter(prefix="/portal", include_in_schema=False)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One replay as the page shows it."""

    reloads: int
    charged: int
    lowest_balance: int
    hours_without_credits: float
    refused_calls: int
    blocked: str | None


def outcome(r: Replay, currency: str) -> Outcome:
    block = r.blocked_by_rail
    words = None
    if block is not None:
        rail = "daily limit" if block.rail == "daily_limit" else "monthly cap"
        words = f"the {rail}, first on {block.at:%b %d %H:%M} UTC"
    return Outcome(
        len(r.reloads),
        r.charged,
        r.lowest_balance,
        r.hours_without_credits,
        r.refused_calls,
        words,
    )


def opening_words(result: previews.Preview, currency: str) -> str | None:
    """Why a young wallet's replay begins where it does, and why these settings may reload
    at once there (None for a wallet older than the days replayed)."""
    if not result.from_opening:
        return None
    balance = display_amount(result.opening_balance, currency)
    said = (
        f"Your wallet opened {result.start:%b} {result.start.day} at {result.start:%H:%M} UTC, "
        f"so this starts then, from its balance of {balance}"
    )
    first = result.proposed.reloads[0][0] if result.proposed.reloads else None
    if first == result.start:
        return said + ": below this threshold, so these settings reload at once."
    return said + "."


def chart_data(result: previews.Preview, currency: str) -> str:
    """Both balance lines for backtest.js (read from a JSON script block: no inline JS)."""

    def points(r: Replay) -> list[dict[str, Any]]:
        return [
            {"t": int(at.timestamp() * 1000), "y": float(format_amount(b, currency))}
            for at, b in r.series
        ]

    return json.dumps(
        {
            "currency": currency,
            "proposed": points(result.proposed),
            "as_was": points(result.as_was),
        }
    )


@router.post("/team/billing/auto-reload/preview")
def preview_auto_reload(
    request: Request,
    session: Signed,
    refill: Service,
    fields: Annotated[AutoReloadForm, Form()],
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    allowed_to_change(session, csrf_token)
    form = typed_form(fields)
    currency = services.get_agency(refill.db, session.agency_id).currency
    try:
        result = previews.preview(
            refill.db,
            refill.policy,
            agency_id=session.agency_id,
            currency=currency,
            change=auto_reload_change(fields, currency),
        )
    except RefillError as exc:
        form.refused(exc, "enabled")
        return render_billing(request, refill, session, status=422, forms={"auto_reload": form})
    backtest = {
        "days": result.days,
        "proposed": outcome(result.proposed, currency),
        "as_was": outcome(result.as_was, currency),
        "note": result.note,
        "opening": opening_words(result, currency),
        "chart": chart_data(result, currency),
    }
    return render_billing(
        request, refill, session, forms={"auto_reload": form}, extra={"backtest": backtest}
    )
