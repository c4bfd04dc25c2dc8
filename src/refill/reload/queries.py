"""What the worker looks for, and what an operator or a settings change needs to find:
read-only work lists over reload attempts and settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select

from refill.db.database import Tx
from refill.db.schema import accounts, auto_reload_settings, reload_attempts
from refill.ids import wallet_id_for
from refill.reload.attempt import ReloadAttempt, attempt_from_row
from refill.reload.states import AttemptStatus, Trigger

S = AttemptStatus


def _skip_locked(tx: Tx, stmt: Any) -> Any:
    return stmt.with_for_update(skip_locked=True) if tx.dialect == "postgresql" else stmt


def due_pending_attempts(tx: Tx, *, created_before: datetime, limit: int) -> list[str]:
    """Pending attempts whose time has come: retries due now, and fresh ones left behind
    (crash, lost wake-up) for longer than the instant path needs. Oldest first."""
    stmt = (
        select(reload_attempts.c.id)
        .where(
            reload_attempts.c.status == S.PENDING,
            or_(
                reload_attempts.c.not_before <= tx.now,
                reload_attempts.c.not_before.is_(None)
                & (reload_attempts.c.created_at < created_before),
            ),
        )
        .order_by(reload_attempts.c.id)
        .limit(limit)
    )
    return list(tx.conn.execute(_skip_locked(tx, stmt)).scalars())


def stale_charging_attempts(tx: Tx, *, limit: int) -> list[str]:
    """Charges whose claimer's lease ran out: the claimer died mid-charge."""
    stmt = (
        select(reload_attempts.c.id)
        .where(
            reload_attempts.c.status == S.CHARGING,
            or_(reload_attempts.c.lease_until.is_(None), reload_attempts.c.lease_until <= tx.now),
        )
        .order_by(reload_attempts.c.id)
        .limit(limit)
    )
    return list(tx.conn.execute(_skip_locked(tx, stmt)).scalars())


def stuck_attempts(tx: Tx, *, charging_since: datetime) -> list[ReloadAttempt]:
    """Charges still unresolved after a long time: an operator should look at them."""
    rows = tx.conn.execute(
        select(reload_attempts)
        .where(
            reload_attempts.c.status == S.CHARGING, reload_attempts.c.created_at < charging_since
        )
        .order_by(reload_attempts.c.id)
    )
    return [attempt_from_row(r._mapping) for r in rows]


def attempts_waiting_for_owner(tx: Tx, agency_id: str) -> list[str]:
    """Auto-reloads waiting for 3-D Secure: a settings change cancels them first."""
    rows = tx.conn.execute(
        select(reload_attempts.c.id).where(
            reload_attempts.c.wallet_id == wallet_id_for(agency_id),
            reload_attempts.c.trigger == Trigger.AUTO,
            reload_attempts.c.status == S.REQUIRES_ACTION,
        )
    )
    return [r[0] for r in rows]


def waiting_for_authentication(tx: Tx, *, updated_before: datetime, limit: int) -> list[str]:
    """Reloads waiting for 3-D Secure since before ``updated_before``: the reconciler asks
    the gateway whether the owner has authenticated them meanwhile."""
    stmt = (
        select(reload_attempts.c.id)
        .where(
            reload_attempts.c.status == S.REQUIRES_ACTION,
            reload_attempts.c.updated_at < updated_before,
        )
        .order_by(reload_attempts.c.id)
        .limit(limit)
    )
    return list(tx.conn.execute(stmt).scalars())


def wallets_with_lifted_blocks(tx: Tx, now: datetime, limit: int) -> list[str]:
    """Agencies whose rail has lifted, for the worker to evaluate again."""
    rows = tx.conn.execute(
        select(accounts.c.agency_id)
        .join(auto_reload_settings, auto_reload_settings.c.wallet_id == accounts.c.id)
        .where(
            auto_reload_settings.c.blocked_until.is_not(None),
            auto_reload_settings.c.blocked_until <= now,
        )
        .limit(limit)
    )
    return [r[0] for r in rows]
