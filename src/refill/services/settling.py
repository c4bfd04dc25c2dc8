"""Settling a live call: the usage that names its hold releases the hold and is debited in
one transaction, exactly once, never refused while the hold is active, never below zero and
never past the subteam's limits (what cannot be covered is recorded as ``uncovered``)."""

from __future__ import annotations

from datetime import datetime

from refill import ledger
from refill.db.database import RawTx, bind_time, prepared
from refill.errors import Conflict, NotFound
from refill.ledger import Posted, TransferKind
from refill.money import format_amount
from refill.notify.events import EventType, emit
from refill.services import spend
from refill.services.holds import end_hold


class HoldSettled(Conflict):
    code = "hold_already_settled"


_SETTLE = prepared(
    "UPDATE holds SET status = 'settled', closed_at = {p} WHERE id = {p} AND agency_id = {p} "
    "AND status = 'active' AND expires_at > {p} RETURNING subteam_id, amount"
)
_LOOK = prepared("SELECT status, subteam_id FROM holds WHERE id = {p} AND agency_id = {p}")
_LINK = prepared("UPDATE holds SET transfer_id = {p} WHERE id = {p}")


def settle(
    tx: RawTx,
    *,
    agency_id: str,
    subteam_id: str,
    hold_id: str,
    amount: int,
    reference: str,
    description: str | None,
    occurred_at: datetime | None = None,
) -> Posted | None:
    """Settle a live call: release its hold and debit its usage, in this transaction.

    Never refused while the hold is active (even if the subteam was paused since): the
    debit takes at most the hold plus what is available and what the subteam's spend
    limits leave, and the rest is recorded as ``uncovered``: never a negative balance, and
    never a limit passed. None when the hold is no longer active
    (expired or released): the usage is then plain usage.
    """
    available = ledger.lock_wallet(tx, agency_id)
    now = bind_time(tx.dialect, tx.now)
    row = tx.execute_raw(_SETTLE[tx.dialect], (now, hold_id, agency_id, now))
    if row is None:
        _not_active(tx, agency_id, hold_id, subteam_id)
        return None
    if row[0] != subteam_id:
        raise _mismatch(hold_id, row[0], subteam_id)
    held = int(row[1])
    now = spend.read_rules(tx, agency_id, subteam_id)
    if now is None:  # the hold's foreign key names it: not on a sound database
        raise NotFound(f"subteam {subteam_id} not found", code="subteam_not_found")
    # At most the hold plus what is available, and what the subteam's limits leave.
    debit = min(amount, available + held)
    room = spend.settle_room(now.rules, now.period, hold=held)
    capped_by = "available_credits"
    if room is not None and room < debit:
        debit, capped_by = room, "spend_limit"
    uncovered = amount - debit or None
    posted = ledger.debit_wallet(
        tx,
        agency_id=agency_id,
        to=ledger.SystemAccount.USAGE_REVENUE,
        amount=debit,
        kind=TransferKind.USAGE,
        reference=reference,
        subteam_id=subteam_id,
        description=description,
        release_held=held,
        uncovered=uncovered,
        occurred_at=occurred_at,
    )
    spend.record_spend(tx, subteam_id, now.rules, now.period, spent=debit, held_delta=-held)
    tx.execute_raw(_LINK[tx.dialect], (posted.transfer.id, hold_id))
    if uncovered is not None:
        currency = posted.currency
        emit(
            tx,
            agency_id,
            EventType.USAGE_UNCOVERED,
            {
                "subteam_id": subteam_id,
                "reference": reference,
                "hold_id": hold_id,
                "amount": format_amount(amount, currency),
                "debited": format_amount(debit, currency),
                "uncovered": format_amount(uncovered, currency),
                "currency": currency,
                "capped_by": capped_by,
            },
        )
    return posted


def _mismatch(hold_id: str, placed_for: str, subteam_id: str) -> Conflict:
    return Conflict(
        f"hold {hold_id} was placed for subteam {placed_for}, not {subteam_id}",
        code="hold_subteam_mismatch",
    )


def _not_active(tx: RawTx, agency_id: str, hold_id: str, subteam_id: str) -> None:
    looked = tx.execute_raw(_LOOK[tx.dialect], (hold_id, agency_id))
    if looked is None:
        raise NotFound(f"hold {hold_id} not found", code="hold_not_found")
    status, held_for = looked
    if held_for != subteam_id:
        raise _mismatch(hold_id, held_for, subteam_id)
    if status == "settled":
        raise HoldSettled(f"hold {hold_id} was already settled by another usage")
    if status == "active":  # past its time, not swept yet: it expires now
        end_hold(tx, agency_id, hold_id, "expired")
