"""Writing auto-reload settings: every write of the settings row is here, each one with
its audit entry (``save``, ``suspend``), so the audit log holds the settings in effect at
every moment (the backtest reads them from it); and the levels on the wallet's row that
the hot path compares with follow each write (``refresh_levels``).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update

from refill import audit, ledger
from refill.db.database import Tx, dialect_insert
from refill.db.schema import agencies, auto_reload_settings
from refill.ids import wallet_id_for
from refill.money import format_amount
from refill.notify import reloads as notices
from refill.reload.card_list import write_cards
from refill.reload.settings import AutoReloadSettings, get_settings
from refill.reload.states import SettingsStatus


def save(
    tx: Tx,
    agency_id: str,
    *,
    actor: str,
    before: AutoReloadSettings,
    after: AutoReloadSettings,
    currency: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Store ``after`` in place of ``before``, audited as ``auto_reload.updated``: the
    backtest reads the settings in effect at each moment from the audit log, so no change
    is stored without its entry. Returns the two snapshots."""
    write_settings(tx, agency_id, after)
    was, now = snapshot(before, currency), snapshot(after, currency)
    audit.record(
        tx,
        agency_id=agency_id,
        actor=actor,
        action="auto_reload.updated",
        target_id=wallet_id_for(agency_id),
        before=was,
        after=now,
    )
    return was, now


def write_settings(tx: Tx, agency_id: str, settings: AutoReloadSettings) -> None:
    values = {**asdict(settings), "updated_at": tx.now}
    del values["cards"]
    wallet_id = wallet_id_for(agency_id)
    stmt = dialect_insert(tx)(auto_reload_settings).values(wallet_id=wallet_id, **values)
    tx.conn.execute(stmt.on_conflict_do_update(index_elements=["wallet_id"], set_=values))
    write_cards(tx, wallet_id, settings.card_list)
    refresh_levels(tx, agency_id, settings)


_ALERT = select(agencies.c.low_balance_alert).where(agencies.c.id == bindparam("agency_id"))


def refresh_levels(tx: Tx, agency_id: str, settings: AutoReloadSettings) -> None:
    """The levels on the wallet row follow the settings: the trigger while auto-reload is
    active and not blocked; the alert the owner set, else the threshold while auto-reload
    is off, suspended or blocked (the owner must then be told of a low balance)."""
    active = settings.status == SettingsStatus.ACTIVE
    blocked = settings.blocked_at(tx.now)
    explicit = tx.conn.execute(_ALERT, {"agency_id": agency_id}).scalar()
    alert = (
        explicit
        if explicit is not None
        else None
        if active and not blocked
        else (settings.threshold)
    )
    ledger.set_levels(
        tx,
        agency_id,
        reload_below=settings.threshold if active else None,
        alert_below=alert,
    )


def snapshot(settings: AutoReloadSettings, currency: str) -> dict[str, Any]:
    """The settings as the audit log and the API show them (amounts as decimal strings)."""

    def amount(value: int | None) -> str | None:
        return None if value is None else format_amount(value, currency)

    return {
        "enabled": settings.enabled,
        "status": settings.status,
        "mode": settings.mode,
        "threshold": amount(settings.threshold),
        "reload_amount": amount(settings.reload_amount),
        "target_balance": amount(settings.target_balance),
        "payment_method_id": settings.payment_method_id,
        "payment_method_ids": list(settings.payment_method_ids),
        "monthly_cap": amount(settings.monthly_cap),
        "daily_limit": settings.daily_limit,
    }


def suspend(tx: Tx, agency_id: str, currency: str, reason: str) -> None:
    """Stop auto-reload after declines; the owner is told through the status and reason."""
    current = get_settings(tx, agency_id)
    if current.status != SettingsStatus.ACTIVE:
        return
    tx.conn.execute(
        update(auto_reload_settings)
        .where(auto_reload_settings.c.wallet_id == wallet_id_for(agency_id))
        .values(status=SettingsStatus.SUSPENDED, suspended_reason=reason, updated_at=tx.now)
    )
    refresh_levels(tx, agency_id, replace(current, status=SettingsStatus.SUSPENDED))
    notices.suspended(
        tx, agency_id=agency_id, reason=reason, payment_method_id=current.payment_method_id
    )
    audit.record(
        tx,
        agency_id=agency_id,
        actor=audit.SYSTEM,
        action="auto_reload.suspended",
        target_id=wallet_id_for(agency_id),
        before=snapshot(current, currency),
        after={**snapshot(current, currency), "status": "suspended", "reason": reason},
    )


def set_block(tx: Tx, agency_id: str, rail: str | None, until: datetime | None) -> None:
    """A rail stops reloads until ``until`` (None: the block is lifted)."""
    tx.conn.execute(
        update(auto_reload_settings)
        .where(auto_reload_settings.c.wallet_id == wallet_id_for(agency_id))
        .values(blocked_rail=rail, blocked_until=until)
    )
    refresh_levels(tx, agency_id, get_settings(tx, agency_id))
