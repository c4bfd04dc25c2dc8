"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24 21:25:08.899205
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agencies",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agencies")),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("agency_id", sa.String(length=40), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("balance", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("reload_below", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind <> 'wallet' OR agency_id IS NOT NULL", name=op.f("ck_accounts_wallet_has_agency")
        ),
        sa.CheckConstraint(
            "kind <> 'wallet' OR balance >= 0", name=op.f("ck_accounts_wallet_not_negative")
        ),
        sa.CheckConstraint(
            "kind = 'wallet' OR agency_id IS NULL", name=op.f("ck_accounts_system_has_no_agency")
        ),
        sa.CheckConstraint(
            "kind = 'wallet' OR balance = 0", name=op.f("ck_accounts_system_balance_unused")
        ),
        sa.CheckConstraint(
            "kind IN ('wallet', 'card_funding', 'manual_funding', 'usage_revenue', 'granted_credits')",
            name=op.f("ck_accounts_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_accounts_agency_id_agencies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
    )
    op.create_index(
        "uq_accounts_one_system_account",
        "accounts",
        ["kind", "currency"],
        unique=True,
        sqlite_where=sa.text("agency_id IS NULL"),
        postgresql_where=sa.text("agency_id IS NULL"),
    )
    op.create_index(
        "uq_accounts_one_wallet_per_agency",
        "accounts",
        ["agency_id"],
        unique=True,
        sqlite_where=sa.text("kind = 'wallet'"),
        postgresql_where=sa.text("kind = 'wallet'"),
    )

    op.create_table(
        "payment_methods",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("agency_id", sa.String(length=40), nullable=False),
        sa.Column("gateway", sa.String(length=16), nullable=False),
        sa.Column("token", sa.String(length=255), nullable=False),
        sa.Column("brand", sa.String(length=32), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("exp_month", sa.Integer(), nullable=False),
        sa.Column("exp_year", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_payment_methods_agency_id_agencies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_methods")),
        sa.UniqueConstraint("agency_id", "gateway", "token", name="uq_payment_methods_token"),
    )
    op.create_index(
        op.f("ix_payment_methods_agency_id"), "payment_methods", ["agency_id"], unique=False
    )

    op.create_table(
        "auto_reload_settings",
        sa.Column("wallet_id", sa.String(length=40), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("threshold", sa.BigInteger(), nullable=True),
        sa.Column("reload_amount", sa.BigInteger(), nullable=True),
        sa.Column("payment_method_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("suspended_reason", sa.String(length=500), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('off', 'active', 'suspended')", name=op.f("ck_auto_reload_settings_status")
        ),
        sa.CheckConstraint(
            "reload_amount > 0", name=op.f("ck_auto_reload_settings_reload_amount_positive")
        ),
        sa.CheckConstraint(
            "threshold >= 0", name=op.f("ck_auto_reload_settings_threshold_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["payment_method_id"],
            ["payment_methods.id"],
            name=op.f("fk_auto_reload_settings_payment_method_id_payment_methods"),
        ),
        sa.ForeignKeyConstraint(
            ["wallet_id"], ["accounts.id"], name=op.f("fk_auto_reload_settings_wallet_id_accounts")
        ),
        sa.PrimaryKeyConstraint("wallet_id", name=op.f("pk_auto_reload_settings")),
    )
    op.create_table(
        "reload_attempts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("agency_id", sa.String(length=40), nullable=False),
        sa.Column("wallet_id", sa.String(length=40), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payment_method_id", sa.String(length=40), nullable=False),
        sa.Column("idempotency_key", sa.String(length=80), nullable=False),
        sa.Column("request_key", sa.String(length=255), nullable=True),
        sa.Column("gateway_payment_id", sa.String(length=255), nullable=True),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("failure_message", sa.String(length=500), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'charging', 'succeeded', 'failed', 'requires_action', 'blocked', 'canceled')",
            name=op.f("ck_reload_attempts_status"),
        ),
        sa.CheckConstraint(
            "trigger IN ('auto', 'manual')", name=op.f("ck_reload_attempts_trigger")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_reload_attempts_amount_positive")),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_reload_attempts_agency_id_agencies")
        ),
        sa.ForeignKeyConstraint(
            ["payment_method_id"],
            ["payment_methods.id"],
            name=op.f("fk_reload_attempts_payment_method_id_payment_methods"),
        ),
        sa.ForeignKeyConstraint(
            ["wallet_id"], ["accounts.id"], name=op.f("fk_reload_attempts_wallet_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reload_attempts")),
        sa.UniqueConstraint("agency_id", "request_key", name="uq_reload_attempts_request_key"),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_reload_attempts_idempotency_key")),
    )
    op.create_index(
        "ix_reload_attempts_agency_newest", "reload_attempts", ["agency_id", "id"], unique=False
    )
    op.create_index("ix_reload_attempts_status", "reload_attempts", ["status"], unique=False)
    op.create_index(
        "uq_reload_attempts_one_active_auto",
        "reload_attempts",
        ["wallet_id"],
        unique=True,
        sqlite_where=sa.text(
            "trigger = 'auto' AND status IN ('pending', 'charging', 'requires_action')"
        ),
        postgresql_where=sa.text(
            "trigger = 'auto' AND status IN ('pending', 'charging', 'requires_action')"
        ),
    )

    op.create_table(
        "subteams",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("agency_id", sa.String(length=40), nullable=False),
        sa.Column("wallet_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_subteams_agency_id_agencies")
        ),
        sa.ForeignKeyConstraint(
            ["wallet_id"], ["accounts.id"], name=op.f("fk_subteams_wallet_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subteams")),
        sa.UniqueConstraint("id", "agency_id", name="uq_subteams_id_agency"),
    )
    op.create_index(op.f("ix_subteams_agency_id"), "subteams", ["agency_id"], unique=False)

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("agency_id", sa.String(length=40), nullable=False),
        sa.Column("subteam_id", sa.String(length=40), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(role = 'subteam') = (subteam_id IS NOT NULL)",
            name=op.f("ck_api_keys_subteam_key_has_subteam"),
        ),
        sa.CheckConstraint("role IN ('owner', 'subteam')", name=op.f("ck_api_keys_role")),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_api_keys_agency_id_agencies")
        ),
        sa.ForeignKeyConstraint(
            ["subteam_id"], ["subteams.id"], name=op.f("fk_api_keys_subteam_id_subteams")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("digest", name=op.f("uq_api_keys_digest")),
    )
    op.create_index(op.f("ix_api_keys_agency_id"), "api_keys", ["agency_id"], unique=False)

    op.create_table(
        "transfers",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("agency_id", sa.String(length=40), nullable=False),
        sa.Column("debit_account_id", sa.String(length=40), nullable=False),
        sa.Column("credit_account_id", sa.String(length=40), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=False),
        sa.Column("subteam_id", sa.String(length=40), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("metadata", sa.Text(), nullable=True),
        sa.Column("wallet_balance_after", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('usage', 'auto_reload', 'manual_reload', 'grant', 'adjustment')",
            name=op.f("ck_transfers_kind"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_transfers_amount_positive")),
        sa.CheckConstraint(
            "debit_account_id <> credit_account_id", name=op.f("ck_transfers_distinct_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_transfers_agency_id_agencies")
        ),
        sa.ForeignKeyConstraint(
            ["credit_account_id"],
            ["accounts.id"],
            name=op.f("fk_transfers_credit_account_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["debit_account_id"],
            ["accounts.id"],
            name=op.f("fk_transfers_debit_account_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["subteam_id", "agency_id"],
            ["subteams.id", "subteams.agency_id"],
            name="fk_transfers_subteam",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfers")),
        sa.UniqueConstraint("agency_id", "kind", "reference", name="uq_transfers_reference"),
    )
    op.create_index("ix_transfers_agency_newest", "transfers", ["agency_id", "id"], unique=False)
    op.create_index("ix_transfers_credit", "transfers", ["credit_account_id", "id"], unique=False)
    op.create_index("ix_transfers_debit", "transfers", ["debit_account_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_transfers_debit", table_name="transfers")
    op.drop_index("ix_transfers_credit", table_name="transfers")
    op.drop_index("ix_transfers_agency_newest", table_name="transfers")

    op.drop_table("transfers")
    op.drop_index(op.f("ix_api_keys_agency_id"), table_name="api_keys")

    op.drop_table("api_keys")
    op.drop_index(op.f("ix_subteams_agency_id"), table_name="subteams")

    op.drop_table("subteams")
    op.drop_index(
        "uq_reload_attempts_one_active_auto",
        sqlite_where=sa.text(
            "trigger = 'auto' AND status IN ('pending', 'charging', 'requires_action')"
        ),
        postgresql_where=sa.text(
            "trigger = 'auto' AND status IN ('pending', 'charging', 'requires_action')"
        ),
        table_name="reload_attempts",
    )
    op.drop_index("ix_reload_attempts_status", table_name="reload_attempts")
    op.drop_index("ix_reload_attempts_agency_newest", table_name="reload_attempts")

    op.drop_table("reload_attempts")
    op.drop_table("auto_reload_settings")
    op.drop_index(op.f("ix_payment_methods_agency_id"), table_name="payment_methods")

    op.drop_table("payment_methods")
    op.drop_index(
        "uq_accounts_one_wallet_per_agency",
        sqlite_where=sa.text("kind = 'wallet'"),
        postgresql_where=sa.text("kind = 'wallet'"),
        table_name="accounts",
    )
    op.drop_index(
        "uq_accounts_one_system_account",
        sqlite_where=sa.text("agency_id IS NULL"),
        postgresql_where=sa.text("agency_id IS NULL"),
        table_name="accounts",
    )

    op.drop_table("accounts")
    op.drop_table("agencies")
