"""subteams: names unique per agency whatever their case (existing duplicates suffixed),
and archiving

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from refill.ids import new_id

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_MAX_NAME = 200


def upgrade() -> None:
    # Added in place, never by copying the table: SQLite cannot drop a table that
    # transfers and keys refer to while foreign keys are enforced.
    with op.batch_alter_table("subteams", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("name_key", sa.String(length=600), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))
    _key_names_and_suffix_duplicates()
    op.create_index("uq_subteams_agency_name", "subteams", ["agency_id", "name_key"], unique=True)


def _name_key(name: str) -> str:
    """As ``services.subteams.name_key`` folds a name today (a migration keeps its own copy)."""
    return name.strip().casefold()


def _key_names_and_suffix_duplicates() -> None:
    """Each agency's oldest subteam keeps a name; a later one with the same name (whatever
    its case) becomes "Name (2)", "Name (3)", ..., in creation order, with a ``system``
    audit entry so the owner sees why."""
    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT id, agency_id, name FROM subteams ORDER BY agency_id, created_at, id")
    ).all()
    by_agency: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for subteam_id, agency_id, name in rows:
        by_agency[agency_id].append((subteam_id, name))
    now = datetime.now(UTC)
    stamp = now.replace(tzinfo=None) if conn.dialect.name == "sqlite" else now
    for agency_id, subteams in by_agency.items():
        # Names no duplicate may take: every original one (a later "Sales (2)" keeps its
        # name too), and each one given out here.
        taken = {_name_key(name) for _, name in subteams}
        seen: set[str] = set()
        for subteam_id, name in subteams:
            new_name = name
            if _name_key(name) in seen:
                new_name = _free_name(name, taken)
                taken.add(_name_key(new_name))
                _audit_rename(conn, agency_id, subteam_id, name, new_name, stamp)
            seen.add(_name_key(new_name))
            conn.execute(
                sa.text("UPDATE subteams SET name = :name, name_key = :key WHERE id = :id"),
                {"name": new_name, "key": _name_key(new_name), "id": subteam_id},
            )


def _free_name(name: str, taken: set[str]) -> str:
    number = 2
    while True:
        suffix = f" ({number})"
        candidate = name[: _MAX_NAME - len(suffix)] + suffix
        if _name_key(candidate) not in taken:
            return candidate
        number += 1


def _audit_rename(
    conn: sa.Connection, agency_id: str, subteam_id: str, old: str, new: str, stamp: datetime
) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO audit_log (id, agency_id, actor, action, target_id, before, after, "
            "created_at) VALUES (:id, :agency_id, 'system', 'subteam.renamed', :subteam_id, "
            ":before, :after, :now)"
        ),
        {
            "id": new_id("aud"),
            "agency_id": agency_id,
            "subteam_id": subteam_id,
            "before": json.dumps(
                {"name": old, "reason": "an older subteam of the agency has this name (0008)"}
            ),
            "after": json.dumps({"name": new}),
            "now": stamp,
        },
    )


def downgrade() -> None:
    # In place as well (SQLite 3.35+ drops a column without copying the table).
    op.drop_index("uq_subteams_agency_name", table_name="subteams")
    op.drop_column("subteams", "archived_at")
    op.drop_column("subteams", "name_key")
