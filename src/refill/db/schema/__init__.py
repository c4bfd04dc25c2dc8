"""Tables. Refill uses SQLAlchemy Core: every statement on the money path is explicit.

The Alembic migrations under ``migrations/versions`` create exactly these tables; a test
compares the migrated database with this metadata so the two cannot drift.
"""

from refill.db.schema.base import BigIntPK, UTCDateTime, metadata
from refill.db.schema.money import (
    ACTIVE_AUTO_RELOAD,
    ACTIVE_HOLD,
    accounts,
    agencies,
    api_keys,
    audit_log,
    auto_reload_cards,
    auto_reload_settings,
    gateway_events,
    holds,
    operator_alerts,
    payment_methods,
    reload_attempts,
    subteams,
    transfers,
)
from refill.db.schema.notify import (
    emails,
    events,
    receipts,
    webhook_deliveries,
    webhook_endpoints,
)
from refill.db.schema.people import (
    invitations,
    login_throttle,
    memberships,
    password_resets,
    portal_sessions,
    users,
)

__all__ = [
    "ACTIVE_AUTO_RELOAD",
    "ACTIVE_HOLD",
    "BigIntPK",
    "UTCDateTime",
    "accounts",
    "agencies",
    "api_keys",
    "audit_log",
    "auto_reload_cards",
    "auto_reload_settings",
    "emails",
    "events",
    "gateway_events",
    "holds",
    "invitations",
    "login_throttle",
    "memberships",
    "metadata",
    "operator_alerts",
    "password_resets",
    "payment_methods",
    "portal_sessions",
    "receipts",
    "reload_attempts",
    "subteams",
    "transfers",
    "users",
    "webhook_deliveries",
    "webhook_endpoints",
]
