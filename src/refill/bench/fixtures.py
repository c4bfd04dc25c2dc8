"""What the benchmark sets up: agencies with their wallets, a pool of bare connections for
the baseline, and a large ledger for the history scenario."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from refill import ledger, services
from refill.bootstrap import Refill
from refill.db.database import Tx
from refill.ids import system_account_id, wallet_id_for
from refill.reload.policy import MAX_DAILY_LIMIT
from refill.reload.settings import SettingsChange


class RawPool:
    """Baseline connections: checked out of the same engine pool as Refill's for every
    transaction, as a server shares its pool among request threads. (``dedicated=True``
    keeps one connection per client instead: the floor without any pool.)"""

    def __init__(self, refill: Refill, *, dedicated: bool = False) -> None:
        self._engine = refill.db.engine
        self._dedicated = dedicated
        self._conns: dict[int, Any] = {}
        self._lock = threading.Lock()

    @contextmanager
    def connection(self, client: int) -> Iterator[Any]:
        if not self._dedicated:
            pooled = self._engine.raw_connection()
            try:
                yield pooled
            finally:
                pooled.close()
            return
        with self._lock:
            if client not in self._conns:
                self._conns[client] = self._engine.raw_connection()
        yield self._conns[client]

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


@dataclass
class BenchAgency:
    agency_id: str
    subteams: list[str]

    @property
    def wallet_id(self) -> str:
        return wallet_id_for(self.agency_id)


def make_agency(
    refill: Refill,
    name: str,
    *,
    subteams: int,
    grant: int,
    auto_reload: tuple[int, int] | None = None,
) -> BenchAgency:
    db = refill.db
    agency, _ = services.create_agency(db, name=name)
    subteam_ids = [
        services.create_subteam(db, agency_id=agency.id, name=f"line {i}").id
        for i in range(subteams)
    ]

    services.grant_credits(db, agency_id=agency.id, amount=grant, reference="bench-grant")
    if auto_reload is not None:
        threshold, amount = auto_reload
        card, _ = services.save_payment_method(
            db,
            refill.gateway,
            agency_id=agency.id,
            token="pm_card_visa",  # noqa: S106  a sandbox test card, not a secret
            actor="bench",
        )
        services.update_auto_reload(
            db,
            refill.gateway,
            refill.policy,
            agency_id=agency.id,
            currency="USD",
            actor="bench",
            change=SettingsChange(
                enabled=True,
                threshold=threshold,
                reload_amount=amount,
                payment_method_id=card.id,
                daily_limit=MAX_DAILY_LIMIT,
            ),
        )
    return BenchAgency(agency.id, subteam_ids)


def fill_history(refill: Refill, agency: BenchAgency, count: int, *, start: int) -> None:
    """Append ``count`` one-micro usage transfers (and fund them) straight in SQL.

    The one place outside ``ledger.py`` that writes a wallet's balance: set-based inserts
    keep a 1M-row ledger cheap to build for the benchmark (the ledger's own postings would
    take minutes). The wallet's balance and the ledger still agree: a grant of the same
    total is posted through the ledger first, and the balance moves by exactly the sum of
    the rows inserted, in the same transaction. Never used outside ``refill bench``.
    """
    if count <= 0:
        return
    wallet = agency.wallet_id
    revenue = system_account_id("usage_revenue", "USD")

    def work(tx: Tx) -> None:
        now = tx.now
        ledger.credit_wallet(
            tx,
            agency_id=agency.agency_id,
            source=ledger.SystemAccount.GRANTED_CREDITS,
            amount=count,
            kind=ledger.TransferKind.GRANT,
            reference=f"history-{start}",
        )
        series = (
            "WITH RECURSIVE n(x) AS (SELECT :first UNION ALL SELECT x + 1 FROM n "
            "WHERE x < :last) SELECT x FROM n"
            if tx.dialect == "sqlite"
            else "SELECT generate_series(CAST(:first AS BIGINT), CAST(:last AS BIGINT)) AS x"
        )
        tx.conn.execute(
            text(
                "INSERT INTO transfers (agency_id, debit_account_id, credit_account_id, amount, "  # noqa: S608  a fixed query per dialect
                "kind, reference, subteam_id, wallet_balance_after, created_at, occurred_at) "
                f"SELECT :agency, :wallet, :revenue, 1, 'usage', 'h-' || CAST(x AS TEXT), "
                ":subteam, "
                f"1, :now, :now FROM ({series}) AS s"
            ),
            {
                "agency": agency.agency_id,
                "wallet": wallet,
                "revenue": revenue,
                "subteam": agency.subteams[0],
                "now": now.replace(tzinfo=None) if tx.dialect == "sqlite" else now,
                "first": start,
                "last": start + count - 1,
            },
        )
        tx.conn.execute(
            text("UPDATE accounts SET balance = balance - :n WHERE id = :wallet"),
            {"n": count, "wallet": wallet},
        )

    refill.db.write(work)
