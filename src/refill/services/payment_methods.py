"""Saved cards: saved at the gateway and here (token, brand, last four, expiry; never a
number), removed, listed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update

from refill import audit, ledger
from refill.cards import PaymentMethod, get_payment_method
from refill.db.database import Database, Tx
from refill.db.rows import record
from refill.db.schema import agencies, payment_methods
from refill.errors import (
    Conflict,
)
from refill.gateway.base import CardSetup, PaymentGateway
from refill.ids import new_id
from refill.reload import chain
from refill.reload import settings as reload_settings
from refill.services.agencies import get_agency, load_agency
from refill.services.pages import Page, paginate


def _card_from_row(row: Any) -> PaymentMethod:
    return record(PaymentMethod, row)


def _card_snapshot(pm: PaymentMethod) -> dict[str, Any]:
    return {
        "id": pm.id,
        "brand": pm.brand,
        "last4": pm.last4,
        "exp": f"{pm.exp_month:02d}/{pm.exp_year}",
    }


def save_payment_method(
    db: Database, gateway: PaymentGateway, *, agency_id: str, token: str, actor: str
) -> tuple[PaymentMethod, bool]:
    """Save a gateway token for the agency. Saving the same token again returns it."""
    # Network calls, outside any transaction.
    customer = gateway_customer(db, gateway, agency_id=agency_id)
    card = gateway.describe_payment_method(agency_id, token, customer)

    def work(tx: Tx) -> tuple[PaymentMethod, bool]:
        row = tx.conn.execute(
            select(payment_methods).where(
                payment_methods.c.agency_id == agency_id,
                payment_methods.c.gateway == gateway.name,
                payment_methods.c.token == card.token,
            )
        ).one_or_none()
        if row is not None and row.removed_at is None:
            return _card_from_row(row._mapping), False
        if row is not None:  # saved before, then removed: bring it back
            pm_id = row.id
            tx.conn.execute(
                update(payment_methods)
                .where(payment_methods.c.id == pm_id)
                .values(removed_at=None, exp_month=card.exp_month, exp_year=card.exp_year)
            )
        else:
            pm_id = new_id("pay")
            tx.conn.execute(
                insert(payment_methods).values(
                    id=pm_id,
                    agency_id=agency_id,
                    gateway=gateway.name,
                    token=card.token,
                    brand=card.brand,
                    last4=card.last4,
                    exp_month=card.exp_month,
                    exp_year=card.exp_year,
                    created_at=tx.now,
                )
            )
        saved = get_payment_method(tx, agency_id, pm_id)
        audit.record(
            tx,
            agency_id=agency_id,
            actor=actor,
            action="payment_method.added",
            target_id=pm_id,
            after=_card_snapshot(saved),
        )
        return saved, True

    return db.write(work)


def gateway_customer(db: Database, gateway: PaymentGateway, *, agency_id: str) -> str | None:
    """The agency's customer at the gateway, created the first time it is needed."""
    agency = get_agency(db, agency_id)
    if agency.gateway_customer_id is not None:
        return agency.gateway_customer_id
    created = gateway.create_customer(agency_id, agency.name)  # network: no transaction open
    if created is None:
        return None  # a gateway without customers (the sandbox)

    def store(tx: Tx) -> str | None:
        # Two first cards at once: the gateway made one customer (same idempotency key);
        # whoever stores second keeps what the first stored.
        tx.conn.execute(
            update(agencies)
            .where(agencies.c.id == agency_id, agencies.c.gateway_customer_id.is_(None))
            .values(gateway_customer_id=created)
        )
        return load_agency(tx, agency_id).gateway_customer_id

    return db.write(store)


def begin_card_setup(db: Database, gateway: PaymentGateway, *, agency_id: str) -> CardSetup | None:
    """Start adding a card in the browser (Stripe: a SetupIntent for Stripe.js); None for a
    gateway that takes test tokens instead (the sandbox)."""
    customer = gateway_customer(db, gateway, agency_id=agency_id)
    return gateway.begin_card_setup(customer)


def remove_payment_method(
    db: Database,
    *,
    agency_id: str,
    payment_method_id: str,
    actor: str,
    gateway: PaymentGateway | None = None,
) -> None:
    """Remove a card, then detach it at ``gateway`` (None: the gateway already did)."""

    def work(tx: Tx) -> PaymentMethod:
        ledger.lock_wallet(tx, agency_id)  # the lock order of every settings change
        card = get_payment_method(tx, agency_id, payment_method_id)
        settings = reload_settings.get_settings(tx, agency_id)
        listed = settings.payment_method_ids
        if payment_method_id in listed and settings.enabled:
            place = (
                "the primary card"
                if listed[0] == payment_method_id
                else f"backup card {listed.index(payment_method_id)} of {len(listed) - 1}"
            )
            raise Conflict(
                f"auto-reload charges this card ({place} in the auto-reload cards); take it "
                "out of that list, or turn auto-reload off, first",
                code="payment_method_in_use",
                list="auto_reload.payment_method_ids",
                position=listed.index(payment_method_id),
            )
        chain.drop_card(tx, agency_id, settings, payment_method_id, actor=actor)  # off: unlisted
        tx.conn.execute(
            update(payment_methods)
            .where(payment_methods.c.id == payment_method_id)
            .values(removed_at=tx.now)
        )
        audit.record(
            tx,
            agency_id=agency_id,
            actor=actor,
            action="payment_method.removed",
            target_id=card.id,
            before=_card_snapshot(card),
        )
        return card

    card = db.write(work)
    if gateway is not None and card.gateway == gateway.name:
        gateway.forget_payment_method(card.token)


def get_saved_card(db: Database, *, agency_id: str, payment_method_id: str) -> PaymentMethod:
    """A saved card of this agency, or ``payment_method_not_found``."""
    return db.read(lambda tx: get_payment_method(tx, agency_id, payment_method_id))


def list_payment_methods(
    db: Database, *, agency_id: str, limit: int = 50, cursor: str | None = None
) -> Page[PaymentMethod]:
    stmt = select(payment_methods).where(
        payment_methods.c.agency_id == agency_id, payment_methods.c.removed_at.is_(None)
    )
    return paginate(
        db,
        stmt,
        payment_methods.c.id,
        _card_from_row,
        limit=limit,
        cursor=cursor,
        newest_first=False,
    )
