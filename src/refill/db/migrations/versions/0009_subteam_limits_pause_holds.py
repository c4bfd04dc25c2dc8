"""subteams inside one wallet: spend limits and counters, pause, held credits, holds, and
the agency's call floor

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_ACTIVE = sa.text("status = 'active'")


def upgrade() -> None:
    # SQLite adds a CHECK only by copying the table (batch mode; foreign keys are off while
    # migrations run, and checked before the commit); PostgreSQL alters it in place.
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("held", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column("call_floor", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "subteam_rules", sa.Boolean(), server_default=sa.text("(false)"), nullable=False
            )
        )
        batch_op.create_check_constraint(op.f("ck_accounts_held_not_negative"), "held >= 0")
        batch_op.create_check_constraint(op.f("ck_accounts_held_covered"), "balance >= held")
        batch_op.create_check_constraint(
            op.f("ck_accounts_call_floor_not_negative"), "call_floor >= 0"
        )
    with op.batch_alter_table("subteams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("daily_spend_limit", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("monthly_spend_limit", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("held", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("spend_day", sa.String(length=10), nullable=True))
        batch_op.add_column(
            sa.Column("spent_day", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("spend_month", sa.String(length=7), nullable=True))
        batch_op.add_column(
            sa.Column("spent_month", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.create_check_constraint(
            op.f("ck_subteams_daily_spend_limit_positive"), "daily_spend_limit > 0"
        )
        batch_op.create_check_constraint(
            op.f("ck_subteams_monthly_spend_limit_positive"), "monthly_spend_limit > 0"
        )
        batch_op.create_check_constraint(op.f("ck_subteams_subteam_held_not_negative"), "held >= 0")
        batch_op.create_check_constraint(
            op.f("ck_subteams_spent_not_negative"), "spent_day >= 0 AND spent_month >= 0"
        )
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("uncovered", sa.BigInteger(), nullable=True))
        batch_op.create_check_constraint(op.f("ck_transfers_uncovered_positive"), "uncovered > 0")
    op.create_table(
        "holds",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("agency_id", sa.String(length=40), nullable=False),
        sa.Column("wallet_id", sa.String(length=40), nullable=False),
        sa.Column("subteam_id", sa.String(length=40), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("transfer_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("amount > 0", name=op.f("ck_holds_amount_positive")),
        sa.CheckConstraint(
            "status IN ('active', 'settled', 'released', 'expired')", name=op.f("ck_holds_status")
        ),
        sa.CheckConstraint(
            "(status = 'active') = (closed_at IS NULL)",
            name=op.f("ck_holds_closed_when_ended"),
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_holds_agency_id_agencies")
        ),
        sa.ForeignKeyConstraint(
            ["wallet_id"], ["accounts.id"], name=op.f("fk_holds_wallet_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["transfer_id"], ["transfers.id"], name=op.f("fk_holds_transfer_id_transfers")
        ),
        sa.ForeignKeyConstraint(
            ["subteam_id", "agency_id"],
            ["subteams.id", "subteams.agency_id"],
            name=op.f("fk_holds_subteam"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holds")),
    )
    op.create_index("ix_holds_agency_newest", "holds", ["agency_id", "id"])
    op.create_index(
        "ix_holds_active_expiry",
        "holds",
        ["expires_at"],
        sqlite_where=_ACTIVE,
        postgresql_where=_ACTIVE,
    )
    op.create_index(
        "ix_holds_active_subteam",
        "holds",
        ["subteam_id"],
        sqlite_where=_ACTIVE,
        postgresql_where=_ACTIVE,
    )


def downgrade() -> None:
    op.drop_table("holds")
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_transfers_uncovered_positive"), type_="check")
        batch_op.drop_column("uncovered")
    with op.batch_alter_table("subteams", schema=None) as batch_op:
        for name in (
            "spent_not_negative",
            "subteam_held_not_negative",
            "monthly_spend_limit_positive",
            "daily_spend_limit_positive",
        ):
            batch_op.drop_constraint(op.f(f"ck_subteams_{name}"), type_="check")
        for column in (
            "spent_month",
            "spend_month",
            "spent_day",
            "spend_day",
            "held",
            "monthly_spend_limit",
            "daily_spend_limit",
            "paused_at",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        for name in ("call_floor_not_negative", "held_covered", "held_not_negative"):
            batch_op.drop_constraint(op.f(f"ck_accounts_{name}"), type_="check")
        batch_op.drop_column("subteam_rules")
        batch_op.drop_column("call_floor")
        batch_op.drop_column("held")
