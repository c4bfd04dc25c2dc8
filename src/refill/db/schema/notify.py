"""Telling the owner: the event outbox, webhook endpoints and deliveries, e-mail, receipts."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from refill.db.schema.base import UTCDateTime, metadata

# The transactional outbox: written in the transaction of the change it describes, then
# fanned out (webhook deliveries, e-mail) by the dispatcher.
events = Table(
    "events",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("agency_id", String(40), ForeignKey("agencies.id"), nullable=False),
    Column("type", String(64), nullable=False),
    Column("data", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # Set when its deliveries and e-mails were written (NULL: the dispatcher's work).
    Column("dispatched_at", UTCDateTime(), nullable=True),
)
Index("ix_events_agency_newest", events.c.agency_id, events.c.id)
Index(
    "ix_events_undispatched",
    events.c.id,
    sqlite_where=text("dispatched_at IS NULL"),
    postgresql_where=text("dispatched_at IS NULL"),
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("agency_id", String(40), ForeignKey("agencies.id"), nullable=False, index=True),
    Column("url", String(2048), nullable=False),
    Column("description", String(500), nullable=True),
    # JSON list of event types, or ["*"].
    Column("event_types", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    # The signing secret is derived from the server's key and this generation, never
    # stored; after a rotation the previous one also signs until previous_valid_until.
    Column("secret_generation", Integer, nullable=False, server_default="1"),
    Column("previous_valid_until", UTCDateTime(), nullable=True),
    # Since when every delivery has failed (NULL after a success); 3 days disables it.
    Column("failing_since", UTCDateTime(), nullable=True),
    Column("disabled_reason", String(200), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("agency_id", String(40), ForeignKey("agencies.id"), nullable=False),
    Column("endpoint_id", String(40), ForeignKey("webhook_endpoints.id"), nullable=False),
    Column("event_id", String(40), ForeignKey("events.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("lease_until", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("completed_at", UTCDateTime(), nullable=True),
    CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status"),
    UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_endpoint_event"),
)
Index(
    "ix_webhook_deliveries_due", webhook_deliveries.c.status, webhook_deliveries.c.next_attempt_at
)
Index(
    "ix_webhook_deliveries_endpoint_newest",
    webhook_deliveries.c.endpoint_id,
    webhook_deliveries.c.id,
)

# E-mail to send: the template and its parameters (never a secret: links carry tokens
# derived from the server's key when the message is built). Recipients are resolved at
# sending time unless the message names its own (an invitation).
emails = Table(
    "emails",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("agency_id", String(40), ForeignKey("agencies.id"), nullable=True),
    Column("template", String(64), nullable=False),
    Column("params", Text, nullable=False),
    Column("to_addresses", Text, nullable=True),
    Column("event_id", String(40), ForeignKey("events.id"), nullable=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", String(500), nullable=True),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("lease_until", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime(), nullable=True),
    CheckConstraint("status IN ('pending', 'sent', 'failed')", name="status"),
    UniqueConstraint("event_id", "template", name="uq_emails_event_template"),
)
Index("ix_emails_due", emails.c.status, emails.c.next_attempt_at)

# A receipt freezes what it says when it is issued: a card or a name changed later does
# not rewrite it.
receipts = Table(
    "receipts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("agency_id", String(40), ForeignKey("agencies.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("attempt_id", String(40), ForeignKey("reload_attempts.id"), nullable=False, unique=True),
    Column("issued_at", UTCDateTime(), nullable=False),
    Column("local_date", String(10), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("agency_name", String(200), nullable=False),
    Column("billing_address", String(500), nullable=True),
    Column("tax_id", String(64), nullable=True),
    Column("description", String(200), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("card_brand", String(32), nullable=False),
    Column("card_last4", String(4), nullable=False),
    UniqueConstraint("agency_id", "number", name="uq_receipts_agency_number"),
)
