"""`refill bench`'s HTTP scenarios on one real `refill serve`: http-usage (POST /v1/usage
against the bare baseline route) and usage-batch-http (POST /v1/usage/batch against
POST /v1/usage)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from refill import services
from refill.bench.batch import SIZES, record_http_batches
from refill.bench.http_load import measure_http_usage
from refill.bench.measure import ROUNDS
from refill.bootstrap import Refill

if TYPE_CHECKING:
    from refill.bench.runner import Bench


def measure_http(bench: Bench, refill: Refill, url: str) -> None:
    agency, key = services.create_agency(refill.db, name=f"http-{bench.run_id}")
    subteam = services.create_subteam(refill.db, agency_id=agency.id, name="line").id
    services.grant_credits(refill.db, agency_id=agency.id, amount=10**15, reference="bench-grant")
    clients = max(bench.config.clients)
    measure = partial(
        measure_http_usage,
        url,
        api_key=key.secret,
        agency_id=agency.id,
        subteam_id=subteam,
        seconds=bench.config.seconds,
        clients=clients,
        rounds=ROUNDS,
    )
    measured = measure(tick=bench._tick("http-usage"), batch_sizes=SIZES)
    bench._record(
        "http-usage",
        clients,
        measured["refill"],
        measured["baseline"],
        ">= 0.6 of bare route",
        0.6,
        note="separate load process, loopback, keep-alive",
    )
    record_http_batches(bench, measured, clients)
    if refill.db.dialect != "postgresql":
        return  # SQLite serves from one process
    two = measure(tick=bench._tick("http-usage x2 processes"), processes=2)
    bench._record(
        "http-usage-2proc",
        clients,
        two["refill"],
        measured["refill"],
        "report: 2 server processes vs 1",
        None,
        note="POST /v1/usage on `serve --workers 2` against one process; 2 cores shared "
        "with the load process and PostgreSQL",
    )
