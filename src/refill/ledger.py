"""The double-entry ledger: the only writer of balances.

Every movement is one immutable row in ``transfers`` from a debit account to a credit
account. Wallets keep a stored balance, updated in the same transaction as the transfer;
system accounts (card funding, manual funding, usage revenue, granted credits; one per kind
and currency) do not, so that no single row is written by every agency. Rows are never
updated or deleted: a correction is a new transfer.

Each posting is two statements: a balance-checked ``UPDATE ... RETURNING`` of the wallet
and an ``INSERT ... ON CONFLICT DO NOTHING`` of the transfer, whose unique reference makes
a repeated request detectable inside the same transaction. A posting that crosses what the
owner must know (no credits, credits again, low balance) writes its event in the same
transaction (``notify.balance``), from what the UPDATE returned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update

from refill.db.database import SqlTx, Tx, bind_time, inserted_id, prepared
from refill.db.rows import record
from refill.db.schema import accounts, transfers
from refill.errors import InsufficientCredits, NotFound
from refill.ids import system_account_id, wallet_id_for
from refill.notify import balance as balance_events


class SystemAccount(StrEnum):
    CARD_FUNDING = "card_funding"
    MANUAL_FUNDING = "manual_funding"
    USAGE_REVENUE = "usage_revenue"
    GRANTED_CREDITS = "granted_credits"


class TransferKind(StrEnum):
    USAGE = "usage"
    AUTO_RELOAD = "auto_reload"
    MANUAL_RELOAD = "manual_reload"
    GRANT = "grant"
    ADJUSTMENT = "adjustment"


@dataclass(frozen=True, slots=True)
class Transfer:
    id: int
    agency_id: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    kind: str
    reference: str
    subteam_id: str | None
    description: str | None
    metadata: dict[str, Any] | None
    wallet_balance_after: int
    created_at: datetime
    # Settling a hold: the part of the call's cost the wallet could not cover.
    uncovered: int | None = None
    # When it happened: created_at, except usage reported late.
    occurred_at: datetime | None = None

    @property
    def happened_at(self) -> datetime:
        return self.occurred_at or self.created_at


@dataclass(frozen=True, slots=True)
class Posted:
    """A transfer just written, with what the wallet looks like after it."""

    transfer: Transfer
    wallet: WalletRow

    @property
    def balance(self) -> int:
        return self.wallet.balance

    @property
    def available(self) -> int:
        return self.wallet.available

    @property
    def currency(self) -> str:
        return self.wallet.currency

    @property
    def below_reload_level(self) -> bool:
        """Available credits are below the auto-reload threshold (while it is active)."""
        level = self.wallet.reload_below
        return level is not None and self.wallet.available < level


class DuplicateReference(Exception):
    """The reference is taken; raised to roll the transaction back (not an API error)."""

    def __init__(self, kind: str, reference: str) -> None:
        super().__init__(f"{kind} reference {reference!r} already used")
        self.kind = kind
        self.reference = reference


# The two statements of every posting, as prepared SQL run on the transaction's own cursor:
# building SQLAlchemy expressions per call cost four times the database work (see the
# benchmark notes in the README). A posting never takes the wallet below the credits its
# live calls hold (``held``; the table's CHECK says the same); settling a call releases its
# hold in the same statement (the second parameter, 0 otherwise).
_MOVE = prepared(
    "UPDATE accounts SET balance = balance + {p}, held = held + {p} WHERE id = {p} "
    "AND balance + {p} >= held + {p} "
    "RETURNING balance, held, currency, reload_below, alert_below, call_floor"
)
_INSERT_TRANSFER = inserted_id(
    "INSERT INTO transfers (agency_id, debit_account_id, credit_account_id, amount, kind, "
    "reference, subteam_id, description, metadata, wallet_balance_after, uncovered, "
    "created_at, occurred_at) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, "
    "{p}, {p}) "
    "ON CONFLICT (agency_id, kind, reference) DO NOTHING"
)
# A subteam's usage finds the wallet through the subteam's row, in the same statement: an
# unknown or archived subteam moves nothing (one primary-key read, no statement added).
# A wallet with a paused or limited subteam (``subteam_rules``) is left alone too: its usage
# takes the checked path (``services.spend``). That flag is on the row being updated, so a
# debit that waited for the wallet's lock sees a pause committed meanwhile.
_MOVE_FOR_SUBTEAM = prepared(
    "UPDATE accounts SET balance = balance + {p} WHERE id = (SELECT wallet_id FROM subteams "
    "WHERE id = {p} AND agency_id = {p} AND archived_at IS NULL) AND balance + {p} >= held "
    "AND NOT subteam_rules "
    "RETURNING balance, held, currency, reload_below, alert_below, call_floor"
)
_HOLD = prepared(
    "UPDATE accounts SET held = held + {p} WHERE id = {p} AND balance >= held + {p} "
    "RETURNING balance, held, currency, reload_below, alert_below, call_floor"
)
_BALANCE = prepared("SELECT balance - held, currency FROM accounts WHERE id = {p}")


@dataclass(frozen=True, slots=True)
class WalletRow:
    """What a statement that changed the wallet's row returned."""

    balance: int
    held: int
    currency: str
    reload_below: int | None
    alert_below: int | None
    call_floor: int

    @property
    def available(self) -> int:
        return self.balance - self.held

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> WalletRow:
        # BIGINT columns: both drivers hand back Python ints (or None), nothing to convert.
        return cls(*row)


def after_change(tx: SqlTx, agency_id: str, wallet: WalletRow, available_before: int) -> None:
    """What the owner must be told (calls refused, possible again, credits low), in the
    same transaction as the change, from what its statement returned."""
    balance_events.after_posting(
        tx,
        agency_id=agency_id,
        currency=wallet.currency,
        before=available_before,
        after=wallet.available,
        alert_below=wallet.alert_below,
        call_floor=wallet.call_floor,
    )


def change_held(tx: SqlTx, *, agency_id: str, delta: int) -> WalletRow | None:
    """Hold (``delta`` > 0) or release credits for live calls: no transfer, no money moved.
    None when the wallet's available credits cannot cover the hold (nothing changed)."""
    row = tx.execute_raw(_HOLD[tx.dialect], (delta, wallet_id_for(agency_id), delta))
    if row is None:
        return None
    wallet = WalletRow.of(row)
    after_change(tx, agency_id, wallet, wallet.available + delta)
    return wallet


def _post(
    tx: SqlTx,
    *,
    agency_id: str,
    delta: int,
    counterparty: SystemAccount,
    amount: int,
    kind: TransferKind,
    reference: str,
    subteam_id: str | None,
    description: str | None,
    metadata: dict[str, Any] | None,
    via_subteam: bool = False,
    release_held: int = 0,
    uncovered: int | None = None,
    occurred_at: datetime | None = None,
) -> Posted | None:
    """Change the wallet's balance by ``delta`` (never below what it holds) and write the
    transfer.

    Returns None when the wallet cannot cover a debit, or (``via_subteam``) the subteam
    named is unknown or archived or its wallet has subteam rules (nothing written). Raises
    DuplicateReference when the reference is taken; the caller's transaction must then roll
    back, since the balance was already changed.
    """
    wallet_id = wallet_id_for(agency_id)
    if via_subteam:
        row = tx.execute_raw(_MOVE_FOR_SUBTEAM[tx.dialect], (delta, subteam_id, agency_id, delta))
    else:
        row = tx.execute_raw(
            _MOVE[tx.dialect], (delta, -release_held, wallet_id, delta, -release_held)
        )
    if row is None:
        return None
    wallet = WalletRow.of(row)
    other = system_account_id(counterparty, wallet.currency)
    debit, credit = (wallet_id, other) if delta < 0 else (other, wallet_id)
    encoded = json.dumps(metadata, sort_keys=True) if metadata else None
    transfer_id = tx.insert_raw(
        _INSERT_TRANSFER[tx.dialect],
        (
            agency_id,
            debit,
            credit,
            amount,
            kind.value,
            reference,
            subteam_id,
            description,
            encoded,
            wallet.balance,
            uncovered,
            now := bind_time(tx.dialect, tx.now),
            now if occurred_at is None else bind_time(tx.dialect, occurred_at),
        ),
    )
    if transfer_id is None:
        raise DuplicateReference(kind.value, reference)
    after_change(tx, agency_id, wallet, wallet.available - delta - release_held)
    transfer = Transfer(
        id=transfer_id,
        agency_id=agency_id,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        kind=kind.value,
        reference=reference,
        subteam_id=subteam_id,
        description=description,
        metadata=metadata,
        wallet_balance_after=wallet.balance,
        created_at=tx.now,
        uncovered=uncovered,
        occurred_at=occurred_at or tx.now,
    )
    return Posted(transfer, wallet)


def post_usage(
    tx: SqlTx,
    *,
    agency_id: str,
    subteam_id: str,
    amount: int,
    reference: str,
    description: str | None,
    occurred_at: datetime | None = None,
) -> Posted | None:
    """The hot path's debit: two statements, the subteam checked inside the first. None
    when it cannot apply as it is (no credits, unknown or archived subteam, or a wallet with
    subteam rules): the caller takes the checked path, in the same transaction (nothing was
    written)."""
    return _post(
        tx,
        agency_id=agency_id,
        delta=-amount,
        counterparty=SystemAccount.USAGE_REVENUE,
        amount=amount,
        kind=TransferKind.USAGE,
        reference=reference,
        subteam_id=subteam_id,
        description=description,
        metadata=None,
        via_subteam=True,
        occurred_at=occurred_at,
    )


def debit_wallet(
    tx: SqlTx,
    *,
    agency_id: str,
    to: SystemAccount,
    amount: int,
    kind: TransferKind,
    reference: str,
    subteam_id: str | None = None,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
    release_held: int = 0,
    uncovered: int | None = None,
    occurred_at: datetime | None = None,
) -> Posted:
    """Move ``amount`` out of the agency's wallet, refusing to take it below the credits
    held for live calls (``release_held``: a hold this debit settles, released in the same
    statement).

    Raises :class:`InsufficientCredits` (nothing written) or :class:`DuplicateReference`
    (the caller must roll back: the balance was already updated in this transaction).
    """
    posted = _post(
        tx,
        agency_id=agency_id,
        delta=-amount,
        counterparty=to,
        amount=amount,
        kind=kind,
        reference=reference,
        subteam_id=subteam_id,
        description=description,
        metadata=metadata,
        release_held=release_held,
        uncovered=uncovered,
        occurred_at=occurred_at,
    )
    if posted is not None:
        return posted
    wallet = tx.execute_raw(_BALANCE[tx.dialect], (wallet_id_for(agency_id),))
    if wallet is None:
        raise NotFound(f"agency {agency_id} has no wallet")
    raise InsufficientCredits(
        "the wallet does not have enough available credits for this",
        available=int(wallet[0]),
        currency=wallet[1],
    )


def credit_wallet(
    tx: SqlTx,
    *,
    agency_id: str,
    source: SystemAccount,
    amount: int,
    kind: TransferKind,
    reference: str,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Posted:
    """Move ``amount`` from a system account into the agency's wallet."""
    posted = _post(
        tx,
        agency_id=agency_id,
        delta=amount,
        counterparty=source,
        amount=amount,
        kind=kind,
        reference=reference,
        subteam_id=None,
        description=description,
        metadata=metadata,
    )
    if posted is None:
        raise NotFound(f"agency {agency_id} has no wallet")
    return posted


def find_transfer(tx: Tx, *, agency_id: str, kind: TransferKind, reference: str) -> Transfer | None:
    row = tx.conn.execute(
        select(transfers).where(
            transfers.c.agency_id == agency_id,
            transfers.c.kind == kind.value,
            transfers.c.reference == reference,
        )
    ).one_or_none()
    return None if row is None else transfer_from_row(row._mapping)


def transfer_from_row(row: Any) -> Transfer:
    metadata = json.loads(row["metadata"]) if row["metadata"] else None
    return record(Transfer, row, metadata=metadata)


def wallet_balance(tx: Tx, agency_id: str) -> int:
    balance = tx.conn.execute(
        select(accounts.c.balance).where(accounts.c.id == wallet_id_for(agency_id))
    ).scalar()
    if balance is None:
        raise NotFound(f"agency {agency_id} has no wallet")
    return int(balance)


def set_levels(
    tx: Tx, agency_id: str, *, reload_below: int | None, alert_below: int | None
) -> None:
    """Record on the wallet row the levels a debit checks: the auto-reload trigger (NULL
    while auto-reload is not active) and the low-balance alert in effect (NULL: none)."""
    tx.conn.execute(
        update(accounts)
        .where(accounts.c.id == wallet_id_for(agency_id))
        .values(reload_below=reload_below, alert_below=alert_below)
    )


_READ_WALLET = "SELECT balance - held FROM accounts WHERE id = {p}"
# SQLite's BEGIN IMMEDIATE already holds the database's one write lock.
_LOCK_WALLET = {
    "sqlite": _READ_WALLET.format(p="?"),
    "postgresql": _READ_WALLET.format(p="%s") + " FOR UPDATE",
}


def lock_wallet(tx: SqlTx, agency_id: str) -> int:
    """Lock the wallet row for the rest of the transaction and return its available
    credits (the balance less what live calls hold).

    Every path that may start a reload locks the wallet first, so the trigger decision and
    the debit that crossed the threshold are serialized on the same row. It is also the
    first lock of everything that changes holds or a subteam's counters (wallet, hold,
    subteam), so those never deadlock.
    """
    row = tx.execute_raw(_LOCK_WALLET[tx.dialect], (wallet_id_for(agency_id),))
    if row is None:
        raise NotFound(f"agency {agency_id} has no wallet")
    # The lock may have been waited for: what follows happens now, in lock order.
    tx.read_clock()
    return int(row[0])
