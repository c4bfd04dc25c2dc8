"""The http-usage benchmark's baseline: the same SQL guarantees on a bare route, mounted
only with ``REFILL_BENCH_ROUTES=1`` (``refill bench`` starts such a server)."""

from __future__ import annotations

from fastapi import FastAPI

from refill.bench.baseline import BaselineSQL
from refill.bootstrap import Refill
from refill.ids import system_account_id, wallet_id_for


def install_bench_route(app: FastAPI, refill: Refill) -> None:
    sql = BaselineSQL(refill.db.dialect)
    revenue = system_account_id("usage_revenue", "USD")

    @app.post("/bench/baseline-usage", include_in_schema=False)
    def bench_baseline_usage(body: dict[str, str]) -> dict[str, int]:
        conn = refill.db.engine.raw_connection()
        try:
            balance = sql.record_usage(
                conn,
                agency_id=body["agency_id"],
                wallet_id=wallet_id_for(body["agency_id"]),
                revenue_id=revenue,
                subteam_id=body["subteam_id"],
                amount=100_000,
                reference=body["reference"],
            )
        finally:
            conn.close()
        return {"balance": balance}
