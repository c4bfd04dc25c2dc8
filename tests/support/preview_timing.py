"""How long the backtest takes for a busy wallet: 150,000 usage events over 30 days.

    python -m tests.support.preview_timing [--database URL] [--events 150000]

A measurement for the closing note, not a test: it builds a scratch database (a fresh
SQLite file by default), writes the usage rows in bulk (one statement per 10,000, spread
evenly over the 30 days before the clock's now), and times three previews.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy import text

from refill import services
from refill.bootstrap import build
from refill.clock import FrozenClock
from refill.config import Settings
from refill.db.database import Tx, create_db_engine
from refill.db.migrate import upgrade
from refill.ids import system_account_id, wallet_id_for
from refill.reload.settings import SettingsChange
from refill.services import preview as previews

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
USD = 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default=None)
    parser.add_argument("--events", type=int, default=150_000)
    args = parser.parse_args()
    os.environ.setdefault("REFILL_SECRET_KEY", "dGVzdHMtb2YtcmVmaWxsLWEta2V5LW9mLTMyLWJ5dGVzISE=")
    url = args.database or f"sqlite:///{tempfile.mkdtemp()}/preview.db"
    engine = create_db_engine(url)
    upgrade(engine)
    engine.dispose()
    # The wallet opens before the 30 days replayed (a backtest starts no earlier).
    clock = FrozenClock(NOW - timedelta(days=31))
    refill = build(Settings(database_url=url), clock=clock, in_process_worker=False)
    agency, _ = services.create_agency(refill.db, name="Busy Agency")
    subteam = services.create_subteam(refill.db, agency_id=agency.id, name="Calls")
    services.grant_credits(refill.db, agency_id=agency.id, amount=10**6 * USD, reference="g")
    clock.set(NOW)
    step = timedelta(days=30) / args.events
    first = NOW - timedelta(days=30)

    def fill(tx: Tx, offset: int, count: int) -> None:
        rows = [
            {
                "agency": agency.id,
                "wallet": wallet_id_for(agency.id),
                "revenue": system_account_id("usage_revenue", "USD"),
                "reference": f"u{offset + i}",
                "subteam": subteam.id,
                "at": first + step * (offset + i),
            }
            for i in range(count)
        ]
        tx.conn.execute(
            text(
                "INSERT INTO transfers (agency_id, debit_account_id, credit_account_id, amount, "
                "kind, reference, subteam_id, wallet_balance_after, created_at, occurred_at) "
                "VALUES (:agency, :wallet, :revenue, 50000, 'usage', :reference, :subteam, 0, "
                ":at, :at)"
            ).bindparams(),
            [{**r, "at": r["at"] if tx.dialect != "sqlite" else _naive(r["at"])} for r in rows],
        )

    for offset in range(0, args.events, 10_000):
        refill.db.write(partial(fill, offset=offset, count=min(10_000, args.events - offset)))
    change = SettingsChange(threshold=100 * USD, reload_amount=500 * USD)
    for _ in range(3):
        began = time.perf_counter()
        result = previews.preview(
            refill.db, refill.policy, agency_id=agency.id, currency="USD", change=change
        )
        took = time.perf_counter() - began
        print(  # noqa: T201  the measurement's output
            f"{refill.db.dialect}: {args.events} events, preview {took:.2f} s "
            f"({len(result.proposed.reloads)} reloads proposed, {len(result.as_was.series)} points)"
        )
    refill.close()


def _naive(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


if __name__ == "__main__":
    main()
