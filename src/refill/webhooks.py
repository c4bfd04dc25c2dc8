"""What Refill does with a verified Stripe webhook event.

Each event is handled in one transaction with the row that marks its id as seen, so a
replayed or re-sent event does nothing, and an event whose handling fails is not marked
(Stripe sends it again). A PaymentIntent event settles its reload attempt through the same
``record_charge_outcome`` the worker uses: whichever of webhook and worker (or reconciler)
comes first credits the wallet, and the other finds the attempt settled.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from sqlalchemy import select, update

from refill import alerts, audit, ledger, reload
from refill.db.database import Database, Tx, dialect_insert
from refill.db.schema import agencies, gateway_events, payment_methods, reload_attempts
from refill.gateway.base import ChargeResult, ChargeStatus, GatewayEvent
from refill.gateway.stripe import RELOAD_ID_KEY, charge_result_from_payment_intent
from refill.money import to_minor_units
from refill.reload import ReloadPolicy
from refill.reload import settings as reload_settings

log = logging.getLogger("refill.webhooks")

Outcome = Literal["handled", "duplicate", "ignored", "alerted"]

_PAYMENT_INTENT_EVENTS = {
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
}
_CARD_CHANGED_EVENTS = {"payment_method.updated", "payment_method.automatically_updated"}


def handle_stripe_event(db: Database, policy: ReloadPolicy, event: GatewayEvent) -> Outcome:
    def work(tx: Tx) -> Outcome:
        insert = dialect_insert(tx)
        first_time = tx.conn.execute(
            insert(gateway_events)
            .values(
                id=event.id,
                gateway="stripe",
                type=event.type,
                object_id=event.object.get("id"),
                received_at=tx.now,
            )
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(gateway_events.c.id)
        ).first()
        if first_time is None:
            return "duplicate"
        if event.type in _PAYMENT_INTENT_EVENTS:
            return _settle_attempt(tx, policy, event.object)
        if event.type in _CARD_CHANGED_EVENTS:
            return _card_changed(tx, event.object)
        if event.type == "payment_method.detached":
            return _card_detached(tx, event.object)
        return "ignored"

    outcome = db.write(work)
    log.info("stripe event %s (%s): %s", event.id, event.type, outcome)
    return outcome


def _settle_attempt(tx: Tx, policy: ReloadPolicy, intent: dict[str, Any]) -> Outcome:
    metadata = intent.get("metadata") or {}
    named = metadata.get(RELOAD_ID_KEY)
    query = select(reload_attempts)
    if named:
        query = query.where(reload_attempts.c.id == str(named))
    else:
        query = query.where(reload_attempts.c.gateway_payment_id == str(intent.get("id")))
    row = tx.conn.execute(query).one_or_none()
    result = charge_result_from_payment_intent(intent)
    paid = result.status is ChargeStatus.SUCCEEDED
    if row is None:
        if paid and named:
            # Money taken for a reload Refill does not know: never silently dropped.
            alerts.raise_alert(
                tx,
                kind="payment_unmatched",
                subject=str(intent.get("id")),
                agency_id=None,
                message=f"Stripe took {intent.get('amount')} {intent.get('currency')} "
                f"(PaymentIntent {intent.get('id')}) for reload {named}, which Refill does "
                "not know: refund it at Stripe, or credit the agency with `refill wallet adjust`",
            )
            return "alerted"
        return "ignored"  # not a reload of Refill's (another product on the same account)
    attempt = reload.attempt_from_row(row._mapping)
    amount, currency = intent.get("amount"), str(intent.get("currency", "")).upper()
    matches = (
        metadata.get("refill_agency_id", attempt.agency_id) == attempt.agency_id
        and currency == attempt.currency
        and amount == to_minor_units(attempt.amount, attempt.currency)
    )
    if not matches:
        if paid:
            alerts.raise_alert(
                tx,
                kind="payment_mismatch",
                subject=str(intent.get("id")),
                agency_id=attempt.agency_id,
                message=f"Stripe took {amount} {currency} (PaymentIntent {intent.get('id')}) "
                f"naming reload {attempt.id}, which is for "
                f"{to_minor_units(attempt.amount, attempt.currency)} {attempt.currency} of "
                f"agency {attempt.agency_id}: not credited; refund it or credit it by hand "
                "(`refill wallet adjust`)",
            )
            return "alerted"
        log.error(
            "PaymentIntent %s does not match reload %s (%s %s for agency %s): ignored",
            intent.get("id"),
            attempt.id,
            amount,
            currency,
            metadata.get("refill_agency_id"),
        )
        return "ignored"
    if paid and attempt.status in ("canceled", "failed"):
        # Refill gave up on this attempt, yet the money was taken (the owner finished 3-D
        # Secure on a payment canceled only here, say): it is credited, once, if the
        # payment names this very attempt.
        if named != attempt.id:
            alerts.raise_alert(
                tx,
                kind="payment_unmatched",
                subject=str(intent.get("id")),
                agency_id=attempt.agency_id,
                message=f"PaymentIntent {intent.get('id')} succeeded for reload {attempt.id} "
                f"({attempt.status}) but does not name it in its metadata: not credited",
            )
            return "alerted"
        reload.record_late_success(tx, policy, attempt.id, result, actor="stripe")
        return "handled"
    if result.status is ChargeStatus.UNKNOWN:
        result = ChargeResult(ChargeStatus.UNKNOWN, result.payment_id)
    reload.record_charge_outcome(tx, policy, attempt.id, result)
    return "handled"


def _cards_with_token(tx: Tx, token: str) -> list[reload.PaymentMethod]:
    rows = tx.conn.execute(
        select(payment_methods).where(
            payment_methods.c.gateway == "stripe",
            payment_methods.c.token == token,
            payment_methods.c.removed_at.is_(None),
        )
    ).all()
    return [reload.payment_method_from_row(row._mapping) for row in rows]


def _card_changed(tx: Tx, method: dict[str, Any]) -> Outcome:
    """The card's details changed at Stripe (e.g. the network updater renewed its expiry)."""
    card = method.get("card") or {}
    cards = _cards_with_token(tx, str(method.get("id")))
    if not card or not cards:
        return "ignored"
    values = {
        "brand": str(card.get("brand")),
        "last4": str(card.get("last4")),
        "exp_month": int(card.get("exp_month", 0)),
        "exp_year": int(card.get("exp_year", 0)),
    }
    for saved in cards:
        tx.conn.execute(
            update(payment_methods).where(payment_methods.c.id == saved.id).values(**values)
        )
        audit.record(
            tx,
            agency_id=saved.agency_id,
            actor="stripe",
            action="payment_method.updated",
            target_id=saved.id,
            before={"last4": saved.last4, "exp": f"{saved.exp_month:02d}/{saved.exp_year}"},
            after={
                "last4": values["last4"],
                "exp": f"{values['exp_month']:02d}/{values['exp_year']}",
            },
        )
    return "handled"


def _card_detached(tx: Tx, method: dict[str, Any]) -> Outcome:
    """The card was detached at Stripe (by the dashboard, or the customer's bank): it can
    no longer be charged, so it is removed, and auto-reload that used it is suspended."""
    cards = _cards_with_token(tx, str(method.get("id")))
    for saved in cards:
        ledger.lock_wallet(tx, saved.agency_id)  # the lock order of every settings change
        tx.conn.execute(
            update(payment_methods)
            .where(payment_methods.c.id == saved.id)
            .values(removed_at=tx.now)
        )
        audit.record(
            tx,
            agency_id=saved.agency_id,
            actor="stripe",
            action="payment_method.removed",
            target_id=saved.id,
            before={"brand": saved.brand, "last4": saved.last4},
        )
        settings = reload.get_settings(tx, saved.agency_id)
        if settings.payment_method_id == saved.id:
            currency = tx.conn.execute(
                select(agencies.c.currency).where(agencies.c.id == saved.agency_id)
            ).scalar_one()
            reload_settings.suspend(
                tx,
                saved.agency_id,
                currency,
                f"the card ending {saved.last4} was removed at Stripe; choose another card",
            )
    return "handled" if cards else "ignored"
