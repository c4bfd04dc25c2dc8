"""The ledger's invariants, computed from its rows: what tests and operators check after
anything (a crash, a load, a migration) to prove the money adds up."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import and_, func, select

from refill.db.database import Tx
from refill.db.schema import accounts, holds, transfers


@dataclass(frozen=True, slots=True)
class LedgerCheck:
    """The ledger's invariants, computed from the transfers themselves."""

    total: int
    mismatched_wallets: list[tuple[str, int, int]]
    # Wallets whose held credits are not the sum of their active holds: (id, held, sum).
    mismatched_held: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return self.total == 0 and not self.mismatched_wallets and not self.mismatched_held


def check_ledger(tx: Tx) -> LedgerCheck:
    """Sum of all accounts is zero; each wallet's stored balance equals its transfers, and
    its held credits the sum of its active holds."""
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
    active = (
        select(holds.c.wallet_id, func.sum(holds.c.amount).label("held"))
        .where(holds.c.status == "active")
        .group_by(holds.c.wallet_id)
        .subquery()
    )
    held_rows = tx.conn.execute(
        select(accounts.c.id, accounts.c.held, active.c.held)
        .select_from(accounts.outerjoin(active, active.c.wallet_id == accounts.c.id))
        .where(accounts.c.kind == "wallet")
    )
    wrong_held = [
        (account_id, int(held), int(summed or 0))
        for account_id, held, summed in held_rows
        if int(held) != int(summed or 0)
    ]
    return LedgerCheck(total=total, mismatched_wallets=mismatched, mismatched_held=wrong_held)
