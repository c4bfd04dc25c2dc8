"""Audit log: who changed what, when, from what to what. Append-only, like the ledger."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert

from refill.db.database import Tx
from refill.db.schema import audit_log
from refill.ids import new_id

SYSTEM = "system"  # the engine itself, e.g. suspending auto-reload after a hard decline


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str
    agency_id: str
    actor: str
    action: str
    target_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    created_at: datetime


def record(
    tx: Tx,
    *,
    agency_id: str,
    actor: str,
    action: str,
    target_id: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    tx.conn.execute(
        insert(audit_log).values(
            id=new_id("aud"),
            agency_id=agency_id,
            actor=actor,
            action=action,
            target_id=target_id,
            before=None if before is None else json.dumps(before, sort_keys=True, default=str),
            after=None if after is None else json.dumps(after, sort_keys=True, default=str),
            created_at=tx.now,
        )
    )


def entry_from_row(m: Any) -> AuditEntry:
    return AuditEntry(
        id=m["id"],
        agency_id=m["agency_id"],
        actor=m["actor"],
        action=m["action"],
        target_id=m["target_id"],
        before=json.loads(m["before"]) if m["before"] else None,
        after=json.loads(m["after"]) if m["after"] else None,
        created_at=m["created_at"],
    )
