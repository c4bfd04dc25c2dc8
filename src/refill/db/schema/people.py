"""The billing portal's people: users, memberships, sessions, invitations, password resets,
the sign-in throttle."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    text,
)

from refill.db.schema.base import UTCDateTime, metadata
from refill.reload.states import (
    sql_list,
)
from refill.roles import MemberRole

users = Table(
    "users",
    metadata,
    Column("id", String(40), primary_key=True),
    # Stored lower-cased: one account per address, whatever its spelling.
    Column("email", String(254), nullable=False, unique=True),
    # argon2id, with its parameters and salt (the PHC string argon2-cffi writes).
    Column("password_hash", String(255), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

memberships = Table(
    "memberships",
    metadata,
    Column("user_id", String(40), ForeignKey("users.id"), primary_key=True),
    Column("agency_id", String(40), ForeignKey("agencies.id"), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # What billing e-mail this person wants; failures and suspensions always go out.
    Column("receipt_emails", Boolean, nullable=False, server_default=text("true")),
    Column("low_balance_emails", Boolean, nullable=False, server_default=text("true")),
    CheckConstraint(f"role IN ({sql_list(MemberRole)})", name="role"),
)
Index("ix_memberships_agency_id", memberships.c.agency_id)

portal_sessions = Table(
    "portal_sessions",
    metadata,
    # SHA-256 of the cookie's random token: a stolen database opens no session.
    Column("id", String(64), primary_key=True),
    Column("user_id", String(40), ForeignKey("users.id"), nullable=False, index=True),
    Column("agency_id", String(40), ForeignKey("agencies.id"), nullable=False),
    # The synchronizer token every form of this session carries.
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=False),
    Column("ended_at", UTCDateTime(), nullable=True),
)

# An invitation to join an agency: accepted by setting a password (a new person) or while
# signed in (an existing user). Its link's token is derived from the server's key.
invitations = Table(
    "invitations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("agency_id", String(40), ForeignKey("agencies.id"), nullable=False, index=True),
    Column("email", String(254), nullable=False),
    Column("role", String(16), nullable=False),
    Column("invited_by", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("accepted_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
    CheckConstraint(f"role IN ({sql_list(MemberRole)})", name="role"),
)

password_resets = Table(
    "password_resets",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("user_id", String(40), ForeignKey("users.id"), nullable=False, index=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
)

# Sign-in attempts per e-mail and per client address in the current window, counted
# *before* the password is checked (an upsert that returns the count), so a burst cannot
# pass the limit. Kept in the database: it holds across processes.
login_throttle = Table(
    "login_throttle",
    metadata,
    # "email:<address>" or "ip:<address>"
    Column("key", String(320), primary_key=True),
    Column("window_start", UTCDateTime(), nullable=False),
    Column("attempts", Integer, nullable=False),
)
