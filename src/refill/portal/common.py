"""What every page of the billing portal shares: its templates, its words, and how a form is
shown again with what was wrong."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from refill.errors import RefillError
from refill.money import display_amount, format_amount

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
# "40.00", for form fields; "cash" is "$40.00", for everything a person reads.
templates.env.filters["money"] = lambda micros, currency: format_amount(micros, currency)
templates.env.filters["cash"] = lambda micros, currency: display_amount(micros, currency)

NOTICES = {
    "credits_added": "Credits added.",
    "credits_waiting": "The bank asks you to authenticate this payment before it is credited.",
    "auto_reload_saved": "Auto Reload settings saved.",
    "reload_cards_saved": "The order of the cards Auto Reload charges is saved.",
    "retrying_now": "Retried now: the outcome is below.",
    "payment_authenticated": "Payment authenticated: the credits are in the wallet.",
    "authentication_declined": "The payment was not authenticated, so nothing was charged.",
    "authentication_pending": "The bank has not confirmed the payment yet: it is credited "
    "as soon as it does.",
    "not_waiting": "That payment is no longer waiting for authentication.",
    "card_added": "Card saved.",
    "card_removed": "Card removed.",
    # The same words whether or not the e-mail has an account.
    "invitation_sent": "Invitation sent. The link in it works once, for 7 days; the person "
    "joins when they accept it.",
    "invitation_revoked": "Invitation withdrawn: its link no longer works.",
    "joined": "Welcome: you are now a member of this agency's billing page.",
    "password_changed": "Your password was changed, and every session signed out. Sign in "
    "with the new password.",
    "choices_saved": "Your e-mail choices are saved.",
    "recipients_saved": "Billing e-mail recipients saved.",
    "alert_saved": "Low-balance alert saved.",
    "details_saved": "Receipt details saved: receipts issued from now on show them.",
    "endpoint_updated": "Webhook endpoint updated.",
    "endpoint_deleted": "Webhook endpoint deleted.",
    "test_sent": "Test event sent: its delivery appears below in a moment.",
    "delivery_retried": "Delivery retried now.",
    "member_removed": "Member removed.",
}

RAIL_NAMES = {"daily_limit": "daily reload limit", "monthly_cap": "monthly spending cap"}
templates.env.globals["RAIL_NAMES"] = RAIL_NAMES

# The API's messages name JSON fields; the page names what the owner sees.
FIELD_LABELS = {
    "threshold": "The minimum threshold",
    "reload_amount": "The reload amount",
    "payment_method_id": "The payment method",
    "amount": "The amount",
    "target_balance": "The target balance",
    "daily_limit": "The daily limit",
    "monthly_cap": "The monthly cap",
    "mode": "The reload mode",
}


class SignInNeeded(Exception):
    """No live session: browsers are sent to the sign-in page."""


class PortalRefused(Exception):
    """A refusal shown to a person as a page (the API's problem+json is for programs)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class FormState:
    """What the person typed and what was wrong with it, to show the form again."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    message: str | None = None
    # A form shown back for a second look before it acts (what it will do, in words).
    confirming: dict[str, str] | None = None

    def refused(self, exc: RefillError, default_field: str) -> None:
        """Put a refusal next to its field (every field it names), in the page's words."""
        named = exc.extra.get("errors") or [
            {"field": exc.extra.get("field") or default_field, "message": exc.message}
        ]
        for error in named:
            name = str(error["field"])
            self.errors[name] = plain(str(error["message"]), name)


def plain(message: str, field: str) -> str:
    label = FIELD_LABELS.get(field)
    if label and message.startswith(field + " "):
        message = label + message[len(field) :]
    # The API names its JSON fields; the page says what the owner sees.
    for name, words in FIELD_LABELS.items():
        if "_" in name:  # reload_amount, not the plain word "threshold"
            message = message.replace(f" {name} ", f" {words.removeprefix('The ').lower()} ")
    message = message.replace("auto-reload", "Auto Reload")
    return message[:1].upper() + message[1:]


def plain_status(status: int) -> str:
    if status == 404:
        return "There is no such page."
    if status == 405:
        return "This address does not take that kind of request."
    if status < 500:
        return "The request was not understood. Go back and try again."
    return "Something went wrong on our side. Try again in a minute."


def page(
    request: Request, name: str, context: dict[str, Any], *, status: int = 200
) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status)


def back(path: str, notice: str) -> RedirectResponse:
    """Post/redirect/get: a refresh never repeats what the form did."""
    return RedirectResponse(f"{path}?notice={notice}", status_code=303)
