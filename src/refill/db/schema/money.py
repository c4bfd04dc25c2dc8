"""The money tables: agencies and their wallets, the ledger, cards, auto-reload and its
attempts, the audit log, gateway events seen, operator alerts."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from refill.db.schema.base import BigIntPK, UTCDateTime, metadata
from refill.reload.states import (
    ACTIVE_STATUSES,
    AttemptStatus,
    Mode,
    SettingsStatus,
    Trigger,
    sql_list,
)
from refill.roles import KeyRole

agencies = Table(
    "agencies",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("timezone", String(64), nullable=False, server_default="UTC"),
    # The agency's customer at the gateway (Stripe: a Customer), created the first time it
    # saves a card there; NULL for a gateway without customers (the sandbox).
    Column("gateway_customer_id", String(255), nullable=True, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    # Who else is told about billing (JSON list of e-mail addresses), and what receipts say.
    Column("billing_emails", Text, nullable=True),
    Column("billing_address", String(500), nullable=True),
    Column("tax_id", String(64), nullable=True),
    # The last receipt number issued: taken under the wallet's lock, so receipts have no
    # gaps (a database sequence would leave them).
    Column("receipt_counter", Integer, nullable=False, server_default="0"),
    # Tell the owner when the balance drops below this (NULL: the auto-reload threshold
    # while auto-reload is off, suspended or blocked).
    Column("low_balance_alert", BigInteger, nullable=True),
    CheckConstraint("receipt_counter >= 0", name="receipt_counter_not_negative"),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(40), primary_key=True),
    # NULL for the system accounts (one per kind and currency).
    Column("agency_id", String(40), ForeignKey("agencies.id"), nullable=True),
    Column("kind", String(32), nullable=False),
    Column("currency", String(3), nullable=False),
    # Kept for wallets only: system accounts are written by every agency, so their balance
    # is the sum of their transfers instead of a row everyone would contend on.
    Column("balance", BigInteger, nullable=False, server_default="0"),
    # The trigger level while auto-reload is active, NULL otherwise. It lives on the row the
    # debit already locks, so deciding to reload costs the hot path nothing.
    Column("reload_below", BigInteger, nullable=True),
    # The low-balance alert level in effect, NULL when none: on the row the debit locks,
    # so noticing a crossing costs the hot path nothing (``events.balance``).
    Column("alert_below", BigInteger, nullable=True),
    # Credits held by live calls (the sum of the wallet's active holds): no transfer, no
    # money moved, but not available to spend. available = balance - held (0009).
    Column("held", BigInteger, nullable=False, server_default="0"),
    # Calls are authorized while available credits are above this (the agency's
    # min_call_balance): on the row the debit locks, so the depleted and replenished
    # events cost the hot path nothing.
    Column("call_floor", BigInteger, nullable=False, server_default="0"),
    # True while a subteam of this wallet is paused or has a spend limit: the one-statement
    # usage debit then leaves the wallet alone and usage takes the checked path
    # (``services.spend``). On the row the debit locks, so a pause or a limit applies to
    # every debit that commits after it, however long that debit waited for the lock.
    Column("subteam_rules", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", UTCDateTime(), nullable=False),
    CheckConstraint(
        "kind IN ('wallet', 'card_funding', 'manual_funding', 'usage_revenue', 'granted_credits')",
        name="kind",
    ),
    CheckConstraint("kind = 'wallet' OR balance = 0", name="system_balance_unused"),
    CheckConstraint("kind = 'wallet' OR agency_id IS NULL", name="system_has_no_agency"),
    CheckConstraint("kind <> 'wallet' OR agency_id IS NOT NULL", name="wallet_has_agency"),
    CheckConstraint("kind <> 'wallet' OR balance >= 0", name="wallet_not_negative"),
    CheckConstraint("held >= 0", name="held_not_negative"),
    CheckConstraint("balance >= held", name="held_covered"),
    CheckConstraint("call_floor >= 0", name="call_floor_not_negative"),
)
Index(
    "uq_accounts_one_wallet_per_agency",
    accounts.c.agency_id,
    unique=True,
    sqlite_where=text("kind = 'wallet'"),
    postgresql_where=text("kind = 'wallet'"),
)
Index(
    "uq_accounts_one_system_account",
    accounts.c.kind,
    accounts.c.currency,
    unique=True,
    sqlite_where=text("agency_id IS NULL"),
    postgresql_where=text("agency_id IS NULL"),
)

subteams = Table(
    "subteams",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("agency_id", String(40), ForeignKey("agencies.id"), nullable=False, index=True),
    # The parent wallet, copied here (it never changes) so a usage debit is one statement.
    Column("wallet_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("name", String(200), nullable=False),
    # The name as names are compared: trimmed and case-folded (``services.subteams``), so
    # the same on both engines; folding can lengthen a name, hence the room. Every insert
    # sets it: the default is there because SQLite adds a NOT NULL column only with one.
    Column("name_key", String(600), nullable=False, server_default=""),
    Column("created_at", UTCDateTime(), nullable=False),
    # Set while archived: its keys were revoked, usage and calls are refused.
    Column("archived_at", UTCDateTime(), nullable=True),
    # Set while paused by the owner: new usage and calls are refused (subteam_paused);
    # settling a call it already holds credits for is not (0009).
    Column("paused_at", UTCDateTime(), nullable=True),
    # Spend limits in the agency's day and month (NULL: none). While a subteam has one, the
    # spend counters below are kept up to date by every debit and hold (``spend``); without
    # one they are left alone, so an unlimited subteam's usage writes nothing here.
    Column("daily_spend_limit", BigInteger, nullable=True),
    Column("monthly_spend_limit", BigInteger, nullable=True),
    # Credits held by the subteam's live calls (the sum of its active holds).
    Column("held", BigInteger, nullable=False, server_default="0"),
    # The agency-local day ("2026-12-03") and month ("2026-12") the counters count.
    Column("spend_day", String(10), nullable=True),
    Column("spent_day", BigInteger, nullable=False, server_default="0"),
    Column("spend_month", String(7), nullable=True),
    Column("spent_month", BigInteger, nullable=False, server_default="0"),
    # Target of the transfers' (subteam, agency) foreign key.
    UniqueConstraint("id", "agency_id", name="uq_subteams_id_agency"),
    CheckConstraint("daily_spend_limit > 0", name="daily_spend_limit_positive"),
    CheckConstraint("monthly_spend_limit > 0", name="monthly_spend_limit_positive"),
    CheckConstraint("held >= 0", name="subteam_held_not_negative"),
    CheckConstraint("spent_day >= 0 AND spent_month >= 0", name="spent_not_negative"),
)
# One subteam per name in an agency, archived ones included (0008).
Index("uq_subteams_agency_name", subteams.c.agency_id, subteams.c.name_key, unique=True)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("agency_id", String(40), ForeignKey("agencies.id"), nullable=False, index=True),
    Column("subteam_id", String(40), ForeignKey("subteams.id"), nullable=True),
    Column("role", String(16), nullable=False),
    # SHA-256 of the secret; the secret itself is shown once and never stored.
    Column("digest", String(64), nullable=False, unique=True),
    # What the owner calls it ("production dialer"); optional.
    Column("name", String(100), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    # Written at most once a minute per key, so the lookup on every request stays a read.
    Column("last_used_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
    # A rolled key keeps working until then (at most 7 days after the roll).
    Column("expires_at", UTCDateTime(), nullable=True),
    CheckConstraint(f"role IN ({sql_list(KeyRole)})", name="role"),
    CheckConstraint(
        f"(role = '{KeyRole.SUBTEAM}') = (subteam_id IS NOT NULL)",
        name="subteam_key_has_subteam",
    ),
)

transfers = Table(
    "transfers",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("agency_id", String(40), ForeignKey("agencies.id"), nullable=False),
    Column("debit_account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("credit_account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("reference", String(255), nullable=False),
    Column("subteam_id", String(40), nullable=True),
    Column("description", String(500), nullable=True),
    Column("metadata", Text, nullable=True),
    # The wallet's balance right after this transfer: history and charts without a scan.
    Column("wallet_balance_after", BigInteger, nullable=False),
    # Usage settling a hold: the part of the call's cost the wallet could not cover (the
    # hold plus what was available), recorded instead of a negative balance (0009).
    Column("uncovered", BigInteger, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    # When the movement happened: the recording time, except usage reported late (a
    # backfill's ``occurred_at``, within a window), which lands on its own day in usage
    # charts, spend limits and history filters (0011). The ledger's order stays by id.
    Column("occurred_at", UTCDateTime(), nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("uncovered > 0", name="uncovered_positive"),
    CheckConstraint("debit_account_id <> credit_account_id", name="distinct_accounts"),
    CheckConstraint(
        "kind IN ('usage', 'auto_reload', 'manual_reload', 'grant', 'adjustment')", name="kind"
    ),
    # Usage is attributed only to a subteam of the same agency: the database checks it.
    ForeignKeyConstraint(
        ["subteam_id", "agency_id"],
        ["subteams.id", "subteams.agency_id"],
        name="fk_transfers_subteam",
    ),
    # Exactly once: a reference names one movement of one kind for one agency.
    UniqueConstraint("agency_id", "kind", "reference", name="uq_transfers_reference"),
)
Index("ix_transfers_agency_newest", transfers.c.agency_id, transfers.c.id)
# The billing page's balance chart: "the last transfer before hour H" is one seek (0004).
Index("ix_transfers_agency_created", transfers.c.agency_id, transfers.c.created_at)
# Usage over time (charts, burn rate, spend limits counted again): by when it happened.
Index("ix_transfers_agency_occurred", transfers.c.agency_id, transfers.c.occurred_at)
Index("ix_transfers_debit", transfers.c.debit_account_id, transfers.c.id)
Index("ix_transfers_credit", transfers.c.credit_account_id, transfers.c.id)

# A live call's credits, set aside by authorize: no transfer, no money moved. The wallet's
# and the subteam's ``held`` are the sums of their active holds, changed in the same
# transaction under the wallet's lock. A hold ends once: settled by usage naming it,
# released (DELETE, or archived subteam), or expired by the worker.
holds = Table(
    "holds",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("agency_id", String(40), ForeignKey("agencies.id"), nullable=False),
    Column("wallet_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("subteam_id", String(40), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("closed_at", UTCDateTime(), nullable=True),
    # The usage that settled it.
    Column("transfer_id", BigInteger, ForeignKey("transfers.id"), nullable=True),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("status IN ('active', 'settled', 'released', 'expired')", name="status"),
    CheckConstraint("(status = 'active') = (closed_at IS NULL)", name="closed_when_ended"),
    ForeignKeyConstraint(
        ["subteam_id", "agency_id"],
        ["subteams.id", "subteams.agency_id"],
        name="fk_holds_subteam",
    ),
)
Index("ix_holds_agency_newest", holds.c.agency_id, holds.c.id)
# The worker's expiry sweep and each wallet's active holds: only the live ones are indexed.
ACTIVE_HOLD = text("status = 'active'")
Index(
    "ix_holds_active_expiry",
    holds.c.expires_at,
    sqlite_where=ACTIVE_HOLD,
    postgresql_where=ACTIVE_HOLD,
)
Index(
    "ix_holds_active_subteam",
    holds.c.subteam_id,
    sqlite_where=ACTIVE_HOLD,
    postgresql_where=ACTIVE_HOLD,
)

payment_methods = Table(
    "payment_methods",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("agency_id", String(40), ForeignKey("agencies.id"), nullable=False, index=True),
    Column("gateway", String(16), nullable=False),
    # The gateway's token (a Stripe PaymentMethod id); never a card number.
    Column("token", String(255), nullable=False),
    Column("brand", String(32), nullable=False),
    Column("last4", String(4), nullable=False),
    Column("exp_month", Integer, nullable=False),
    Column("exp_year", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("removed_at", UTCDateTime(), nullable=True),
    # Expiry notices already sent for this card (each once): "30", "7", "expired".
    Column("expiry_notices", String(32), nullable=False, server_default=""),
    UniqueConstraint("agency_id", "gateway", "token", name="uq_payment_methods_token"),
)

auto_reload_settings = Table(
    "auto_reload_settings",
    metadata,
    Column("wallet_id", String(40), ForeignKey("accounts.id"), primary_key=True),
    Column("enabled", Boolean, nullable=False),
    # NULL until the owner sets them; enabling requires both (reload.settings validates).
    Column("threshold", BigInteger, nullable=True),
    Column("reload_amount", BigInteger, nullable=True),
    Column("payment_method_id", String(40), ForeignKey("payment_methods.id"), nullable=True),
    Column("status", String(16), nullable=False),
    # Why auto-reload stopped by itself (a declined card); NULL unless suspended.
    Column("suspended_reason", String(500), nullable=True),
    # fixed: add reload_amount; target: bring the balance back up to target_balance.
    Column("mode", String(16), nullable=False, server_default="fixed"),
    Column("target_balance", BigInteger, nullable=True),
    # Safety rails: optional cap on auto-reload spend per calendar month (agency time zone)
    # and a cap on auto-reloads per day.
    Column("monthly_cap", BigInteger, nullable=True),
    Column("daily_limit", Integer, nullable=False, server_default="10"),
    # Set when a rail stopped a reload: no further blocked attempt is written until then.
    Column("blocked_rail", String(32), nullable=True),
    Column("blocked_until", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    CheckConstraint(f"status IN ({sql_list(SettingsStatus)})", name="status"),
    CheckConstraint("threshold >= 0", name="threshold_not_negative"),
    CheckConstraint("reload_amount > 0", name="reload_amount_positive"),
    CheckConstraint(f"mode IN ({sql_list(Mode)})", name="mode"),
    CheckConstraint("monthly_cap > 0", name="monthly_cap_positive"),
    CheckConstraint("daily_limit > 0", name="daily_limit_positive"),
)

# The cards auto-reload charges, in order (position 0 is the primary, the settings'
# ``payment_method_id``). The next card is charged only after a definitive decline of the one
# before. A hard-declined card is skipped by later reloads until it is updated at the gateway
# or named again by the owner.
auto_reload_cards = Table(
    "auto_reload_cards",
    metadata,
    Column("wallet_id", String(40), ForeignKey("accounts.id"), primary_key=True),
    Column("payment_method_id", String(40), ForeignKey("payment_methods.id"), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("skipped_at", UTCDateTime(), nullable=True),
    # The decline that made it skipped (a Stripe decline code).
    Column("skip_reason", String(64), nullable=True),
    CheckConstraint("position >= 0", name="position_not_negative"),
    UniqueConstraint("wallet_id", "position", name="uq_auto_reload_cards_position"),
)

reload_attempts = Table(
    "reload_attempts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("agency_id", String(40), ForeignKey("agencies.id"), nullable=False),
    Column("wallet_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("payment_method_id", String(40), ForeignKey("payment_methods.id"), nullable=False),
    # Sent to the gateway; derived from our own id so a retry is the same request.
    Column("idempotency_key", String(80), nullable=False, unique=True),
    # The client's Idempotency-Key for a manual top-up, unique per agency.
    Column("request_key", String(255), nullable=True),
    Column("gateway_payment_id", String(255), nullable=True),
    Column("failure_code", String(64), nullable=True),
    Column("failure_message", String(500), nullable=True),
    Column("claimed_at", UTCDateTime(), nullable=True),
    # charging: the claimer's lease, renewed every few seconds while its gateway call runs;
    # once it has passed, the claimer is dead and the reconciler takes the attempt over.
    Column("lease_until", UTCDateTime(), nullable=True),
    # When the charge was first sent to the gateway: a re-send under the same idempotency
    # key is only safe while the gateway still remembers the key (Stripe: 24 hours).
    Column("first_sent_at", UTCDateTime(), nullable=True),
    # requires_action: the owner (or a settings change) asked to cancel; the gateway is
    # asked to cancel the payment before the attempt is recorded canceled.
    Column("cancel_requested_at", UTCDateTime(), nullable=True),
    # A retry waits until this time (NULL: run at once).
    Column("not_before", UTCDateTime(), nullable=True),
    # The declined attempt this one retries, and how many retries came before it.
    Column("previous_attempt_id", String(40), nullable=True),
    Column("retry_number", Integer, nullable=False, server_default="0"),
    # requires_action: what the owner must do (JSON from the gateway, e.g. a client secret).
    Column("next_action", Text, nullable=True),
    # blocked: when the safety rail that stopped it lifts.
    Column("blocked_until", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    CheckConstraint(f"trigger IN ({sql_list(Trigger)})", name="trigger"),
    CheckConstraint(f"status IN ({sql_list(AttemptStatus)})", name="status"),
    CheckConstraint("amount > 0", name="amount_positive"),
    UniqueConstraint("agency_id", "request_key", name="uq_reload_attempts_request_key"),
)
# Never two active auto-reloads for one wallet: enforced by the database on both engines.
# Literal SQL (no bound parameters) so PostgreSQL can match ON CONFLICT to this index even
# under a generic prepared plan.
ACTIVE_AUTO_RELOAD = text(f"trigger = '{Trigger.AUTO}' AND status IN ({sql_list(ACTIVE_STATUSES)})")
Index(
    "uq_reload_attempts_one_active_auto",
    reload_attempts.c.wallet_id,
    unique=True,
    sqlite_where=ACTIVE_AUTO_RELOAD,
    postgresql_where=ACTIVE_AUTO_RELOAD,
)
Index("ix_reload_attempts_agency_newest", reload_attempts.c.agency_id, reload_attempts.c.id)
Index("ix_reload_attempts_status", reload_attempts.c.status)
Index(
    "ix_reload_attempts_wallet_created", reload_attempts.c.wallet_id, reload_attempts.c.created_at
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("agency_id", String(40), ForeignKey("agencies.id"), nullable=False),
    # "key:<api key id>", "cli" or "system" (the engine itself, e.g. a suspension).
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target_id", String(40), nullable=True),
    Column("before", Text, nullable=True),
    Column("after", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
)
Index("ix_audit_log_agency_newest", audit_log.c.agency_id, audit_log.c.id)

# Webhook events already handled, by the gateway's event id: a replayed or re-sent event
# is acknowledged and does nothing.
gateway_events = Table(
    "gateway_events",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("gateway", String(16), nullable=False),
    Column("type", String(64), nullable=False),
    # The object it was about (a PaymentIntent or PaymentMethod id), for an operator.
    Column("object_id", String(255), nullable=True),
    Column("received_at", UTCDateTime(), nullable=False),
)

# Things an operator must look at: money the gateway reports as taken that Refill could
# not credit by itself, a charge that can no longer be asked about. Listed by
# `refill reloads stuck` until resolved.
operator_alerts = Table(
    "operator_alerts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(64), nullable=False),
    # What it is about (an attempt id, a PaymentIntent id): one open alert per kind and subject.
    Column("subject", String(255), nullable=False),
    Column("agency_id", String(40), nullable=True),
    Column("message", String(1000), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("resolved_at", UTCDateTime(), nullable=True),
    Column("resolution", String(500), nullable=True),
    UniqueConstraint("kind", "subject", name="uq_operator_alerts_kind_subject"),
)
