"""events (the outbox), webhook endpoints and deliveries, e-mail, receipts, invitations,
password resets; billing details and alert levels; e-mail choices; card expiry notices

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 16:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "events",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("agency_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_events_agency_id_agencies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_agency_newest", ["agency_id", "id"], unique=False)
        batch_op.create_index(
            "ix_events_undispatched",
            ["id"],
            unique=False,
            sqlite_where=sa.text("dispatched_at IS NULL"),
            postgresql_where=sa.text("dispatched_at IS NULL"),
        )

    op.create_table(
        "invitations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("agency_id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("invited_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role IN ('owner', 'admin', 'member')", name=op.f("ck_invitations_role")
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_invitations_agency_id_agencies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
    )
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invitations_agency_id"), ["agency_id"], unique=False)

    op.create_table(
        "password_resets",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_password_resets_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_password_resets")),
    )
    with op.batch_alter_table("password_resets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_password_resets_user_id"), ["user_id"], unique=False)

    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("agency_id", sa.String(length=40), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("event_types", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("secret_generation", sa.Integer(), server_default="1", nullable=False),
        sa.Column("previous_valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_webhook_endpoints_agency_id_agencies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_endpoints_agency_id"), ["agency_id"], unique=False
        )

    op.create_table(
        "emails",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("agency_id", sa.String(length=40), nullable=True),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("to_addresses", sa.Text(), nullable=True),
        sa.Column("event_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'failed')", name=op.f("ck_emails_status")
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_emails_agency_id_agencies")
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_emails_event_id_events")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_emails")),
        sa.UniqueConstraint("event_id", "template", name="uq_emails_event_template"),
    )
    with op.batch_alter_table("emails", schema=None) as batch_op:
        batch_op.create_index("ix_emails_due", ["status", "next_attempt_at"], unique=False)

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("agency_id", sa.String(length=40), nullable=False),
        sa.Column("endpoint_id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed')",
            name=op.f("ck_webhook_deliveries_status"),
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_webhook_deliveries_agency_id_agencies")
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_webhook_deliveries_event_id_events")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_endpoint_event"),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_deliveries_due", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            "ix_webhook_deliveries_endpoint_newest", ["endpoint_id", "id"], unique=False
        )

    op.create_table(
        "receipts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("agency_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.String(length=40), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("local_date", sa.String(length=10), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("agency_name", sa.String(length=200), nullable=False),
        sa.Column("billing_address", sa.String(length=500), nullable=True),
        sa.Column("tax_id", sa.String(length=64), nullable=True),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("card_brand", sa.String(length=32), nullable=False),
        sa.Column("card_last4", sa.String(length=4), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_receipts_agency_id_agencies")
        ),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["reload_attempts.id"],
            name=op.f("fk_receipts_attempt_id_reload_attempts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_receipts")),
        sa.UniqueConstraint("agency_id", "number", name="uq_receipts_agency_number"),
        sa.UniqueConstraint("attempt_id", name=op.f("uq_receipts_attempt_id")),
    )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("alert_below", sa.BigInteger(), nullable=True))

    with op.batch_alter_table("agencies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("billing_emails", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("billing_address", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("tax_id", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("receipt_counter", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("low_balance_alert", sa.BigInteger(), nullable=True))
        batch_op.create_check_constraint("receipt_counter_not_negative", "receipt_counter >= 0")

    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "receipt_emails", sa.Boolean(), server_default=sa.text("(true)"), nullable=False
            )
        )
        batch_op.add_column(
            sa.Column(
                "low_balance_emails", sa.Boolean(), server_default=sa.text("(true)"), nullable=False
            )
        )

    with op.batch_alter_table("payment_methods", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("expiry_notices", sa.String(length=32), server_default="", nullable=False)
        )

    # The alert level in effect: the threshold while auto-reload is off or suspended.
    op.execute(
        "UPDATE accounts SET alert_below = (SELECT s.threshold FROM auto_reload_settings s "
        "WHERE s.wallet_id = accounts.id AND s.status IN ('off', 'suspended')) "
        "WHERE kind = 'wallet'"
    )


def downgrade() -> None:

    with op.batch_alter_table("payment_methods", schema=None) as batch_op:
        batch_op.drop_column("expiry_notices")

    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_column("low_balance_emails")
        batch_op.drop_column("receipt_emails")

    with op.batch_alter_table("agencies", schema=None) as batch_op:
        batch_op.drop_constraint("receipt_counter_not_negative", type_="check")
        batch_op.drop_column("low_balance_alert")
        batch_op.drop_column("receipt_counter")
        batch_op.drop_column("tax_id")
        batch_op.drop_column("billing_address")
        batch_op.drop_column("billing_emails")

    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("alert_below")

    op.drop_table("receipts")
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_endpoint_newest")
        batch_op.drop_index("ix_webhook_deliveries_due")

    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("emails", schema=None) as batch_op:
        batch_op.drop_index("ix_emails_due")

    op.drop_table("emails")
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_endpoints_agency_id"))

    op.drop_table("webhook_endpoints")
    with op.batch_alter_table("password_resets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_password_resets_user_id"))

    op.drop_table("password_resets")
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invitations_agency_id"))

    op.drop_table("invitations")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_events_undispatched",
            sqlite_where=sa.text("dispatched_at IS NULL"),
            postgresql_where=sa.text("dispatched_at IS NULL"),
        )
        batch_op.drop_index("ix_events_agency_newest")

    op.drop_table("events")
