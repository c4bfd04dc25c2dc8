"""Operator alerts: what Refill cannot settle by itself and a person must look at.

Money the gateway reports as taken for a payment Refill cannot credit (its amount or
currency does not match, or it names no reload Refill knows), or a charge that can no
longer be asked about safely. Each is logged at ERROR once and kept in ``operator_alerts``
until an operator resolves it; ``refill reloads stuck`` lists them (and exits 1).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from refill.db.database import Tx, dialect_insert
from refill.db.schema import operator_alerts
from refill.errors import NotFound
from refill.ids import new_id

log = logging.getLogger("refill.alerts")


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    kind: str
    subject: str
    agency_id: str | None
    message: str
    created_at: datetime
    resolved_at: datetime | None
    resolution: str | None


def raise_alert(tx: Tx, *, kind: str, subject: str, agency_id: str | None, message: str) -> None:
    """Record an alert (once per kind and subject) and log it."""
    inserted = tx.conn.execute(
        dialect_insert(tx)(operator_alerts)
        .values(
            id=new_id("alr"),
            kind=kind,
            subject=subject[:255],
            agency_id=agency_id,
            message=message[:1000],
            created_at=tx.now,
        )
        .on_conflict_do_nothing(index_elements=["kind", "subject"])
        .returning(operator_alerts.c.id)
    ).first()
    if inserted is not None:
        log.error("operator alert %s (%s, %s): %s", inserted[0], kind, subject, message)


def _alert(row: Any) -> Alert:
    return Alert(**{f: row[f] for f in Alert.__slots__})


def open_alerts(tx: Tx) -> list[Alert]:
    rows = tx.conn.execute(
        select(operator_alerts)
        .where(operator_alerts.c.resolved_at.is_(None))
        .order_by(operator_alerts.c.id)
    )
    return [_alert(r._mapping) for r in rows]


def resolve_alert(tx: Tx, alert_id: str, resolution: str) -> Alert:
    row = tx.conn.execute(
        update(operator_alerts)
        .where(operator_alerts.c.id == alert_id)
        .values(
            resolved_at=tx.now,
            resolution=resolution[:500],
        )
        .returning(*operator_alerts.c)
    ).one_or_none()
    if row is None:
        raise NotFound(f"alert {alert_id} not found", code="alert_not_found")
    return _alert(row._mapping)
