"""The billing page's view data: what the templates show, built from the services."""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from refill import services
from refill.bootstrap import Refill
from refill.money import format_amount
from refill.portal.common import NOTICES, FormState
from refill.reload.states import SettingsStatus
from refill.services import history, members
from refill.services.sessions import PortalSession

HISTORY_PAGE = 20
FORMS = ("credits", "auto_reload", "card", "cards")

# Sandbox test cards, by what an owner would call them.
SANDBOX_CARD_NAMES = {
    "pm_card_visa": "Visa ending 4242 — succeeds",
    "pm_card_mastercard": "Mastercard ending 4444 — succeeds",
    "pm_card_visa_chargeDeclinedInsufficientFunds": "Visa ending 9995 — insufficient funds",
    "pm_card_chargeCustomerFail": "Visa ending 0341 — declined",
    "pm_card_chargeDeclinedExpiredCard": "Visa ending 0069 — expired card",
    "pm_card_visa_chargeDeclinedLostCard": "Visa ending 9987 — lost card",
    "pm_card_chargeDeclinedProcessingError": "Visa ending 0119 — processing error",
    "pm_card_authenticationRequired": "Visa ending 3184 — needs 3-D Secure",
}


def local_time(moment: datetime | None, zone: ZoneInfo) -> str:
    return "" if moment is None else moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _chart(refill: Refill, agency_id: str, currency: str, threshold: int | None) -> str:
    chart = history.balance_history(refill.db, agency_id=agency_id)
    data = {
        "currency": currency,
        "threshold": None if threshold is None else float(format_amount(threshold, currency)),
        "points": [
            {"t": int(p.at.timestamp() * 1000), "y": float(format_amount(p.balance))}
            for p in chart.points
        ],
        "reloads": [
            {
                "t": int(m.at.timestamp() * 1000),
                "amount": format_amount(m.amount, currency),
                "status": m.status,
                "trigger": m.trigger,
                "y": None if m.balance_after is None else float(format_amount(m.balance_after)),
            }
            for m in chart.reloads
        ],
    }
    # Inside <script type="application/json">: "</" must not close the element.
    return json.dumps(data).replace("</", "<\\/")


def billing_context(
    refill: Refill,
    session: PortalSession,
    cursor: str | None,
    *,
    forms: dict[str, FormState] | None = None,
    notice: str | None = None,
    full_page: bool = True,
) -> dict[str, Any]:
    db = refill.db
    wallet = services.get_wallet(db, refill.policy, agency_id=session.agency_id)
    zone = ZoneInfo(services.get_agency(db, session.agency_id).timezone)
    now = db.clock.now()
    settings = wallet.auto_reload
    cards = services.list_payment_methods(db, agency_id=session.agency_id, limit=100).data
    card_rows = [
        {
            "card": card,
            "expired": card.is_expired(now),
            # A card works to the end of its expiry month: flag the last 30 days of it.
            "expires_soon": not card.is_expired(now) and card.is_expired(now + timedelta(days=30)),
            "in_use": card.id == settings.payment_method_id,
        }
        for card in cards
    ]
    blocked = settings.blocked_at(now)
    stripe_mode = refill.gateway.name == "stripe"
    shown_threshold = settings.threshold if settings.status != SettingsStatus.OFF else None
    return {
        "session": session,
        "wallet": wallet,
        "settings": settings,
        "blocked": blocked,
        "blocked_until": local_time(settings.blocked_until, zone) if blocked else None,
        "zone": zone.key,
        "cards": card_rows,
        "history": services.list_reloads(
            db, agency_id=session.agency_id, limit=HISTORY_PAGE, cursor=cursor
        ),
        "cursor": cursor,
        # A month of usage summed: on the full page, not on every refresh of the live part.
        "usage": history.usage_by_subteam(db, agency_id=session.agency_id) if full_page else [],
        "agencies": members.agencies_of(db, user_id=session.user_id) if full_page else [],
        "chart_json": _chart(refill, session.agency_id, wallet.currency, shown_threshold),
        "when": lambda moment: local_time(moment, zone),
        "test_cards": SANDBOX_CARD_NAMES if not stripe_mode else {},
        "stripe_mode": stripe_mode,
        "notice": NOTICES.get(notice or ""),
        "forms": {name: (forms or {}).get(name, FormState()) for name in FORMS},
        "policy": refill.policy,
        # One key per rendered "Add credits" form: a double submit charges once.
        "credits_key": secrets.token_urlsafe(18),
    }
