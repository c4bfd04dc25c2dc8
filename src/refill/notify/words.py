"""Money, time and declines in an owner's words, for e-mail and the billing page."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from refill.money import display_amount, parse_amount

LOCALE = "en_US"

DECLINES = {
    "insufficient_funds": "the bank said the card does not have enough funds",
    "card_declined": "the bank declined the charge without saying why",
    "expired_card": "the card has expired",
    "lost_card": "the card was reported lost",
    "stolen_card": "the card was reported stolen",
    "incorrect_number": "the card number is not valid",
    "processing_error": "the bank could not process the charge",
    "try_again_later": "the bank asked to try again later",
    "do_not_honor": "the bank refused the charge",
    "fraudulent": "the bank flagged the charge as fraud",
    "authentication_required": "the bank asks you to confirm the payment (3-D Secure)",
    "authentication_failed": "the payment was not confirmed at the bank (3-D Secure)",
    "invalid_payment_method": "the card can no longer be charged",
}


def amount(value: str | int | None, currency: str) -> str:
    """``$40.00`` from ``"40.00"`` (an event's decimal string) or micro-units."""
    if value is None:
        return ""
    micros = value if isinstance(value, int) else parse_amount(value, allow_negative=True)
    return display_amount(micros, currency)


def decline(code: str | None) -> str:
    return DECLINES.get(code or "", f"the bank declined the charge ({code})")


def moment(value: str | datetime | None, zone: str) -> str:
    """A time in the agency's zone, labeled: ``2026-03-11 04:00 (America/New_York)``."""
    if value is None:
        return ""
    at = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    return f"{at.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M} ({zone})"
