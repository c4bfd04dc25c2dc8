"""Agencies: the top-level team that owns one wallet, its time zone, and its audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from zoneinfo import available_timezones

from sqlalchemy import insert, select, update

from refill import audit, ledger
from refill.db.database import Database, Tx
from refill.db.rows import record
from refill.db.schema import (
    agencies,
    audit_log,
)
from refill.errors import (
    NotFound,
    ValidationFailed,
)
from refill.ids import new_id
from refill.money import check_currency
from refill.roles import KeyRole
from refill.services.keys import IssuedKey, issue_key
from refill.services.names import clean_name
from refill.services.pages import Page, paginate


@dataclass(frozen=True, slots=True)
class Agency:
    id: str
    name: str
    currency: str
    timezone: str
    created_at: datetime
    # The agency's customer at the gateway (Stripe), once it saved a card there.
    gateway_customer_id: str | None = None


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
        ledger.create_wallet(tx, agency_id=agency.id, currency=currency)
        return agency, issue_key(tx, agency_id=agency.id, role=KeyRole.OWNER, subteam_id=None)

    return db.write(work)


def load_agency(tx: Tx, agency_id: str) -> Agency:
    row = tx.conn.execute(select(agencies).where(agencies.c.id == agency_id)).one_or_none()
    if row is None:
        raise NotFound(f"agency {agency_id} not found")
    return record(Agency, row._mapping)


def get_agency(db: Database, agency_id: str) -> Agency:
    return db.read(lambda tx: load_agency(tx, agency_id))


@cache
def _time_zones() -> frozenset[str]:
    """Real IANA zones only: ``ZoneInfo("America")`` fails in other ways than a bad name."""
    return frozenset(available_timezones())


def set_agency_timezone(db: Database, *, agency_id: str, timezone: str, actor: str) -> Agency:
    """The time zone in which the daily limit and the monthly cap count (IANA name)."""
    if timezone not in _time_zones():
        raise ValidationFailed(
            f"{timezone!r} is not an IANA time zone such as 'Europe/Paris' or 'UTC'",
            code="invalid_timezone",
            field="timezone",
        )

    def work(tx: Tx) -> Agency:
        before = load_agency(tx, agency_id)
        tx.conn.execute(
            update(agencies).where(agencies.c.id == agency_id).values(timezone=timezone)
        )
        audit.record(
            tx,
            agency_id=agency_id,
            actor=actor,
            action="agency.timezone_changed",
            target_id=agency_id,
            before={"timezone": before.timezone},
            after={"timezone": timezone},
        )
        return load_agency(tx, agency_id)

    return db.write(work)


def list_audit_log(
    db: Database, *, agency_id: str, limit: int = 50, cursor: str | None = None
) -> Page[audit.AuditEntry]:
    stmt = select(audit_log).where(audit_log.c.agency_id == agency_id)
    return paginate(
        db,
        stmt,
        audit_log.c.id,
        audit.entry_from_row,
        limit=limit,
        cursor=cursor,
        newest_first=True,
    )
