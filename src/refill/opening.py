"""Opening accounts: an agency's wallet, and the system accounts of its currency (one per
kind and currency, shared by every agency, created with the currency's first wallet)."""

from __future__ import annotations

from sqlalchemy import insert

from refill.db.database import Tx, dialect_insert
from refill.db.schema import accounts
from refill.ids import system_account_id, wallet_id_for
from refill.ledger import SystemAccount


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
