"""backup cards: the ordered list of cards auto-reload charges, with the hard-declined ones
skipped

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 01:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auto_reload_cards",
        sa.Column("wallet_id", sa.String(length=40), nullable=False),
        sa.Column("payment_method_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("skipped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("skip_reason", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "position >= 0", name=op.f("ck_auto_reload_cards_position_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["wallet_id"], ["accounts.id"], name=op.f("fk_auto_reload_cards_wallet_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["payment_method_id"],
            ["payment_methods.id"],
            name=op.f("fk_auto_reload_cards_payment_method_id_payment_methods"),
        ),
        sa.PrimaryKeyConstraint(
            "wallet_id", "payment_method_id", name=op.f("pk_auto_reload_cards")
        ),
        sa.UniqueConstraint("wallet_id", "position", name="uq_auto_reload_cards_position"),
    )
    # Every saved card becomes a list of one.
    op.execute(
        "INSERT INTO auto_reload_cards (wallet_id, payment_method_id, position) "
        "SELECT wallet_id, payment_method_id, 0 FROM auto_reload_settings "
        "WHERE payment_method_id IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("auto_reload_cards")
