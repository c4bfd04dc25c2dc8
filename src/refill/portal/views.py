"""The billing page's view data: what the templates show, built from the services."""

from __future__ import annotations

import json
import secrets
from contextlib import suppress
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from refill import services
from refill.bootstrap import Refill
from refill.cards import PaymentMethod
from refill.db.database import Database
from refill.errors import RefillError
from refill.money import display_amount, format_amount
from refill.notify import words
from refill.portal.common import NOTICES, FormState
from refill.reload.attempt import ReloadAttempt
from refill.reload.settings import MAX_CARDS, AutoReloadSettings
from refill.reload.states import AttemptStatus, SettingsStatus
from refill.services import history, members
from refill.services import recommendation as recommending
from refill.services.explain import explain_auto_reload
from refill.services.history_filters import ReloadFilter, reload_filter
from refill.services.sessions import PortalSession

HISTORY_PAGE = 20
FORMS = ("credits", "auto_reload", "card", "cards", "reload_cards")

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


def _api_query(query: dict[str, str]) -> dict[str, str]:
    """The page's filter as the exports take it: its last day included, so ``to`` is the
    day after (a day the owner typed that is no date is refused as the API refuses it)."""
    api = {name: value for name, value in query.items() if name != "through"}
    through = query.get("through")
    if through:
        try:
            api["to"] = (date.fromisoformat(through) + timedelta(days=1)).isoformat()
        except ValueError:
            api["to"] = through  # refused by the filter's parser, in its words
    return api


def card_name(card: PaymentMethod) -> str:
    return f"{card.brand.title()} ending {card.last4}"


def card_place(position: int) -> str:
    """A card's place in Auto Reload's list, as the page names it."""
    return "Primary" if position == 0 else f"Backup {position}"


def reload_card_rows(settings: AutoReloadSettings, names: dict[str, str]) -> list[dict[str, Any]]:
    """The cards Auto Reload charges, in order: each with its place and why it is skipped."""
    listed = settings.card_list
    return [
        {
            "id": card.payment_method_id,
            "name": names.get(card.payment_method_id, "A removed card"),
            "place": card_place(position),
            "skipped": card.skipped,
            "skip_words": words.decline(card.skip_reason) if card.skipped else "",
            "first": position == 0,
            "last": position == len(listed) - 1,
        }
        for position, card in enumerate(listed)
    ]


def added_notice(reload: ReloadAttempt, cards: dict[str, str]) -> str:
    """What a finished "Add credits" says on the page it lands on."""
    card = cards.get(reload.payment_method_id, "the card")
    amount = display_amount(reload.amount, reload.currency)
    if reload.status is AttemptStatus.SUCCEEDED:
        return f"Added {amount} from {card}."
    if reload.status is AttemptStatus.REQUIRES_ACTION:
        return (
            f"Your bank asks you to confirm the {amount} payment from {card} before it is "
            "credited: use “Authenticate payment” below."
        )
    return f"The {amount} payment from {card} is being processed."


def _chart(refill: Refill, agency_id: str, currency: str, threshold: int | None) -> str:
    chart = history.balance_history(refill.db, agency_id=agency_id)
    data = {
        "currency": currency,
        "since": int(chart.since.timestamp() * 1000),
        "until": int(chart.until.timestamp() * 1000),
        "threshold": None if threshold is None else float(format_amount(threshold, currency)),
        "points": [
            {"t": int(p.at.timestamp() * 1000), "y": float(format_amount(p.balance))}
            for p in chart.points
        ],
        "reloads": [
            {
                "t": int(m.at.timestamp() * 1000),
                "amount": display_amount(m.amount, currency),
                "status": m.status,
                "trigger": m.trigger,
                "y": None if m.balance_after is None else float(format_amount(m.balance_after)),
            }
            for m in chart.reloads
        ],
    }
    # Inside <script type="application/json">: "</" must not close the element.
    return json.dumps(data).replace("</", "<\\/")


def _history(db: Database, agency_id: str, cursor: str | None, shown: Any) -> dict[str, Any]:
    """The billing history's page, as filtered, and the wallet's last reload."""
    query = shown.as_query() if shown is not None else {}
    api_query = _api_query(query)
    matching = (
        reload_filter(
            db,
            agency_id=agency_id,
            since=api_query.get("from"),
            until=api_query.get("to"),
            trigger=api_query.get("trigger"),
        )
        if api_query
        else None
    )
    # A fixed filter: built directly, not parsed (parsing reads the agency's time zone).
    succeeded = ReloadFilter(statuses=(AttemptStatus.SUCCEEDED,))
    last = services.list_reloads(db, agency_id=agency_id, limit=1, matching=succeeded).data
    return {
        "history": services.list_reloads(
            db, agency_id=agency_id, limit=HISTORY_PAGE, cursor=cursor, matching=matching
        ),
        "history_filter": query,
        # The page's own query (kept by the pager and the refresh) and the API's (CSV).
        "filter_query": urlencode(query),
        "export_query": urlencode(api_query),
        "last_reload": last[0] if last else None,
    }


def billing_context(
    refill: Refill,
    session: PortalSession,
    cursor: str | None,
    *,
    forms: dict[str, FormState] | None = None,
    notice: str | None = None,
    full_page: bool = True,
    added: str | None = None,
    shown: Any = None,
) -> dict[str, Any]:
    db = refill.db
    wallet = services.get_wallet(db, refill.policy, agency_id=session.agency_id)
    zone = ZoneInfo(services.get_agency(db, session.agency_id).timezone)
    now = db.clock.now()
    settings = wallet.auto_reload
    cards = services.list_payment_methods(db, agency_id=session.agency_id, limit=100).data
    listed = settings.payment_method_ids
    card_rows = [
        {
            "card": card,
            "expired": card.is_expired(now),
            # A card works to the end of its expiry month: flag the last 30 days of it.
            "expires_soon": not card.is_expired(now) and card.is_expired(now + timedelta(days=30)),
            "in_use": card.id == settings.payment_method_id,
            # Its place in Auto Reload's list ("Primary", "Backup 1"), or None.
            "place": card_place(listed.index(card.id)) if card.id in listed else None,
        }
        for card in cards
    ]
    stripe_mode = refill.gateway.name == "stripe"
    names = {card.id: card_name(card) for card in cards}
    shown_notice = NOTICES.get(notice or "")
    if notice == "credits_added" and added:
        # An id of another agency's reload, or of none, keeps the plain notice.
        with suppress(RefillError):
            shown_notice = added_notice(
                services.get_reload(db, agency_id=session.agency_id, attempt_id=added), names
            )
    shown_threshold = settings.threshold if settings.status != SettingsStatus.OFF else None
    insight = recommending.insights(
        db, refill.policy, agency_id=session.agency_id, spell=display_amount
    )
    return {
        # The runway is on the live part (it moves with the balance); the rest is not.
        "forecast": insight.forecast,
        "recommendation": insight.recommendation if full_page else None,
        "reload_cover_days": recommending.reload_cover_days(
            settings, insight.forecast.burn_rate_per_day
        ),
        "session": session,
        "wallet": wallet,
        "settings": settings,
        "zone": zone.key,
        "cards": card_rows,
        **_history(db, session.agency_id, cursor, shown),
        "situation": wallet.situation,
        "card_names": names,
        "reload_cards": reload_card_rows(settings, names),
        "max_cards": MAX_CARDS,
        "decline_words": words.decline,
        "stripe_js_url": refill.settings.stripe_js_url,
        "cursor": cursor,
        # A month of usage summed: on the full page, not on every refresh of the live part.
        "usage": history.usage_by_subteam(db, agency_id=session.agency_id) if full_page else [],
        "explanation": explain_auto_reload(db, refill.policy, agency_id=session.agency_id)
        if full_page
        else None,
        "agencies": members.agencies_of(db, user_id=session.user_id) if full_page else [],
        "chart_json": _chart(refill, session.agency_id, wallet.currency, shown_threshold),
        "when": lambda moment: local_time(moment, zone),
        "test_cards": SANDBOX_CARD_NAMES if not stripe_mode else {},
        "stripe_mode": stripe_mode,
        "notice": shown_notice,
        "forms": {name: (forms or {}).get(name, FormState()) for name in FORMS},
        "policy": refill.policy,
        # One key per rendered "Add credits" form: a double submit charges once.
        "credits_key": secrets.token_urlsafe(18),
    }
