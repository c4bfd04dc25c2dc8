"""Measuring: clients run an operation for a bounded time and count; Refill and its
baseline alternate in rounds so drift hits both alike."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

MAX_OPS_PER_CLIENT = 2_000_000  # a bound besides time, so no loop can run away
ROUNDS = 4  # alternating Refill / baseline rounds per measurement


class RoundOver(Exception):
    """Raised by an operation with nothing left to do (its prepared work ran out): its
    client stops for the rest of the round."""


@dataclass
class Measurement:
    ops: int
    seconds: float
    latencies_ms: list[float]
    errors: int = 0

    @property
    def throughput(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
        return ordered[index]

    def summary(self) -> dict[str, float]:
        return {
            "ops": self.ops,
            "seconds": round(self.seconds, 3),
            "ops_per_s": round(self.throughput, 1),
            "p50_ms": round(self.percentile(50), 3),
            "p99_ms": round(self.percentile(99), 3),
            "errors": self.errors,
        }


@dataclass
class Result:
    scenario: str
    clients: int | None
    refill: dict[str, float]
    baseline: dict[str, float] | None
    ratio: float | None
    target: str
    met: bool | None
    note: str = ""


def merge(parts: list[Measurement]) -> Measurement:
    return Measurement(
        ops=sum(p.ops for p in parts),
        seconds=sum(p.seconds for p in parts),
        latencies_ms=[x for p in parts for x in p.latencies_ms],
        errors=sum(p.errors for p in parts),
    )


def run_clients(op: Callable[[int, int], None], clients: int, seconds: float) -> Measurement:
    """Run ``op(client, i)`` on ``clients`` threads for ``seconds``; count and time each."""
    stop_at = time.perf_counter() + seconds
    counts = [0] * clients
    errors = [0] * clients
    samples: list[list[float]] = [[] for _ in range(clients)]

    def loop(n: int) -> None:
        for i in range(MAX_OPS_PER_CLIENT):
            start = time.perf_counter()
            if start >= stop_at:
                return
            try:
                op(n, i)
            except RoundOver:
                return
            except Exception:
                errors[n] += 1
                continue
            samples[n].append((time.perf_counter() - start) * 1000)
            counts[n] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return Measurement(sum(counts), elapsed, [x for s in samples for x in s], sum(errors))


def _shifted(op: Callable[[int, int], None], offset: int, n: int, i: int) -> None:
    """Each round continues the numbering, so references stay unique across rounds."""
    op(n, offset + i)


def interleaved(
    refill_op: Callable[[int, int], None],
    baseline_op: Callable[[int, int], None],
    clients: int,
    seconds: float,
    tick: Callable[[], None],
    *,
    prepare: Callable[[], None] | None = None,
) -> tuple[Measurement, Measurement]:
    """Alternate short rounds of each so drift (caches, WAL, autovacuum) hits both alike.
    ``prepare`` runs before each pair of rounds, outside the timed part."""
    mine: list[Measurement] = []
    theirs: list[Measurement] = []
    per_round = seconds / ROUNDS
    offset = 0
    for _ in range(ROUNDS):
        if prepare is not None:
            prepare()
        mine.append(run_clients(partial(_shifted, refill_op, offset), clients, per_round))
        theirs.append(run_clients(partial(_shifted, baseline_op, offset), clients, per_round))
        offset += MAX_OPS_PER_CLIENT
        tick()
    return merge(mine), merge(theirs)
