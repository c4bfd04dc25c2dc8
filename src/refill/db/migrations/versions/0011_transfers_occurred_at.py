"""usage reported late: transfers.occurred_at (the recording time for everything else)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 01:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE transfers SET occurred_at = created_at")
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.alter_column(
            "occurred_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
    op.create_index("ix_transfers_agency_occurred", "transfers", ["agency_id", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_transfers_agency_occurred", table_name="transfers")
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.drop_column("occurred_at")
