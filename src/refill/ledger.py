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

from sqlalchemy import and_, bindparam, func, insert, select, update

from refill.db.database import SqlTx, Tx, bind_time, dialect_insert, prepared
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


@dataclass(frozen=True, slots=True)
class Posted:
    """A transfer just written, with what the wallet looks like after it."""

    transfer: Transfer
    balance: int
    currency: str
    reload_below: int | None


class DuplicateReference(Exception):
    """The reference is taken; raised to roll the transaction back (not an API error)."""

    def __init__(self, kind: str, reference: str) -> None:
        super().__init__(f"{kind} reference {reference!r} already used")
        self.kind = kind
        self.reference = reference


def create_wallet(tx: Tx, *, agency_id: str, currency: str) -> str:
    wallet_id = wallet_id_for(agency_id)
    ensure_system_accounts(tx, currency)
    tx.conn.execute(
        insert(accounts).values(
            id=wallet_id,
            agency_id=agency_id,
            kind="wallet",
            currency=currency,
            balance=0,
            reload_below=None,
            created_at=tx.now,
        )
    )
    return wallet_id


def ensure_system_accounts(tx: Tx, currency: str) -> None:
    """Create the per-currency system accounts if this is the currency's first wallet."""
    rows = [
        {
            "id": system_account_id(kind, currency),
            "agency_id": None,
            "kind": kind.value,
            "currency": currency,
            "balance": 0,
            "created_at": tx.now,
        }
        for kind in SystemAccount
    ]
    tx.conn.execute(dialect_insert(tx)(accounts).values(rows).on_conflict_do_nothing())


# The two statements of every posting, as prepared SQL run on the transaction's own cursor:
# building SQLAlchemy expressions per call cost four times the database work (see the
# benchmark notes in the README).
_MOVE = prepared(
    "UPDATE accounts SET balance = balance + {p} WHERE id = {p} AND balance + {p} >= 0 "
    "RETURNING balance, currency, reload_below, alert_below"
)
_INSERT_TRANSFER = prepared(
    "INSERT INTO transfers (agency_id, debit_account_id, credit_account_id, amount, kind, "
    "reference, subteam_id, description, metadata, wallet_balance_after, created_at) "
    "VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}) "
    "ON CONFLICT (agency_id, kind, reference) DO NOTHING RETURNING id"
)
# A subteam's usage finds the wallet through the subteam's row, in the same statement: an
# unknown or archived subteam moves nothing (one primary-key read, no statement added).
_MOVE_FOR_SUBTEAM = prepared(
    "UPDATE accounts SET balance = balance + {p} WHERE id = (SELECT wallet_id FROM subteams "
    "WHERE id = {p} AND agency_id = {p} AND archived_at IS NULL) AND balance + {p} >= 0 "
    "RETURNING balance, currency, reload_below, alert_below"
)
_BALANCE = prepared("SELECT balance, currency FROM accounts WHERE id = {p}")


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
) -> Posted | None:
    """Change the wallet's balance by ``delta`` (never below zero) and write the transfer.

    Returns None when the wallet cannot cover a debit, or the subteam named is unknown or
    archived (nothing written). Raises DuplicateReference when the reference is taken; the
    caller's transaction must then roll back, since the balance was already changed.
    """
    wallet_id = wallet_id_for(agency_id)
    if subteam_id is None:
        row = tx.execute_raw(_MOVE[tx.dialect], (delta, wallet_id, delta))
    else:
        row = tx.execute_raw(_MOVE_FOR_SUBTEAM[tx.dialect], (delta, subteam_id, agency_id, delta))
    if row is None:
        return None
    balance, currency, reload_below, alert_below = row
    other = system_account_id(counterparty, currency)
    debit, credit = (wallet_id, other) if delta < 0 else (other, wallet_id)
    encoded = json.dumps(metadata, sort_keys=True) if metadata else None
    inserted = tx.execute_raw(
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
            balance,
            bind_time(tx.dialect, tx.now),
        ),
    )
    if inserted is None:
        raise DuplicateReference(kind.value, reference)
    # What the owner must be told (calls refused, possible again, balance low), in the
    # same transaction as the movement.
    balance_events.after_posting(
        tx,
        agency_id=agency_id,
        currency=currency,
        before=int(balance) - delta,
        after=int(balance),
        alert_below=alert_below,
    )
    transfer = Transfer(
        id=int(inserted[0]),
        agency_id=agency_id,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        kind=kind.value,
        reference=reference,
        subteam_id=subteam_id,
        description=description,
        metadata=metadata,
        wallet_balance_after=int(balance),
        created_at=tx.now,
    )
    return Posted(transfer, int(balance), currency, reload_below)


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
) -> Posted:
    """Move ``amount`` out of the agency's wallet, refusing to go below zero.

    Raises :class:`InsufficientCredits` (nothing written; also when ``subteam_id`` is
    unknown or archived, which the caller tells apart on this rare path) or
    :class:`DuplicateReference` (the caller must roll back: the balance was already
    updated in this transaction).
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
    )
    if posted is not None:
        return posted
    wallet = tx.execute_raw(_BALANCE[tx.dialect], (wallet_id_for(agency_id),))
    if wallet is None:
        raise NotFound(f"agency {agency_id} has no wallet")
    raise InsufficientCredits(
        "the wallet does not hold enough credits for this usage",
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
    return Transfer(
        id=row["id"],
        agency_id=row["agency_id"],
        debit_account_id=row["debit_account_id"],
        credit_account_id=row["credit_account_id"],
        amount=row["amount"],
        kind=row["kind"],
        reference=row["reference"],
        subteam_id=row["subteam_id"],
        description=row["description"],
        metadata=json.loads(row["metadata"]) if row["metadata"] else None,
        wallet_balance_after=row["wallet_balance_after"],
        created_at=row["created_at"],
    )


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


_READ_WALLET = select(accounts.c.balance).where(accounts.c.id == bindparam("wallet_id"))
# SQLite's BEGIN IMMEDIATE already holds the database's one write lock.
_LOCK_WALLET = _READ_WALLET.with_for_update()


def lock_wallet(tx: Tx, agency_id: str) -> int:
    """Lock the wallet row for the rest of the transaction and return its balance.

    Every path that may start a reload locks the wallet first, so the trigger decision and
    the debit that crossed the threshold are serialized on the same row.
    """
    stmt = _LOCK_WALLET if tx.dialect == "postgresql" else _READ_WALLET
    balance = tx.conn.execute(stmt, {"wallet_id": wallet_id_for(agency_id)}).scalar()
    if balance is None:
        raise NotFound(f"agency {agency_id} has no wallet")
    return int(balance)


@dataclass(frozen=True, slots=True)
class LedgerCheck:
    """The ledger's invariants, computed from the transfers themselves."""

    total: int
    mismatched_wallets: list[tuple[str, int, int]]

    @property
    def balanced(self) -> bool:
        return self.total == 0 and not self.mismatched_wallets


def check_ledger(tx: Tx) -> LedgerCheck:
    """Sum of all accounts is zero; each wallet's stored balance equals its transfers."""
    credits = select(
        transfers.c.credit_account_id.label("account_id"), transfers.c.amount.label("amt")
    )
    debits = select(
        transfers.c.debit_account_id.label("account_id"), (-transfers.c.amount).label("amt")
    )
    movements = credits.union_all(debits).subquery()
    sums = (
        select(movements.c.account_id, func.sum(movements.c.amt).label("net"))
        .group_by(movements.c.account_id)
        .subquery()
    )
    total = 0
    mismatched: list[tuple[str, int, int]] = []
    rows = tx.conn.execute(
        select(accounts.c.id, accounts.c.kind, accounts.c.balance, sums.c.net).select_from(
            accounts.outerjoin(sums, and_(sums.c.account_id == accounts.c.id))
        )
    )
    for account_id, kind, stored, net in rows:
        net = int(net or 0)
        total += net
        if kind == "wallet" and int(stored) != net:
            mismatched.append((account_id, int(stored), net))
    return LedgerCheck(total=total, mismatched_wallets=mismatched)
