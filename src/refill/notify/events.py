"""Events: what happened to a wallet, written in the transaction of the change they
describe (a transactional outbox), then fanned out by ``dispatch``.

Each has a stable ``type``, an id (``evt_…``), ``created_at`` and ``data``: amounts as
decimal strings with their currency, and what each type needs (README: "Events").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from refill.db.database import SqlTx, bind_time, prepared
from refill.ids import new_id
from refill.money import format_amount


class EventType(StrEnum):
    AUTO_RELOAD_SUCCEEDED = "auto_reload.succeeded"
    AUTO_RELOAD_FAILED = "auto_reload.failed"
    AUTO_RELOAD_REQUIRES_ACTION = "auto_reload.requires_action"
    AUTO_RELOAD_SUSPENDED = "auto_reload.suspended"
    AUTO_RELOAD_RESUMED = "auto_reload.resumed"
    AUTO_RELOAD_BLOCKED = "auto_reload.blocked"
    TOPUP_SUCCEEDED = "topup.succeeded"
    TOPUP_FAILED = "topup.failed"
    WALLET_LOW_BALANCE = "wallet.low_balance"
    WALLET_DEPLETED = "wallet.depleted"
    WALLET_REPLENISHED = "wallet.replenished"
    USAGE_UNCOVERED = "usage.uncovered"
    PAYMENT_METHOD_EXPIRING = "payment_method.expiring"
    PAYMENT_METHOD_EXPIRED = "payment_method.expired"
    SETTINGS_UPDATED = "settings.updated"
    WEBHOOK_ENDPOINT_DISABLED = "webhook_endpoint.disabled"
    PING = "ping"


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    agency_id: str
    type: str
    data: dict[str, Any]
    created_at: datetime

    def payload(self) -> dict[str, Any]:
        """What a webhook receiver gets, and the API shows."""
        return {
            "id": self.id,
            "type": self.type,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
            "data": self.data,
        }


def event_from_row(row: Any) -> Event:
    return Event(
        row["id"], row["agency_id"], row["type"], json.loads(row["data"]), row["created_at"]
    )


@dataclass(frozen=True, slots=True)
class NewEvent:
    """Announced after the commit that wrote it: the dispatcher fans it out at once."""

    event_id: str


_INSERT = prepared(
    "INSERT INTO events (id, agency_id, type, data, created_at) VALUES ({p}, {p}, {p}, {p}, {p})"
)


def emit(tx: SqlTx, agency_id: str, type_: EventType, data: dict[str, Any]) -> str:
    """Write the event in this transaction; its id. Works on the hot path's raw transaction
    too (one prepared statement)."""
    event_id = new_id("evt")
    tx.execute_raw(
        _INSERT[tx.dialect],
        (
            event_id,
            agency_id,
            type_.value,
            json.dumps(data, sort_keys=True, default=str),
            bind_time(tx.dialect, tx.now),
        ),
    )
    tx.announce(NewEvent(event_id))
    return event_id


def money(micros: int | None, currency: str) -> str | None:
    """An amount in an event: a decimal string (its currency is beside it in ``data``)."""
    return None if micros is None else format_amount(micros, currency)


def when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")
