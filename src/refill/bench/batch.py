"""`refill bench`'s usage-batch: events per second through ``POST /v1/usage/batch``'s
service (batches of 100 and 1,000) against the single-event path in the same run, one
client, interleaved rounds. The target is a ratio: at least 10 times the single path's
events per second. Over HTTP the same comparison runs against the server of http-usage
(``http_load``'s batch targets)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from refill import services
from refill.bench.fixtures import BenchAgency, make_agency
from refill.bench.measure import Measurement, interleaved
from refill.bootstrap import Refill
from refill.services.usage_batch import UsageEvent, record_usage_batch

if TYPE_CHECKING:
    from refill.bench.runner import Bench

SIZES = (100, 1000)
EVENT = 10_000  # 0.01
FUNDS = 10**15
TARGET = ">= 10x the single path's events/s"


def as_events(batches: Measurement, size: int) -> Measurement:
    """Batches counted as the events they carried (latencies stay per batch)."""
    return Measurement(batches.ops * size, batches.seconds, batches.latencies_ms, batches.errors)


def measure_batches(bench: Bench, refill: Refill) -> None:
    for size in SIZES:
        batched = make_agency(refill, f"batch-{bench.run_id}-{size}", subteams=16, grant=FUNDS)
        single = make_agency(refill, f"single-{bench.run_id}-{size}", subteams=16, grant=FUNDS)

        def batch_op(n: int, i: int, size: int = size, batched: BenchAgency = batched) -> None:
            subteams = batched.subteams
            record_usage_batch(
                refill.db,
                agency_id=batched.agency_id,
                events=[
                    UsageEvent(subteams[k % len(subteams)], EVENT, f"b{size}-{n}-{i}-{k}")
                    for k in range(size)
                ],
            )

        def single_op(n: int, i: int, size: int = size, single: BenchAgency = single) -> None:
            services.record_usage(
                refill.db,
                agency_id=single.agency_id,
                subteam_id=single.subteams[i % len(single.subteams)],
                amount=EVENT,
                reference=f"s{size}-{n}-{i}",
            )

        mine, theirs = interleaved(
            batch_op, single_op, 1, bench.config.seconds, bench._tick(f"usage-batch x{size}")
        )
        bench._record(
            "usage-batch",
            1,
            as_events(mine, size),
            theirs,
            TARGET,
            10.0,
            note=f"batches of {size} in process; p50/p99 per batch",
        )


def record_http_batches(bench: Bench, measured: dict[str, Measurement], clients: int) -> None:
    """What the http-usage server measured for the batch targets, against its single POST."""
    for size in SIZES:
        bench._record(
            "usage-batch-http",
            clients,
            as_events(measured[f"batch-{size}"], size),
            measured["refill"],
            TARGET,
            10.0,
            note=f"batches of {size} over HTTP vs POST /v1/usage; p50/p99 per batch",
        )
