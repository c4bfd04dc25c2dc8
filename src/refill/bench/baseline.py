"""The baseline: the smallest hand-written SQL that keeps the same guarantees as Refill.

One transaction per usage: a balance-checked UPDATE of the wallet and an INSERT of the
transfer with its unique reference, on the raw driver connection (no SQLAlchemy, no
service layer). Refill's throughput is reported as a ratio of this, measured in the same
run, on the same database, driver and concurrency.

Holds get the same treatment: placing one is a held-checked UPDATE of the wallet that finds
it through the subteam (an unknown, archived, paused or limited subteam holds nothing), an
UPDATE of the subteam's held credits and an INSERT of the hold; settling one closes the
hold, debits the wallet releasing what it held, gives the subteam its held credits back,
inserts the transfer and links the hold to it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from refill.db.database import bind_time
from refill.ids import new_id


class BaselineInsufficient(Exception):
    pass


class BaselineRefused(Exception):
    """The hold to settle is not active (or not the subteam's)."""


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
            "kind, reference, subteam_id, wallet_balance_after, created_at, occurred_at) "
            f"VALUES ({p}, {p}, {p}, {p}, 'usage', {p}, {p}, {p}, {p}, {p})"
        )
        self.authorize = (
            "SELECT a.balance FROM subteams s JOIN accounts a ON a.id = s.wallet_id "  # noqa: S608  only the placeholder is put in
            f"WHERE s.id = {p} AND s.agency_id = {p}"
        )
        self.hold_wallet = (
            f"UPDATE accounts SET held = held + {p} WHERE id = (SELECT wallet_id FROM subteams "  # noqa: S608  only the placeholder is put in
            f"WHERE id = {p} AND agency_id = {p} AND archived_at IS NULL AND paused_at IS NULL "
            "AND daily_spend_limit IS NULL AND monthly_spend_limit IS NULL) "
            f"AND balance >= held + {p} RETURNING balance - held"
        )
        self.subteam_held = f"UPDATE subteams SET held = held + {p} WHERE id = {p}"  # noqa: S608  only the placeholder is put in
        self.insert_hold = (
            "INSERT INTO holds (id, agency_id, wallet_id, subteam_id, amount, status, "  # noqa: S608  only the placeholder is put in
            f"created_at, expires_at) VALUES ({p}, {p}, {p}, {p}, {p}, 'active', {p}, {p})"
        )
        self.close_hold = (
            f"UPDATE holds SET status = 'settled', closed_at = {p} WHERE id = {p} "  # noqa: S608  only the placeholder is put in
            f"AND agency_id = {p} AND subteam_id = {p} AND status = 'active' "
            f"AND expires_at > {p} RETURNING amount"
        )
        self.settle_wallet = (
            f"UPDATE accounts SET balance = balance - {p}, held = held - {p} WHERE id = {p} "  # noqa: S608  only the placeholder is put in
            f"AND balance - {p} >= held - {p} RETURNING balance"
        )
        self.settled_transfer = self.transfer + " RETURNING id"
        self.link_hold = f"UPDATE holds SET transfer_id = {p} WHERE id = {p}"  # noqa: S608  only the placeholder is put in

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
                (
                    agency_id,
                    wallet_id,
                    revenue_id,
                    amount,
                    reference,
                    subteam_id,
                    row[0],
                    created,
                    created,
                ),
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

    def place_hold(
        self,
        conn: Any,
        *,
        agency_id: str,
        wallet_id: str,
        subteam_id: str,
        amount: int,
        lifetime: timedelta,
    ) -> str | None:
        """Hold ``amount`` for a subteam's call in one transaction; the hold's id, or None
        when it is refused (nothing written)."""
        now = datetime.now(UTC)
        hold_id = new_id("hld")
        cur = conn.cursor()
        try:
            if self.begin:
                cur.execute(self.begin)
            cur.execute(self.hold_wallet, (amount, subteam_id, agency_id, amount))
            if cur.fetchone() is None:
                conn.rollback()
                return None
            cur.execute(self.subteam_held, (amount, subteam_id))
            cur.execute(
                self.insert_hold,
                (
                    hold_id,
                    agency_id,
                    wallet_id,
                    subteam_id,
                    amount,
                    bind_time(self.dialect, now),
                    bind_time(self.dialect, now + lifetime),
                ),
            )
            conn.commit()
            return hold_id
        except BaseException:
            conn.rollback()
            raise
        finally:
            cur.close()

    def settle_hold(
        self,
        conn: Any,
        *,
        agency_id: str,
        wallet_id: str,
        revenue_id: str,
        subteam_id: str,
        hold_id: str,
        amount: int,
        reference: str,
    ) -> int:
        """Settle a live call's hold with its usage in one transaction; the transfer's id."""
        at = bind_time(self.dialect, datetime.now(UTC))
        cur = conn.cursor()
        try:
            if self.begin:
                cur.execute(self.begin)
            cur.execute(self.close_hold, (at, hold_id, agency_id, subteam_id, at))
            hold = cur.fetchone()
            if hold is None:
                raise BaselineRefused(hold_id)
            held = int(hold[0])
            cur.execute(self.settle_wallet, (amount, held, wallet_id, amount, held))
            wallet = cur.fetchone()
            if wallet is None:
                raise BaselineInsufficient(wallet_id)
            cur.execute(self.subteam_held, (-held, subteam_id))
            cur.execute(
                self.settled_transfer,
                (
                    agency_id,
                    wallet_id,
                    revenue_id,
                    amount,
                    reference,
                    subteam_id,
                    wallet[0],
                    at,
                    at,
                ),
            )
            transfer_id = int(cur.fetchone()[0])
            cur.execute(self.link_hold, (transfer_id, hold_id))
            conn.commit()
            return transfer_id
        except BaseException:
            conn.rollback()
            raise
        finally:
            cur.close()
