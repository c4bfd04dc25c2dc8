"""Subteams: the agency's teams that draw from its one wallet.

A name is unique in its agency whatever its case (the database's unique index on the
folded name decides, archived subteams included). An archived subteam keeps its history;
its keys are revoked when it is archived, and its usage and calls are refused
(``subteam_archived``) by the hot path's own statements until it is restored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from refill import audit, ledger
from refill.db.database import Database, Tx
from refill.db.rows import record
from refill.db.schema import (
    subteams,
)
from refill.errors import (
    Conflict,
    Forbidden,
    NotFound,
)
from refill.ids import new_id, wallet_id_for
from refill.services.names import clean_name
from refill.services.pages import Page, paginate

NAME_INDEX = "uq_subteams_agency_name"


@dataclass(frozen=True, slots=True)
class Subteam:
    id: str
    agency_id: str
    name: str
    created_at: datetime
    archived_at: datetime | None = None

    @property
    def archived(self) -> bool:
        return self.archived_at is not None


@dataclass(frozen=True, slots=True)
class SubteamChange:
    """What an owner asks to change; None leaves a field as it is."""

    name: str | None = None
    archived: bool | None = None


def name_key(name: str) -> str:
    """How subteam names are compared: trimmed and case-folded, in Python so that both
    engines agree (SQLite's ``lower`` folds ASCII only)."""
    return name.strip().casefold()


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
    return record(Subteam, m)


def get_subteam(tx: Tx, agency_id: str, subteam_id: str) -> Subteam:
    row = tx.conn.execute(
        select(subteams).where(subteams.c.id == subteam_id, subteams.c.agency_id == agency_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"subteam {subteam_id} not found", code="subteam_not_found")
    return _subteam_from_row(row._mapping)


def read_subteam(db: Database, *, agency_id: str, subteam_id: str) -> Subteam:
    return db.read(lambda tx: get_subteam(tx, agency_id, subteam_id))


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
    return paginate(
        db, stmt, subteams.c.id, _subteam_from_row, limit=limit, cursor=cursor, newest_first=False
    )


def update_subteam(
    db: Database, *, agency_id: str, subteam_id: str, change: SubteamChange, actor: str
) -> Subteam:
    """Rename, archive or restore, as one step, each audited; what is already so writes
    nothing (an empty change returns the subteam as it is).

    Archiving revokes the subteam's working keys in the same transaction. Restoring lets
    its usage and calls through again; its revoked keys stay revoked (make new ones).
    """
    new_name = None if change.name is None else clean_name(change.name, "subteam")

    def work(tx: Tx) -> Subteam:
        # The agency's lock, which key changes take too: no key is made or rolled for a
        # subteam while it is being archived.
        ledger.lock_wallet(tx, agency_id)
        subteam = get_subteam(tx, agency_id, subteam_id)
        if new_name is not None and new_name != subteam.name:
            subteam = _rename(tx, subteam, new_name, actor)
        if change.archived is not None and change.archived != subteam.archived:
            subteam = _set_archived(tx, subteam, change.archived, actor)
        return subteam

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
