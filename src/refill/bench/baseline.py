"""The baseline: the smallest hand-written SQL that keeps the same guarantees as Refill.

One transaction per usage: a balance-checked UPDATE of the wallet and an INSERT of the
transfer with its unique reference, on the raw driver connection (no SQLAlchemy, no
service layer). Refill's throughput is reported as a ratio of this, measured in the same
run, on the same database, driver and concurrency.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


class BaselineInsufficient(Exception):
    pass


def _param(dialect: str) -> str:
    return "%s" if dialect == "postgresql" else "?"


class BaselineSQL:
    def __init__(self, dialect: str) -> None:
        p = _param(dialect)
        self.dialect = dialect
        self.begin = "BEGIN IMMEDIATE" if dialect == "sqlite" else None
        self.debit = (
            f"UPDATE accounts SET balance = balance - {p} "  # noqa: S608  only the placeholder is put in
            f"WHERE id = {p} AND balance >= {p} RETURNING balance"
        )
        self.transfer = (
            "INSERT INTO transfers (agency_id, debit_account_id, credit_account_id, amount, "  # noqa: S608  only the placeholder is put in
            "kind, reference, subteam_id, wallet_balance_after, created_at) "
            f"VALUES ({p}, {p}, {p}, {p}, 'usage', {p}, {p}, {p}, {p})"
        )
        self.authorize = (
            "SELECT a.balance FROM subteams s JOIN accounts a ON a.id = s.wallet_id "  # noqa: S608  only the placeholder is put in
            f"WHERE s.id = {p} AND s.agency_id = {p}"
        )

    def record_usage(
        self,
        conn: Any,
        *,
        agency_id: str,
        wallet_id: str,
        revenue_id: str,
        subteam_id: str,
        amount: int,
        reference: str,
    ) -> int:
        """One usage in one transaction; returns the new balance."""
        cur = conn.cursor()
        try:
            if self.begin:
                cur.execute(self.begin)
            cur.execute(self.debit, (amount, wallet_id, amount))
            row = cur.fetchone()
            if row is None:
                conn.rollback()
                raise BaselineInsufficient(wallet_id)
            now = datetime.now(UTC)
            created = now.replace(tzinfo=None) if self.dialect == "sqlite" else now
            cur.execute(
                self.transfer,
                (agency_id, wallet_id, revenue_id, amount, reference, subteam_id, row[0], created),
            )
            conn.commit()
            return int(row[0])
        except BaseException:
            conn.rollback()
            raise
        finally:
            cur.close()

    def authorize_call(self, conn: Any, *, agency_id: str, subteam_id: str) -> bool:
        cur = conn.cursor()
        try:
            if self.dialect == "sqlite":
                cur.execute("BEGIN")
            cur.execute(self.authorize, (subteam_id, agency_id))
            row = cur.fetchone()
            conn.commit()
            return row is not None and row[0] > 0
        finally:
            cur.close()
