"""Subteams: the agency's teams that draw from its one wallet."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select

from refill.db.database import Database, Tx
from refill.db.rows import record
from refill.db.schema import (
    subteams,
)
from refill.errors import (
    NotFound,
)
from refill.ids import new_id, wallet_id_for
from refill.services.names import clean_name
from refill.services.pages import Page, paginate


@dataclass(frozen=True, slots=True)
class Subteam:
    id: str
    agency_id: str
    name: str
    created_at: datetime


def create_subteam(db: Database, *, agency_id: str, name: str) -> Subteam:
    name = clean_name(name, "subteam")

    def work(tx: Tx) -> Subteam:
        subteam = Subteam(new_id("sub"), agency_id, name, tx.now)
        tx.conn.execute(
            insert(subteams).values(
                id=subteam.id,
                agency_id=agency_id,
                wallet_id=wallet_id_for(agency_id),
                name=name,
                created_at=tx.now,
            )
        )
        return subteam

    return db.write(work)


def _subteam_from_row(m: Any) -> Subteam:
    return record(Subteam, m)


def get_subteam(tx: Tx, agency_id: str, subteam_id: str) -> Subteam:
    row = tx.conn.execute(
        select(subteams).where(subteams.c.id == subteam_id, subteams.c.agency_id == agency_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"subteam {subteam_id} not found", code="subteam_not_found")
    return _subteam_from_row(row._mapping)


def list_subteams(
    db: Database, *, agency_id: str, limit: int = 50, cursor: str | None = None
) -> Page[Subteam]:
    stmt = select(subteams).where(subteams.c.agency_id == agency_id)
    return paginate(
        db, stmt, subteams.c.id, _subteam_from_row, limit=limit, cursor=cursor, newest_first=False
    )
