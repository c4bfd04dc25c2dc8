"""The states of auto-reload, as enums mypy can check, and the names derived from them.

The database's CHECK constraints and the partial unique index of one active auto-reload per
wallet are written from these (``db/schema.py``), so a state cannot exist in one and not
the other.
"""

from __future__ import annotations

from enum import StrEnum


class AttemptStatus(StrEnum):
    """Where a reload attempt is; ``reload.machine`` is the only writer."""

    PENDING = "pending"  # created, not yet sent to the gateway
    CHARGING = "charging"  # claimed and sent (or about to be); outcome not recorded yet
    SUCCEEDED = "succeeded"  # paid and credited
    FAILED = "failed"  # declined; a soft decline has a retry of its own
    REQUIRES_ACTION = "requires_action"  # the owner must authenticate (3-D Secure)
    BLOCKED = "blocked"  # a safety rail stopped it before any charge
    CANCELED = "canceled"  # not needed any more, or canceled (at the gateway first)


class Trigger(StrEnum):
    AUTO = "auto"  # the wallet crossed its threshold
    MANUAL = "manual"  # the owner added credits


class SettingsStatus(StrEnum):
    OFF = "off"
    ACTIVE = "active"
    SUSPENDED = "suspended"  # stopped by the engine after declines, until the owner acts


class Mode(StrEnum):
    FIXED = "fixed"  # add reload_amount
    TARGET = "target"  # bring the balance back up to target_balance


class DecisionAction(StrEnum):
    NONE = "none"
    RELOAD = "reload"
    BLOCKED = "blocked"


class Rail(StrEnum):
    DAILY_LIMIT = "daily_limit"
    MONTHLY_CAP = "monthly_cap"


# An auto-reload holds its wallet's one active slot in these states.
ACTIVE_STATUSES = (AttemptStatus.PENDING, AttemptStatus.CHARGING, AttemptStatus.REQUIRES_ACTION)
# Attempts that spend (or may spend) money: what the daily limit and monthly cap count.
SPENDING_STATUSES = (*ACTIVE_STATUSES, AttemptStatus.SUCCEEDED)


def sql_list(values: tuple[StrEnum, ...] | type[StrEnum]) -> str:
    """``'a', 'b'`` for a CHECK constraint or a partial index's predicate."""
    return ", ".join(f"'{v.value}'" for v in values)


def idempotency_key_for(attempt_id: str) -> str:
    """What the gateway is sent with every charge of this attempt: from our own id, so a
    re-send is the same request (never from the time or a random number)."""
    return f"refill-reload-{attempt_id}"
