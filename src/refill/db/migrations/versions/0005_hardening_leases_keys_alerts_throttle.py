"""hardening: charge leases and cancel requests, key names/expiry/last use, operator alerts,
sign-in throttle; clamp auto-reload settings to the new per-currency bounds

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 15:00:00
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from refill.ids import new_id

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The bounds as they stood when this migration was written (money.CURRENCIES): USD's
# figures times each currency's scale. Frozen here so the migration never changes meaning.
_SCALE = {
    "USD": 1,
    "EUR": 1,
    "GBP": 1,
    "CAD": 1,
    "AUD": 1,
    "NZD": 1,
    "CHF": 1,
    "SEK": 10,
    "NOK": 10,
    "DKK": 10,
    "PLN": 5,
    "CZK": 25,
    "SGD": 1,
    "HKD": 10,
    "MXN": 20,
    "BRL": 5,
    "INR": 100,
    "ZAR": 20,
    "JPY": 100,
    "KRW": 1000,
}
_UNIT = 1_000_000
_MAX_DAILY_LIMIT = 50


def _bounds(currency: str) -> dict[str, tuple[int, int]]:
    unit = _UNIT * _SCALE.get(currency, 1)
    return {
        "threshold": (0, 10_000 * unit),
        "reload_amount": (5 * unit, 10_000 * unit),
        "target_balance": (1, 20_000 * unit),
        "monthly_cap": (1, 1_000_000 * unit),
    }


def upgrade() -> None:
    with op.batch_alter_table("reload_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("first_sent_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "operator_alerts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("agency_id", sa.String(length=40), nullable=True),
        sa.Column("message", sa.String(length=1000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_alerts")),
        sa.UniqueConstraint("kind", "subject", name="uq_operator_alerts_kind_subject"),
    )
    op.drop_index("ix_login_failures_client_ip", table_name="login_failures")
    op.drop_index("ix_login_failures_email", table_name="login_failures")
    op.drop_table("login_failures")
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(length=320), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttle")),
    )
    _clamp_settings()


def _clamp_settings() -> None:
    """Saved settings beyond the new bounds are brought within them, each with a
    ``system`` audit entry (before -> after) so the owner sees why."""
    conn = op.get_bind()
    rows = (
        conn.execute(
            sa.text(
                "SELECT s.wallet_id, a.agency_id, a.currency, s.status, s.threshold, "
                "s.reload_amount, s.target_balance, s.monthly_cap, s.daily_limit "
                "FROM auto_reload_settings s JOIN accounts a ON a.id = s.wallet_id"
            )
        )
        .mappings()
        .all()
    )
    now = datetime.now(UTC)
    stamp = now.replace(tzinfo=None) if conn.dialect.name == "sqlite" else now
    for row in rows:
        before: dict[str, object] = {}
        after: dict[str, object] = {}
        for name, (low, high) in _bounds(row["currency"]).items():
            value = row[name]
            if value is not None and not low <= value <= high:
                before[name], after[name] = value, min(max(value, low), high)
        if row["daily_limit"] > _MAX_DAILY_LIMIT:
            before["daily_limit"], after["daily_limit"] = row["daily_limit"], _MAX_DAILY_LIMIT
        if not after:
            continue
        sets = ", ".join(f"{name} = :{name}" for name in after)
        conn.execute(
            sa.text(f"UPDATE auto_reload_settings SET {sets} WHERE wallet_id = :wallet_id"),  # noqa: S608  fixed column names
            {**after, "wallet_id": row["wallet_id"]},
        )
        if "threshold" in after and row["status"] == "active":
            conn.execute(
                sa.text("UPDATE accounts SET reload_below = :t WHERE id = :wallet_id"),
                {"t": after["threshold"], "wallet_id": row["wallet_id"]},
            )
        conn.execute(
            sa.text(
                "INSERT INTO audit_log (id, agency_id, actor, action, target_id, before, "
                "after, created_at) VALUES (:id, :agency_id, 'system', "
                "'auto_reload.clamped', :wallet_id, :before, :after, :now)"
            ),
            {
                "id": new_id("aud"),
                "agency_id": row["agency_id"],
                "wallet_id": row["wallet_id"],
                # Micro-units, as stored: the audit entry names the fields and the reason.
                "before": json.dumps({**before, "reason": "beyond the bounds of 0005"}),
                "after": json.dumps(after),
                "now": stamp,
            },
        )


def downgrade() -> None:
    op.drop_table("login_throttle")
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
    )
    op.create_index("ix_login_failures_email", "login_failures", ["email", "created_at"])
    op.create_index("ix_login_failures_client_ip", "login_failures", ["client_ip", "created_at"])
    op.drop_table("operator_alerts")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("name")
    with op.batch_alter_table("reload_attempts", schema=None) as batch_op:
        batch_op.drop_column("cancel_requested_at")
        batch_op.drop_column("first_sent_at")
        batch_op.drop_column("lease_until")
