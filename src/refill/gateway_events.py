"""What Refill does with a verified gateway event (a webhook), in the gateway's neutral
terms (``gateway.base.GatewayEvent``): the gateway parsed it, this module never reads a
gateway's own format.

Each event is handled in one transaction with the row that marks its id as seen, so a
replayed or re-sent event does nothing, and an event whose handling fails is not marked
(the gateway sends it again). A payment event settles its reload attempt through the same
``record_charge_outcome`` the worker uses: whichever of webhook and worker (or reconciler)
comes first credits the wallet, and the other finds the attempt settled. Money reported as
taken is never dropped: credited late when it names its attempt and matches it, an
operator alert otherwise.
"""

from __future__ import annotations

import logging
from typing import Literal

from sqlalchemy import select, update

from refill import alerts, audit, ledger
from refill.cards import PaymentMethod
from refill.db.database import Database, Tx, dialect_insert
from refill.db.rows import record
from refill.db.schema import gateway_events, payment_methods, reload_attempts
from refill.gateway.base import (
    CardReport,
    ChargeResult,
    ChargeStatus,
    EventKind,
    GatewayEvent,
    PaymentReport,
)
from refill.money import to_minor_units
from refill.reload import card_list, chain, settings_store
from refill.reload import settings as reload_settings
from refill.reload.attempt import ReloadAttempt, attempt_from_row
from refill.reload.machine import record_charge_outcome
from refill.reload.policy import ReloadPolicy
from refill.reload.settlement import GAVE_UP, record_late_success
from refill.reload.trigger import agency_currency

log = logging.getLogger("refill.gateway_events")

Outcome = Literal["handled", "duplicate", "ignored", "alerted"]


def handle_gateway_event(db: Database, policy: ReloadPolicy, event: GatewayEvent) -> Outcome:
    def work(tx: Tx) -> Outcome:
        first_time = tx.conn.execute(
            dialect_insert(tx)(gateway_events)
            .values(
                id=event.id,
                gateway=event.gateway,
                type=event.type,
                object_id=event.object_id,
                received_at=tx.now,
            )
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(gateway_events.c.id)
        ).first()
        if first_time is None:
            return "duplicate"
        if event.kind is EventKind.PAYMENT and event.payment is not None:
            return _settle_attempt(tx, policy, event.gateway, event.payment)
        if event.kind is EventKind.CARD_UPDATED and event.card is not None:
            return _card_changed(tx, event.gateway, event.card)
        if event.kind is EventKind.CARD_DETACHED and event.card is not None:
            return _card_detached(tx, event.gateway, event.card)
        return "ignored"

    outcome = db.write(work)
    log.info("%s event %s (%s): %s", event.gateway, event.id, event.type, outcome)
    return outcome


def _attempt_of(tx: Tx, payment: PaymentReport) -> ReloadAttempt | None:
    query = select(reload_attempts)
    if payment.reference:
        query = query.where(reload_attempts.c.id == payment.reference)
    else:
        query = query.where(reload_attempts.c.gateway_payment_id == payment.payment_id)
    row = tx.conn.execute(query).one_or_none()
    return None if row is None else attempt_from_row(row._mapping)


def _matches(attempt: ReloadAttempt, payment: PaymentReport) -> bool:
    return (
        (payment.agency_id or attempt.agency_id) == attempt.agency_id
        and payment.currency == attempt.currency
        and payment.amount_minor == to_minor_units(attempt.amount, attempt.currency)
    )


def _taken(payment: PaymentReport) -> str:
    return f"{payment.amount_minor} {payment.currency} (payment {payment.payment_id})"


def _settle_attempt(tx: Tx, policy: ReloadPolicy, gateway: str, payment: PaymentReport) -> Outcome:
    paid = payment.result.status is ChargeStatus.SUCCEEDED
    attempt = _attempt_of(tx, payment)
    if attempt is None:
        if paid and payment.reference:
            # Money taken for a reload Refill does not know: never silently dropped.
            return _alert(
                tx,
                "payment_unmatched",
                payment,
                None,
                f"the gateway took {_taken(payment)} for reload {payment.reference}, which "
                "Refill does not know: refund it, or credit the agency with `refill wallet "
                "adjust`",
            )
        return "ignored"  # not a reload of Refill's (another product on the same account)
    if not _matches(attempt, payment):
        if paid:
            return _alert(
                tx,
                "payment_mismatch",
                payment,
                attempt.agency_id,
                f"the gateway took {_taken(payment)} naming reload {attempt.id}, which is for "
                f"{to_minor_units(attempt.amount, attempt.currency)} {attempt.currency} of "
                f"agency {attempt.agency_id}: not credited; refund it or credit it by hand "
                "(`refill wallet adjust`)",
            )
        log.error("payment %s does not match reload %s: ignored", payment.payment_id, attempt.id)
        return "ignored"
    if paid and attempt.status in GAVE_UP:
        # Refill gave up on this attempt, yet the money was taken (the owner finished 3-D
        # Secure on a payment canceled only here, say): credited once if the payment names
        # this very attempt.
        if payment.reference != attempt.id:
            return _alert(
                tx,
                "payment_unmatched",
                payment,
                attempt.agency_id,
                f"payment {payment.payment_id} succeeded for reload {attempt.id} "
                f"({attempt.status}) but does not name it: not credited",
            )
        record_late_success(tx, attempt.id, payment.result, actor=gateway)
        return "handled"
    result = payment.result
    if result.status is ChargeStatus.UNKNOWN:
        result = ChargeResult(ChargeStatus.UNKNOWN, result.payment_id)
    record_charge_outcome(tx, policy, attempt.id, result)
    return "handled"


def _alert(
    tx: Tx, kind: str, payment: PaymentReport, agency_id: str | None, message: str
) -> Outcome:
    alerts.raise_alert(
        tx, kind=kind, subject=payment.payment_id, agency_id=agency_id, message=message
    )
    return "alerted"


def _cards_with_token(tx: Tx, gateway: str, token: str) -> list[PaymentMethod]:
    rows = tx.conn.execute(
        select(payment_methods).where(
            payment_methods.c.gateway == gateway,
            payment_methods.c.token == token,
            payment_methods.c.removed_at.is_(None),
        )
    ).all()
    return [record(PaymentMethod, row._mapping) for row in rows]


def _card_changed(tx: Tx, gateway: str, card: CardReport) -> Outcome:
    """The card's details changed at the gateway (e.g. the network updater renewed it)."""
    saved_cards = _cards_with_token(tx, gateway, card.token)
    if card.last4 is None or card.exp_month is None or card.exp_year is None or not saved_cards:
        return "ignored"
    values = {
        "brand": card.brand or "card",
        "last4": card.last4,
        "exp_month": card.exp_month,
        "exp_year": card.exp_year,
    }
    for saved in saved_cards:
        renewed = (saved.exp_month, saved.exp_year) != (card.exp_month, card.exp_year)
        tx.conn.execute(
            update(payment_methods)
            .where(payment_methods.c.id == saved.id)
            # a renewed card's expiry is news again: its notices start over
            .values(**values, **({"expiry_notices": ""} if renewed else {}))
        )
        card_list.unskip_card(tx, saved.id)  # an updated card may work again
        audit.record(
            tx,
            agency_id=saved.agency_id,
            actor=gateway,
            action="payment_method.updated",
            target_id=saved.id,
            before={"last4": saved.last4, "exp": f"{saved.exp_month:02d}/{saved.exp_year}"},
            after={"last4": card.last4, "exp": f"{card.exp_month:02d}/{card.exp_year}"},
        )
    return "handled"


def _card_detached(tx: Tx, gateway: str, card: CardReport) -> Outcome:
    """The card was detached at the gateway (by its dashboard, or the bank): it can no
    longer be charged, so it is removed, and auto-reload that used it is suspended."""
    saved_cards = _cards_with_token(tx, gateway, card.token)
    for saved in saved_cards:
        ledger.lock_wallet(tx, saved.agency_id)  # the lock order of every settings change
        tx.conn.execute(
            update(payment_methods)
            .where(payment_methods.c.id == saved.id)
            .values(removed_at=tx.now)
        )
        audit.record(
            tx,
            agency_id=saved.agency_id,
            actor=gateway,
            action="payment_method.removed",
            target_id=saved.id,
            before={"brand": saved.brand, "last4": saved.last4},
        )
        # It leaves auto-reload's cards (a backup becomes the primary); with none left,
        # auto-reload is suspended.
        current = reload_settings.get_settings(tx, saved.agency_id)
        after = chain.drop_card(tx, saved.agency_id, current, saved.id, actor=gateway)
        if after is not None and after.payment_method_id is None:
            settings_store.suspend(
                tx,
                saved.agency_id,
                agency_currency(tx, saved.agency_id),
                f"the card ending {saved.last4} was removed at {gateway.title()}; choose another "
                "card",
            )
    return "handled" if saved_cards else "ignored"
