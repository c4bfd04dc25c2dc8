"""failure policy, safety rails, audit log

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 21:44:46.039576
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("agency_id", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_id", sa.String(length=40), nullable=True),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_audit_log_agency_id_agencies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_agency_newest", ["agency_id", "id"], unique=False)

    with op.batch_alter_table("auto_reload_settings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("mode", sa.String(length=16), server_default="fixed", nullable=False)
        )
        batch_op.add_column(sa.Column("target_balance", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("monthly_cap", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("daily_limit", sa.Integer(), server_default="10", nullable=False)
        )
        batch_op.add_column(sa.Column("blocked_rail", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_check_constraint(
            op.f("ck_auto_reload_settings_mode"), "mode IN ('fixed', 'target')"
        )
        batch_op.create_check_constraint(
            op.f("ck_auto_reload_settings_monthly_cap_positive"), "monthly_cap > 0"
        )
        batch_op.create_check_constraint(
            op.f("ck_auto_reload_settings_daily_limit_positive"), "daily_limit > 0"
        )

    with op.batch_alter_table("reload_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("previous_attempt_id", sa.String(length=40), nullable=True))
        batch_op.add_column(
            sa.Column("retry_number", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("next_action", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            "ix_reload_attempts_wallet_created", ["wallet_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("reload_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_reload_attempts_wallet_created")
        batch_op.drop_column("blocked_until")
        batch_op.drop_column("next_action")
        batch_op.drop_column("retry_number")
        batch_op.drop_column("previous_attempt_id")
        batch_op.drop_column("not_before")

    with op.batch_alter_table("auto_reload_settings", schema=None) as batch_op:
        batch_op.drop_constraint(
            op.f("ck_auto_reload_settings_daily_limit_positive"), type_="check"
        )
        batch_op.drop_constraint(
            op.f("ck_auto_reload_settings_monthly_cap_positive"), type_="check"
        )
        batch_op.drop_constraint(op.f("ck_auto_reload_settings_mode"), type_="check")
        batch_op.drop_column("blocked_until")
        batch_op.drop_column("blocked_rail")
        batch_op.drop_column("daily_limit")
        batch_op.drop_column("monthly_cap")
        batch_op.drop_column("target_balance")
        batch_op.drop_column("mode")

    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_agency_newest")

    op.drop_table("audit_log")
