"""The moments a posting changes what the owner must know about the balance:

- ``wallet.depleted``: no credits any more, calls are refused (exactly when the authorize
  rule flips to "no": available credits fall to the call floor, the agency's
  ``min_call_balance``, or below);
- ``wallet.replenished``: calls possible again (available credits rise above the floor);
- ``wallet.low_balance``: available credits fall below the alert level in effect
  (``accounts.alert_below``: the owner's alert, or the auto-reload threshold while
  auto-reload is off, suspended or blocked).

Available credits are the balance less what live calls hold, so placing and releasing a
hold can cross these too. Arithmetic on what the change's own statement returned: the hot
path writes an event only at a crossing, never reads anything more.
"""

from __future__ import annotations

from refill.db.database import SqlTx
from refill.notify.events import EventType, emit, money


def after_posting(
    tx: SqlTx,
    *,
    agency_id: str,
    currency: str,
    before: int,
    after: int,
    alert_below: int | None,
    call_floor: int,
) -> None:
    if before > call_floor >= after:
        emit(
            tx,
            agency_id,
            EventType.WALLET_DEPLETED,
            {"balance": money(after, currency), "currency": currency},
        )
    elif before <= call_floor < after:
        emit(
            tx,
            agency_id,
            EventType.WALLET_REPLENISHED,
            {"balance": money(after, currency), "currency": currency},
        )
    if alert_below is not None and before >= alert_below > after:
        emit(
            tx,
            agency_id,
            EventType.WALLET_LOW_BALANCE,
            {
                "balance": money(after, currency),
                "alert_level": money(alert_below, currency),
                "currency": currency,
            },
        )
