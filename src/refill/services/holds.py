"""Calls: whether a subteam may take one now, and the credits a live call holds.

A hold moves no money and writes no transfer: it is a ``holds`` row, plus the same amount
on the wallet's and the subteam's ``held``, changed together under the wallet's lock (the
database checks ``0 <= held <= balance``). Available credits are the balance less what is
held; the trigger looks at them, so holding credits for live calls can start a reload
before those calls end. A hold ends once: settled by the usage that names it
(``services.settling``), released (``DELETE /v1/holds/{id}``, or its subteam archived),
or expired by the worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from refill import ledger
from refill.db.database import Database, RawTx, SqlTx, Tx, bind_time, prepared
from refill.db.rows import record
from refill.db.schema import ACTIVE_HOLD, holds
from refill.errors import Conflict, NotFound, ValidationFailed
from refill.ids import new_id, wallet_id_for
from refill.reload.trigger import trigger_auto_reload
from refill.services import spend
from refill.services.pages import Page, paginate
from refill.services.spend import Period, SubteamRules
from refill.services.subteams import archived_refusal

DEFAULT_EXPIRY = timedelta(hours=2)
MAX_EXPIRY = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Hold:
    id: str
    agency_id: str
    subteam_id: str
    amount: int
    status: str
    created_at: datetime
    expires_at: datetime
    closed_at: datetime | None
    transfer_id: int | None


@dataclass(frozen=True, slots=True)
class CallAuthorization:
    allowed: bool
    reason: str
    available: int
    currency: str
    hold: Hold | None = None


# --- the rule ----------------------------------------------------------------------------


def decide_call(
    rules: SubteamRules,
    period: Period | None,
    *,
    available: int,
    call_floor: int,
    expected_cost: int | None,
) -> str | None:
    """Why the subteam may not take the call now (a ``reason``), or None: it may. Pure.

    Without an expected cost, calls need available credits above the agency's floor
    (``min_call_balance``); with one, available credits that cover it. A limited subteam
    needs room under its limits for the cost (any room without one)."""
    if rules.paused:
        return "subteam_paused"
    room = spend.room_left(rules, period)
    if room is not None and (room <= 0 or (expected_cost or 0) > room):
        return "subteam_limit_reached"
    return credit_refusal(available=available, call_floor=call_floor, expected_cost=expected_cost)


def credit_refusal(*, available: int, call_floor: int, expected_cost: int | None) -> str | None:
    """The credits half of ``decide_call``: ``no_credits`` or None."""
    if expected_cost is None:
        return None if available > call_floor else "no_credits"
    return None if available >= expected_cost and available > 0 else "no_credits"


def hold_lifetime(seconds: int | None) -> timedelta:
    if seconds is None:
        return DEFAULT_EXPIRY
    if not 1 <= seconds <= MAX_EXPIRY.total_seconds():
        raise ValidationFailed(
            f"hold_expires_in_seconds must be 1 to {int(MAX_EXPIRY.total_seconds())} (24 hours)",
            field="hold_expires_in_seconds",
        )
    return timedelta(seconds=seconds)


# --- authorize ---------------------------------------------------------------------------

# One read: the wallet's available credits and call floor, and the subteam's rules. The
# agency's time zone is read only for a limited subteam (the rest need no date).
_READ_CALL = prepared(
    "SELECT a.balance - a.held, a.currency, a.call_floor, s.archived_at, s.paused_at, "
    "s.daily_spend_limit, s.monthly_spend_limit, s.held, s.spend_day, s.spent_day, "
    "s.spend_month, s.spent_month FROM subteams s JOIN accounts a ON a.id = s.wallet_id "
    "WHERE s.id = {p} AND s.agency_id = {p}"
)
_ZONE = prepared("SELECT timezone FROM agencies WHERE id = {p}")


@dataclass(frozen=True, slots=True)
class _CallState:
    available: int
    currency: str
    call_floor: int
    period: Period | None  # only for a limited subteam
    rules: SubteamRules


def _call_state(
    tx: SqlTx, agency_id: str, subteam_id: str, row: tuple[Any, ...] | None = None
) -> _CallState:
    """The call's state, from ``row`` when the caller has read it already."""
    if row is None:
        row = tx.execute_raw(_READ_CALL[tx.dialect], (subteam_id, agency_id))
    if row is None:
        raise NotFound(f"subteam {subteam_id} not found", code="subteam_not_found")
    rules = spend.rules_of(row[3:])
    if rules.archived:
        raise archived_refusal(subteam_id)
    period = None
    if rules.limited:  # only then the agency's time zone
        zone = tx.execute_raw(_ZONE[tx.dialect], (agency_id,))
        rules, period = spend.in_period(tx, agency_id, subteam_id, rules, zone[0] if zone else None)
    return _CallState(int(row[0]), row[1], int(row[2]), period, rules)


def authorize_call(
    db: Database,
    *,
    agency_id: str,
    subteam_id: str,
    expected_cost: int | None = None,
    hold: bool = False,
    hold_expires_in_seconds: int | None = None,
) -> CallAuthorization:
    """May this subteam take a call now? With ``hold``, its expected cost is held for it
    until usage settles the call, it is released, or it expires.

    Without a hold it is one read on the hot lane; with one, a write under the wallet's
    lock. An archived subteam is refused (403 ``subteam_archived``); a paused or limited
    one is answered ``allowed: false`` with the reason.
    """
    if expected_cost is not None and expected_cost < 0:
        raise ValidationFailed(
            "expected_cost must not be negative", code="invalid_amount", field="expected_cost"
        )
    if hold and not expected_cost:
        raise ValidationFailed(
            "hold needs an expected_cost of more than zero (the credits to hold)",
            code="invalid_amount",
            field="expected_cost",
        )
    if not hold:

        def answer(tx: RawTx) -> CallAuthorization:
            row = tx.execute_raw(_READ_CALL[tx.dialect], (subteam_id, agency_id))
            if row is not None and row[3] is None and row[4:7] == (None, None, None):
                # Not archived, paused or limited (most calls): the credits decide.
                available = int(row[0])
                refused = credit_refusal(
                    available=available, call_floor=int(row[2]), expected_cost=expected_cost
                )
                return CallAuthorization(
                    refused is None, refused or "credits_available", available, row[1]
                )
            now = _call_state(tx, agency_id, subteam_id, row)
            reason = decide_call(
                now.rules,
                now.period,
                available=now.available,
                call_floor=now.call_floor,
                expected_cost=expected_cost,
            )
            return CallAuthorization(
                reason is None, reason or "credits_available", now.available, now.currency
            )

        return db.read_raw(answer)
    lifetime = hold_lifetime(hold_expires_in_seconds)
    cost = expected_cost or 0
    return db.write_raw(lambda tx: _place_hold(tx, agency_id, subteam_id, cost, lifetime))


_INSERT_HOLD = prepared(
    "INSERT INTO holds (id, agency_id, wallet_id, subteam_id, amount, status, created_at, "
    "expires_at) VALUES ({p}, {p}, {p}, {p}, {p}, 'active', {p}, {p})"
)


def _place_hold(
    tx: RawTx, agency_id: str, subteam_id: str, cost: int, lifetime: timedelta
) -> CallAuthorization:
    ledger.lock_wallet(tx, agency_id)
    now = _call_state(tx, agency_id, subteam_id)
    reason = decide_call(
        now.rules, now.period, available=now.available, call_floor=0, expected_cost=cost
    )
    if reason is not None:
        return CallAuthorization(False, reason, now.available, now.currency)
    wallet = ledger.change_held(tx, agency_id=agency_id, delta=cost)
    if wallet is None:  # cannot happen under the lock: checked just above
        raise Conflict("the wallet's credits changed while holding them; try again")
    spend.record_spend(tx, subteam_id, now.rules, now.period, spent=0, held_delta=cost)
    placed = Hold(
        new_id("hld"),
        agency_id,
        subteam_id,
        cost,
        "active",
        tx.now,
        tx.now + lifetime,
        None,
        None,
    )
    tx.execute_raw(
        _INSERT_HOLD[tx.dialect],
        (
            placed.id,
            agency_id,
            wallet_id_for(agency_id),
            subteam_id,
            cost,
            bind_time(tx.dialect, tx.now),
            bind_time(tx.dialect, placed.expires_at),
        ),
    )
    if wallet.reload_below is not None and wallet.available < wallet.reload_below:
        trigger_auto_reload(
            tx, agency_id=agency_id, available=wallet.available, currency=wallet.currency
        )
    return CallAuthorization(True, "credits_available", wallet.available, wallet.currency, placed)


# --- ending a hold -----------------------------------------------------------------------

_END = prepared(
    "UPDATE holds SET status = {p}, closed_at = {p} WHERE id = {p} AND agency_id = {p} "
    "AND status = 'active' RETURNING subteam_id, amount"
)
_SUBTEAM_HELD = prepared("UPDATE subteams SET held = held - {p} WHERE id = {p}")


def end_hold(tx: SqlTx, agency_id: str, hold_id: str, status: str) -> bool:
    """End an active hold (released or expired) and give its credits back; caller holds
    the wallet's lock. False when it was not active."""
    row = tx.execute_raw(
        _END[tx.dialect], (status, bind_time(tx.dialect, tx.now), hold_id, agency_id)
    )
    if row is None:
        return False
    subteam_id, amount = row[0], int(row[1])
    ledger.change_held(tx, agency_id=agency_id, delta=-amount)
    tx.execute_raw(_SUBTEAM_HELD[tx.dialect], (amount, subteam_id))
    return True


def release_hold(db: Database, *, agency_id: str, hold_id: str, subteam_id: str | None) -> Hold:
    """Give a live call's credits back (the call did not happen, or cost nothing).
    Releasing a hold that has already ended changes nothing and answers it as it is; a
    subteam key may release only its own subteam's holds."""

    def work(tx: Tx) -> Hold:
        ledger.lock_wallet(tx, agency_id)
        current = _get(tx, agency_id, hold_id, subteam_id)
        if current.status == "active":
            end_hold(tx, agency_id, hold_id, "released")
        return _get(tx, agency_id, hold_id, subteam_id)

    return db.write(work)


def release_subteam_holds(tx: Tx, *, agency_id: str, subteam_id: str) -> list[str]:
    """Release every active hold of a subteam being archived (wallet locked); their ids."""
    ids = list(
        tx.conn.execute(
            select(holds.c.id).where(
                holds.c.agency_id == agency_id,
                holds.c.subteam_id == subteam_id,
                holds.c.status == "active",
            )
        ).scalars()
    )
    for hold_id in ids:
        end_hold(tx, agency_id, hold_id, "released")
    return ids


def expire_due_holds(db: Database, *, limit: int = 200) -> int:
    """The worker's sweep: end holds whose time has passed; how many it ended."""
    due = db.read(
        lambda tx: tx.conn.execute(
            select(holds.c.id, holds.c.agency_id)
            .where(ACTIVE_HOLD, holds.c.expires_at <= tx.now)
            .order_by(holds.c.expires_at)
            .limit(limit)
        ).all()
    )
    ended = 0
    for hold_id, agency_id in due:

        def work(tx: Tx, hold_id: str = hold_id, agency_id: str = agency_id) -> bool:
            ledger.lock_wallet(tx, agency_id)
            return end_hold(tx, agency_id, hold_id, "expired")

        ended += db.write(work)
    return ended


# --- reading -----------------------------------------------------------------------------


def _hold_from_row(m: Any) -> Hold:
    return record(Hold, m)


def _get(tx: Tx, agency_id: str, hold_id: str, subteam_id: str | None) -> Hold:
    stmt = select(holds).where(holds.c.id == hold_id, holds.c.agency_id == agency_id)
    if subteam_id is not None:
        stmt = stmt.where(holds.c.subteam_id == subteam_id)
    row = tx.conn.execute(stmt).one_or_none()
    if row is None:
        raise NotFound(f"hold {hold_id} not found", code="hold_not_found")
    return _hold_from_row(row._mapping)


def list_holds(
    db: Database,
    *,
    agency_id: str,
    subteam_id: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[Hold]:
    """Active holds, newest first (a subteam key sees its own subteam's only)."""
    stmt = select(holds).where(holds.c.agency_id == agency_id, ACTIVE_HOLD)
    if subteam_id is not None:
        stmt = stmt.where(holds.c.subteam_id == subteam_id)
    return paginate(
        db, stmt, holds.c.id, _hold_from_row, limit=limit, cursor=cursor, newest_first=True
    )
