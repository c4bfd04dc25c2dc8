"""Subteams: the agency's teams that draw from its one wallet.

A name is unique in its agency whatever its case (the database's unique index on the
folded name decides, archived subteams included). An archived subteam keeps its history;
its keys are revoked when it is archived, and its usage and calls are refused
(``subteam_archived``) by the hot path's own statements until it is restored.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from refill import audit, ledger
from refill.db.database import Database, Tx
from refill.db.rows import record
from refill.db.schema import accounts, subteams, transfers
from refill.errors import Conflict, Forbidden, NotFound, ValidationFailed
from refill.ids import new_id, wallet_id_for
from refill.money import format_amount
from refill.reload.settings import UNSET
from refill.reload.trigger import agency_currency, agency_zone
from refill.services.names import clean_name
from refill.services.pages import Page, paginate
from refill.services.spend import Period

NAME_INDEX = "uq_subteams_agency_name"


@dataclass(frozen=True, slots=True)
class Subteam:
    id: str
    agency_id: str
    name: str
    created_at: datetime
    archived_at: datetime | None = None
    paused_at: datetime | None = None
    daily_spend_limit: int | None = None
    monthly_spend_limit: int | None = None
    held: int = 0
    # What it spent in the agency's day and month so far (read from the ledger).
    spent_today: int = 0
    spent_this_month: int = 0

    @property
    def archived(self) -> bool:
        return self.archived_at is not None

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    @property
    def limited(self) -> bool:
        return self.daily_spend_limit is not None or self.monthly_spend_limit is not None


@dataclass(frozen=True, slots=True)
class SubteamChange:
    """What an owner asks to change; None (a limit: ``UNSET``) leaves a field as it is, and
    a limit of None removes it."""

    name: str | None = None
    archived: bool | None = None
    paused: bool | None = None
    daily_spend_limit: int | None = UNSET
    monthly_spend_limit: int | None = UNSET


def name_key(name: str) -> str:
    """How subteam names are compared: trimmed and case-folded, in Python so that both
    engines agree (SQLite's ``lower`` folds ASCII only)."""
    return name.strip().casefold()


def check_limit(value: int | None, field: str) -> int | None:
    if value is not None and value <= 0:
        raise ValidationFailed(
            f"{field} must be more than zero, or null for no limit",
            code="invalid_amount",
            field=field,
        )
    return value


def archived_refusal(subteam_id: str) -> Forbidden:
    return Forbidden(f"subteam {subteam_id} is archived: restore it first", code="subteam_archived")


def _name_taken(name: str) -> Conflict:
    return Conflict(
        f"this agency already has a subteam called {name!r} (names ignore case; archived "
        "subteams count)",
        code="subteam_name_taken",
        field="name",
    )


def _is_name_taken(exc: IntegrityError) -> bool:
    # PostgreSQL names the index; SQLite names the indexed columns.
    message = str(exc.orig)
    return NAME_INDEX in message or "subteams.name_key" in message


def create_subteam(db: Database, *, agency_id: str, name: str, actor: str = "cli") -> Subteam:
    name = clean_name(name, "subteam")

    def work(tx: Tx) -> Subteam:
        subteam = Subteam(new_id("sub"), agency_id, name, tx.now)
        tx.conn.execute(
            insert(subteams).values(
                id=subteam.id,
                agency_id=agency_id,
                wallet_id=wallet_id_for(agency_id),
                name=name,
                name_key=name_key(name),
                created_at=tx.now,
            )
        )
        audit.record(
            tx,
            agency_id=agency_id,
            actor=actor,
            action="subteam.created",
            target_id=subteam.id,
            after={"name": name},
        )
        return subteam

    try:
        return db.write(work)
    except IntegrityError as exc:
        if _is_name_taken(exc):
            raise _name_taken(name) from None
        raise


def _subteam_from_row(m: Any) -> Subteam:
    return record(Subteam, m, spent_today=0, spent_this_month=0)


def get_subteam(tx: Tx, agency_id: str, subteam_id: str) -> Subteam:
    row = tx.conn.execute(
        select(subteams).where(subteams.c.id == subteam_id, subteams.c.agency_id == agency_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"subteam {subteam_id} not found", code="subteam_not_found")
    return _subteam_from_row(row._mapping)


def with_spend(tx: Tx, agency_id: str, teams: list[Subteam]) -> list[Subteam]:
    """The subteams with what each spent in the agency's day and month so far: one grouped
    read of this month's usage."""
    if not teams:
        return teams
    period = Period.at(tx.now, agency_zone(tx, agency_id))
    today = func.sum(
        case((transfers.c.occurred_at >= period.day_starts, transfers.c.amount), else_=0)
    )
    rows = tx.conn.execute(
        select(transfers.c.subteam_id, today, func.sum(transfers.c.amount))
        .where(
            transfers.c.agency_id == agency_id,
            transfers.c.kind == "usage",
            transfers.c.occurred_at >= period.month_starts,
            transfers.c.subteam_id.in_([t.id for t in teams]),
        )
        .group_by(transfers.c.subteam_id)
    ).all()
    spent = {row[0]: (int(row[1] or 0), int(row[2] or 0)) for row in rows}
    return [
        replace(
            t, spent_today=spent.get(t.id, (0, 0))[0], spent_this_month=spent.get(t.id, (0, 0))[1]
        )
        for t in teams
    ]


def read_subteam(db: Database, *, agency_id: str, subteam_id: str) -> Subteam:
    return db.read(
        lambda tx: with_spend(tx, agency_id, [get_subteam(tx, agency_id, subteam_id)])[0]
    )


def list_subteams(
    db: Database,
    *,
    agency_id: str,
    limit: int = 50,
    cursor: str | None = None,
    include_archived: bool = False,
) -> Page[Subteam]:
    """Oldest first; archived subteams only when asked for."""
    stmt = select(subteams).where(subteams.c.agency_id == agency_id)
    if not include_archived:
        stmt = stmt.where(subteams.c.archived_at.is_(None))
    page = paginate(
        db, stmt, subteams.c.id, _subteam_from_row, limit=limit, cursor=cursor, newest_first=False
    )
    data = db.read(lambda tx: with_spend(tx, agency_id, page.data))
    return Page(data, page.next_cursor)


def update_subteam(
    db: Database, *, agency_id: str, subteam_id: str, change: SubteamChange, actor: str
) -> Subteam:
    """Rename, archive or restore, as one step, each audited; what is already so writes
    nothing (an empty change returns the subteam as it is).

    Archiving revokes the subteam's working keys in the same transaction. Restoring lets
    its usage and calls through again; its revoked keys stay revoked (make new ones).
    """
    new_name = None if change.name is None else clean_name(change.name, "subteam")
    for field in ("daily_spend_limit", "monthly_spend_limit"):
        value = getattr(change, field)
        if value is not UNSET:
            check_limit(value, field)

    def work(tx: Tx) -> Subteam:
        # The agency's lock, which key changes take too: no key is made or rolled for a
        # subteam while it is being archived. It is also the first lock of every debit
        # and hold, so a pause or a limit applies to each one that commits after it.
        ledger.lock_wallet(tx, agency_id)
        subteam = get_subteam(tx, agency_id, subteam_id)
        if new_name is not None and new_name != subteam.name:
            subteam = _rename(tx, subteam, new_name, actor)
        if change.archived is not None and change.archived != subteam.archived:
            subteam = _set_archived(tx, subteam, change.archived, actor)
        if change.paused is not None and change.paused != subteam.paused:
            subteam = _set_paused(tx, subteam, change.paused, actor)
        subteam = _set_limits(tx, subteam, change, actor)
        refresh_rules_flag(tx, agency_id)
        return with_spend(tx, agency_id, [subteam])[0]

    try:
        return db.write(work)
    except IntegrityError as exc:
        if new_name is not None and _is_name_taken(exc):
            raise _name_taken(new_name) from None
        raise


def _rename(tx: Tx, subteam: Subteam, name: str, actor: str) -> Subteam:
    tx.conn.execute(
        update(subteams)
        .where(subteams.c.id == subteam.id)
        .values(name=name, name_key=name_key(name))
    )
    audit.record(
        tx,
        agency_id=subteam.agency_id,
        actor=actor,
        action="subteam.renamed",
        target_id=subteam.id,
        before={"name": subteam.name},
        after={"name": name},
    )
    return get_subteam(tx, subteam.agency_id, subteam.id)


def _set_archived(tx: Tx, subteam: Subteam, archived: bool, actor: str) -> Subteam:
    # keys.py imports this module (a key names its subteam): imported here, not on top.
    from refill.services.holds import release_subteam_holds
    from refill.services.keys import revoke_subteam_keys

    archived_at = tx.now if archived else None
    tx.conn.execute(
        update(subteams).where(subteams.c.id == subteam.id).values(archived_at=archived_at)
    )
    after: dict[str, Any] = {"archived_at": archived_at}
    if archived:
        after["revoked_key_ids"] = revoke_subteam_keys(
            tx, agency_id=subteam.agency_id, subteam_id=subteam.id, actor=actor
        )
        released = release_subteam_holds(tx, agency_id=subteam.agency_id, subteam_id=subteam.id)
        if released:
            after["released_hold_ids"] = released
    audit.record(
        tx,
        agency_id=subteam.agency_id,
        actor=actor,
        action="subteam.archived" if archived else "subteam.restored",
        target_id=subteam.id,
        before={"archived_at": subteam.archived_at},
        after=after,
    )
    return get_subteam(tx, subteam.agency_id, subteam.id)


def _set_paused(tx: Tx, subteam: Subteam, paused: bool, actor: str) -> Subteam:
    paused_at = tx.now if paused else None
    tx.conn.execute(update(subteams).where(subteams.c.id == subteam.id).values(paused_at=paused_at))
    audit.record(
        tx,
        agency_id=subteam.agency_id,
        actor=actor,
        action="subteam.paused" if paused else "subteam.resumed",
        target_id=subteam.id,
        before={"paused_at": subteam.paused_at},
        after={"paused_at": paused_at},
    )
    return get_subteam(tx, subteam.agency_id, subteam.id)


def _set_limits(tx: Tx, subteam: Subteam, change: SubteamChange, actor: str) -> Subteam:
    """New spend limits, audited. From none to some, the counters are cleared: the next
    debit counts the day and month again from the ledger."""
    daily = (
        subteam.daily_spend_limit if change.daily_spend_limit is UNSET else change.daily_spend_limit
    )
    monthly = (
        subteam.monthly_spend_limit
        if change.monthly_spend_limit is UNSET
        else change.monthly_spend_limit
    )
    if (daily, monthly) == (subteam.daily_spend_limit, subteam.monthly_spend_limit):
        return subteam
    values: dict[str, Any] = {"daily_spend_limit": daily, "monthly_spend_limit": monthly}
    if not subteam.limited:
        values.update(spend_day=None, spent_day=0, spend_month=None, spent_month=0)
    tx.conn.execute(update(subteams).where(subteams.c.id == subteam.id).values(**values))
    currency = agency_currency(tx, subteam.agency_id)

    def shown(d: int | None, m: int | None) -> dict[str, str | None]:
        return {
            "daily_spend_limit": None if d is None else format_amount(d, currency),
            "monthly_spend_limit": None if m is None else format_amount(m, currency),
        }

    audit.record(
        tx,
        agency_id=subteam.agency_id,
        actor=actor,
        action="subteam.spend_limits_changed",
        target_id=subteam.id,
        before=shown(subteam.daily_spend_limit, subteam.monthly_spend_limit),
        after=shown(daily, monthly),
    )
    return get_subteam(tx, subteam.agency_id, subteam.id)


def refresh_rules_flag(tx: Tx, agency_id: str) -> None:
    """Whether the wallet's usage takes the checked path: while a subteam that is not
    archived is paused or limited (caller holds the wallet's lock)."""
    wallet_id = wallet_id_for(agency_id)
    ruled = select(subteams.c.id).where(
        subteams.c.wallet_id == wallet_id,
        subteams.c.archived_at.is_(None),
        (subteams.c.paused_at.is_not(None))
        | (subteams.c.daily_spend_limit.is_not(None))
        | (subteams.c.monthly_spend_limit.is_not(None)),
    )
    tx.conn.execute(
        update(accounts).where(accounts.c.id == wallet_id).values(subteam_rules=ruled.exists())
    )


def forget_counters(tx: Tx, agency_id: str) -> None:
    """The agency's day and month changed meaning (a new time zone): each limited
    subteam counts them again from the ledger at its next debit (wallet locked)."""
    tx.conn.execute(
        update(subteams)
        .where(subteams.c.agency_id == agency_id)
        .values(spend_day=None, spent_day=0, spend_month=None, spent_month=0)
    )
