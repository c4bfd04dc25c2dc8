"""agencies.gateway_customer_id: the customer column is named for any gateway

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 17:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Two steps: SQLite's table copy does not carry a constraint on a column renamed in
    # the same batch.
    with op.batch_alter_table("agencies", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_agencies_stripe_customer_id"), type_="unique")
        batch_op.alter_column("stripe_customer_id", new_column_name="gateway_customer_id")
    with op.batch_alter_table("agencies", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            op.f("uq_agencies_gateway_customer_id"), ["gateway_customer_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("agencies", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_agencies_gateway_customer_id"), type_="unique")
        batch_op.alter_column("gateway_customer_id", new_column_name="stripe_customer_id")
    with op.batch_alter_table("agencies", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            op.f("uq_agencies_stripe_customer_id"), ["stripe_customer_id"]
        )
