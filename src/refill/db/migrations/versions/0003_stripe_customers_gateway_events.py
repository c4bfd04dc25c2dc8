"""stripe customers, gateway events

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 22:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agencies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stripe_customer_id", sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint(
            op.f("uq_agencies_stripe_customer_id"), ["stripe_customer_id"]
        )
    op.create_table(
        "gateway_events",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("gateway", sa.String(length=16), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.String(length=255), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateway_events")),
    )


def downgrade() -> None:
    op.drop_table("gateway_events")
    with op.batch_alter_table("agencies", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_agencies_stripe_customer_id"), type_="unique")
        batch_op.drop_column("stripe_customer_id")
