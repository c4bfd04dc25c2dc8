"""Agencies: the top-level team that owns one wallet, its time zone, and its audit log."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from sqlalchemy import insert, select, update

from refill import audit, ledger, opening
from refill.db.database import Database, Tx
from refill.db.rows import record
from refill.db.schema import accounts, agencies, audit_log
from refill.errors import (
    NotFound,
    ValidationFailed,
)
from refill.ids import new_id, wallet_id_for
from refill.money import check_currency, currency_info, format_amount
from refill.reload import settings as reload_settings
from refill.reload import settings_store
from refill.roles import KeyRole
from refill.services.keys import IssuedKey, issue_key
from refill.services.members import normalize_email
from refill.services.names import clean_name
from refill.services.pages import Page, paginate
from refill.services.subteams import forget_counters


@dataclass(frozen=True, slots=True)
class Agency:
    id: str
    name: str
    currency: str
    timezone: str
    created_at: datetime
    # The agency's customer at the gateway (Stripe), once it saved a card there.
    gateway_customer_id: str | None = None
    billing_emails: list[str] = field(default_factory=list)
    billing_address: str | None = None
    tax_id: str | None = None
    low_balance_alert: int | None = None
    # Calls are authorized while available credits are above this (0: any credit at all).
    min_call_balance: int = 0


def create_agency(db: Database, *, name: str, currency: str = "USD") -> tuple[Agency, IssuedKey]:
    name = clean_name(name, "agency")
    currency = check_currency(currency.upper())

    def work(tx: Tx) -> tuple[Agency, IssuedKey]:
        agency = Agency(new_id("agc"), name, currency, "UTC", tx.now)
        tx.conn.execute(
            insert(agencies).values(
                id=agency.id,
                name=agency.name,
                currency=currency,
                timezone=agency.timezone,
                created_at=tx.now,
            )
        )
        opening.create_wallet(tx, agency_id=agency.id, currency=currency)
        return agency, issue_key(tx, agency_id=agency.id, role=KeyRole.OWNER, subteam_id=None)

    return db.write(work)


def load_agency(tx: Tx, agency_id: str) -> Agency:
    floor = (
        select(accounts.c.call_floor)
        .where(accounts.c.id == wallet_id_for(agency_id))
        .scalar_subquery()
    )
    row = tx.conn.execute(
        select(agencies, floor.label("call_floor")).where(agencies.c.id == agency_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"agency {agency_id} not found")
    m = row._mapping
    return record(
        Agency,
        m,
        billing_emails=json.loads(m["billing_emails"] or "[]"),
        min_call_balance=int(m["call_floor"] or 0),
    )


def get_agency(db: Database, agency_id: str) -> Agency:
    return db.read(lambda tx: load_agency(tx, agency_id))


@cache
def _time_zones() -> frozenset[str]:
    """Real IANA zones only: ``ZoneInfo("America")`` fails in other ways than a bad name."""
    return frozenset(available_timezones())


def _check_timezone(timezone: str) -> str:
    if timezone not in _time_zones():
        raise ValidationFailed(
            f"{timezone!r} is not an IANA time zone such as 'Europe/Paris' or 'UTC'",
            code="invalid_timezone",
            field="timezone",
        )
    return timezone


MAX_BILLING_EMAILS = 10


@dataclass(frozen=True, slots=True)
class AgencyChange:
    """What ``PATCH /v1/agency`` may change; None keeps a value, "" clears a text."""

    timezone: str | None = None
    billing_emails: list[str] | None = None
    billing_address: str | None = None
    tax_id: str | None = None
    min_call_balance: int | None = None


def _values(change: AgencyChange) -> dict[str, Any]:
    """The columns to write, every value checked first: a bad one changes nothing."""
    values: dict[str, Any] = {}
    if change.timezone is not None:
        values["timezone"] = _check_timezone(change.timezone)
    if change.billing_emails is not None:
        if len(change.billing_emails) > MAX_BILLING_EMAILS:
            raise ValidationFailed(
                f"at most {MAX_BILLING_EMAILS} billing e-mail addresses", field="billing_emails"
            )
        try:
            emails = sorted({normalize_email(e) for e in change.billing_emails})
        except ValidationFailed as exc:
            raise ValidationFailed(exc.message, field="billing_emails") from None
        values["billing_emails"] = json.dumps(emails)
    if change.billing_address is not None:
        values["billing_address"] = change.billing_address.strip() or None
    if change.tax_id is not None:
        values["tax_id"] = change.tax_id.strip() or None
    return values


def update_agency(db: Database, *, agency_id: str, change: AgencyChange, actor: str) -> Agency:
    """The time zone in which the daily limit and the monthly cap count (IANA name); who
    else is told about billing; and what receipts say about the agency (from the next
    receipt on: those issued keep what they said). One write, audited."""
    values = _values(change)
    floor = change.min_call_balance
    if floor is not None and floor < 0:
        raise ValidationFailed(
            "min_call_balance must not be negative",
            code="invalid_amount",
            field="min_call_balance",
        )
    if not values and floor is None:
        return get_agency(db, agency_id)

    def work(tx: Tx) -> Agency:
        # The wallet's lock first: the call floor is on its row, and a new time zone
        # changes what every subteam's day and month counters count.
        ledger.lock_wallet(tx, agency_id)
        before = load_agency(tx, agency_id)
        if values:
            tx.conn.execute(update(agencies).where(agencies.c.id == agency_id).values(**values))
        if floor is not None:
            tx.conn.execute(
                update(accounts)
                .where(accounts.c.id == wallet_id_for(agency_id))
                .values(call_floor=floor)
            )
        if "timezone" in values and values["timezone"] != before.timezone:
            forget_counters(tx, agency_id)
        after = load_agency(tx, agency_id)
        changed = [*values, *(["min_call_balance"] if floor is not None else [])]
        audit.record(
            tx,
            agency_id=agency_id,
            actor=actor,
            action="agency.updated",
            target_id=agency_id,
            before={k: _shown(before, k) for k in changed},
            after={k: _shown(after, k) for k in changed},
        )
        return after

    return db.write(work)


def _shown(agency: Agency, name: str) -> Any:
    value = getattr(agency, name)
    return format_amount(value, agency.currency) if name == "min_call_balance" else value


def set_low_balance_alert(db: Database, *, agency_id: str, alert: int | None, actor: str) -> Agency:
    """The level below which the owner is told of a low balance, whether auto-reload is on
    or off (None: the auto-reload threshold while auto-reload is off or suspended)."""
    if alert is not None and alert <= 0:
        raise ValidationFailed(
            "low_balance_alert must be more than zero", field="low_balance_alert"
        )

    def work(tx: Tx) -> Agency:
        ledger.lock_wallet(tx, agency_id)
        before = load_agency(tx, agency_id)
        bounds = currency_info(before.currency)
        if alert is not None and alert > bounds.max_threshold:
            raise ValidationFailed(
                f"low_balance_alert must be at most "
                f"{format_amount(bounds.max_threshold, before.currency)} {before.currency}",
                field="low_balance_alert",
            )
        tx.conn.execute(
            update(agencies).where(agencies.c.id == agency_id).values(low_balance_alert=alert)
        )
        settings_store.refresh_levels(tx, agency_id, reload_settings.get_settings(tx, agency_id))
        audit.record(
            tx,
            agency_id=agency_id,
            actor=actor,
            action="wallet.alerts_changed",
            target_id=agency_id,
            before={"low_balance_alert": money_or_none(before.low_balance_alert, before.currency)},
            after={"low_balance_alert": money_or_none(alert, before.currency)},
        )
        return load_agency(tx, agency_id)

    return db.write(work)


def money_or_none(micros: int | None, currency: str) -> str | None:
    return None if micros is None else format_amount(micros, currency)


def list_audit_log(
    db: Database,
    *,
    agency_id: str,
    limit: int = 50,
    cursor: str | None = None,
    action: str | None = None,
) -> Page[audit.AuditEntry]:
    stmt = select(audit_log).where(audit_log.c.agency_id == agency_id)
    if action is not None:
        stmt = stmt.where(audit_log.c.action == action)
    return paginate(
        db,
        stmt,
        audit_log.c.id,
        audit.entry_from_row,
        limit=limit,
        cursor=cursor,
        newest_first=True,
    )
