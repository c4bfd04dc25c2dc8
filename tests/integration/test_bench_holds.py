"""`refill bench`'s hold scenarios: a short run produces their figures and leaves the ledger,
the wallets' and the subteams' held credits adding up (no speed is asserted)."""

from __future__ import annotations

from sqlalchemy import func, select

from refill.bench.baseline import BaselineSQL
from refill.bench.fixtures import RawPool
from refill.bench.holds import measure_holds
from refill.bench.measure import ROUNDS
from refill.bench.runner import Bench, BenchConfig
from refill.bootstrap import Refill
from refill.db.database import Tx
from refill.db.schema import holds, subteams
from refill.ledger_check import check_ledger


def _wrong_subteam_held(tx: Tx) -> list[tuple[str, int, int]]:
    active = (
        select(holds.c.subteam_id, func.sum(holds.c.amount).label("held"))
        .where(holds.c.status == "active")
        .group_by(holds.c.subteam_id)
        .subquery()
    )
    rows = tx.conn.execute(
        select(subteams.c.id, subteams.c.held, active.c.held).select_from(
            subteams.outerjoin(active, active.c.subteam_id == subteams.c.id)
        )
    )
    return [(s, int(h), int(a or 0)) for s, h, a in rows if int(h) != int(a or 0)]


def test_hold_scenarios_report_every_figure_and_keep_the_books(refill: Refill) -> None:
    ticks: list[str] = []
    bench = Bench(
        BenchConfig(database_url=refill.db.url, seconds=0.2, clients=[1, 2]),
        on_progress=ticks.append,
    )
    bench.sql = BaselineSQL(refill.db.dialect)
    bench.raw = RawPool(refill)
    try:
        measure_holds(bench, refill)
    finally:
        bench.raw.close()

    figures = [(r.scenario, r.clients) for r in bench.results]
    assert figures == [("authorize-hold", 1), ("authorize-hold", 2), ("settle", 1), ("settle", 2)]
    assert len(ticks) == ROUNDS * len(figures)
    for r in bench.results:
        assert r.baseline is not None
        for side in (r.refill, r.baseline):
            assert side["ops"] > 0, r
            assert side["errors"] == 0, r
            assert side["p99_ms"] >= side["p50_ms"] > 0, r
            assert side["ops_per_s"] > 0, r
        assert r.ratio is not None
        assert r.ratio > 0
    check = refill.db.read(check_ledger)
    assert check.balanced, check
    assert refill.db.read(_wrong_subteam_held) == []
