"""Prometheus metrics: the counters the code paths move, and what a scrape reads.

The metric objects live here, at module level, and each label set the hot paths use is
resolved once (``_RECORDED``, ``_RELOADS``): counting is a dict lookup and
prometheus-client's own ``inc``. No label names an agency, a subteam or a card (privacy,
and a bounded number of series); a refusal's label is its stable error code, a bounded set
(anything else is counted as ``other``).

With ``PROMETHEUS_MULTIPROC_DIR`` set (several server processes), every process writes its
counts to files there and a scrape merges them (``MultiProcessCollector``), as
prometheus-client documents; otherwise a scrape reads this process's default registry. The
queue depths and the connection pool are read at scrape time (``DatabaseCollector``).

Imports only the standard library, SQLAlchemy and prometheus-client, so the domain may
count what it records.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.pool import Pool

log = logging.getLogger("refill.metrics")

USAGE_PATHS = ("single", "batch")  # POST /v1/usage, POST /v1/usage/batch
RELOAD_TRIGGERS = ("auto", "manual")
RELOAD_OUTCOMES = ("succeeded", "failed", "requires_action", "canceled", "blocked")
QUEUES = ("reload_pending", "reload_charging", "webhook_due", "email_pending")
# From a fast gateway answer (tens of ms) to a retry that waited its turn (hours).
LATENCY_BUCKETS = (
    *(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    *(60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0),
)

USAGE_RECORDED = Counter(
    "refill_usage_recorded",
    "Usage events recorded (created) or recognised as a repeat of their reference (duplicate).",
    ["path", "result"],
)
USAGE_REFUSED = Counter(
    "refill_usage_refused", "Usage events refused, by their stable error code.", ["path", "code"]
)
RELOAD_ATTEMPTS = Counter(
    "refill_reload_attempts",
    "Reload attempts that reached an outcome (a 3-D Secure one may reach two).",
    ["trigger", "outcome"],
)
RELOAD_LATENCY = Histogram(
    "refill_reload_latency_seconds",
    "From the attempt's creation (for auto-reload: the threshold crossing) to the credit.",
    ["trigger"],
    buckets=LATENCY_BUCKETS,
)
WEBHOOK_DELIVERIES = Counter(
    "refill_webhook_deliveries",
    "Webhook delivery attempts: succeeded, retrying (failed, tried again later), failed "
    "(failed for good).",
    ["outcome"],
)
EMAILS = Counter(
    "refill_emails",
    "E-mail sending attempts: sent, retrying (tried again later), failed (for good).",
    ["outcome"],
)

_RECORDED = {
    (path, result): USAGE_RECORDED.labels(path, result)
    for path in USAGE_PATHS
    for result in ("created", "duplicate")
}
_RELOADS = {
    (trigger, outcome): RELOAD_ATTEMPTS.labels(trigger, outcome)
    for trigger in RELOAD_TRIGGERS
    for outcome in RELOAD_OUTCOMES
}
_LATENCY = {trigger: RELOAD_LATENCY.labels(trigger) for trigger in RELOAD_TRIGGERS}
_WEBHOOKS = {o: WEBHOOK_DELIVERIES.labels(o) for o in ("succeeded", "retrying", "failed")}
_EMAILS = {o: EMAILS.labels(o) for o in ("sent", "retrying", "failed")}
_REFUSED: dict[tuple[str, str], Counter] = {}
_CODE = re.compile(r"[a-z][a-z0-9_]{0,47}")
_MAX_CODES = 128  # the codes are a fixed set in the code, far fewer than this


def _refused(path: str, code: str) -> Counter:
    child = _REFUSED.get((path, code))
    if child is None:
        room = len(_REFUSED) < _MAX_CODES
        # Two threads may both get here: ``labels`` hands both the same child.
        child = USAGE_REFUSED.labels(path, code if room and _CODE.fullmatch(code) else "other")
        if room:
            _REFUSED[(path, code)] = child
    return child


def count_usage(
    path: str, *, created: int = 0, duplicate: int = 0, refused_codes: Iterable[str] = ()
) -> None:
    """Usage events of one request: ``path`` is ``single`` or ``batch``."""
    if created:
        _RECORDED[(path, "created")].inc(created)
    if duplicate:
        _RECORDED[(path, "duplicate")].inc(duplicate)
    for code, times in Tally(refused_codes).items():
        _refused(path, code).inc(times)


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """Attempts that reached ``outcome`` in a transaction, announced (``tx.announce``) and
    counted only once it commits: a transaction the database made run again, or one rolled
    back, counts nothing twice or at all (``on_reload_outcome`` listens after commit)."""

    trigger: str
    outcome: str
    waited: timedelta | None = None  # creation to credit, for a success
    count: int = 1


def on_reload_outcome(item: ReloadOutcome) -> None:
    count_reload(item.trigger, item.outcome, item.waited, count=item.count)


def count_reload(
    trigger: str, outcome: str, waited: timedelta | None = None, *, count: int = 1
) -> None:
    """Attempts reached ``outcome``; a success observes ``waited`` (creation to credit)."""
    child = _RELOADS.get((trigger, outcome))
    if child is None or count <= 0:  # not an outcome (pending, charging): nothing to count
        return
    child.inc(count)
    if outcome == "succeeded" and waited is not None:
        _LATENCY[trigger].observe(max(waited.total_seconds(), 0.0))


@dataclass(frozen=True, slots=True)
class EmailOutcome:
    """An e-mail sent, to be retried, or given up on: counted once its record commits."""

    outcome: str


def on_email_outcome(item: EmailOutcome) -> None:
    count_email(item.outcome)


def count_webhook(outcome: str) -> None:
    _WEBHOOKS[outcome].inc()


def count_email(outcome: str) -> None:
    _EMAILS[outcome].inc()


# --- the scrape ---------------------------------------------------------------------------


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class DatabaseCollector:
    """What a scrape reads at its own time: the work queues' depth (``read_depths``: cheap
    indexed COUNTs, name → count) and this process's connection pool."""

    def __init__(self, read_depths: Callable[[], Mapping[str, int]], pool: Pool | None) -> None:
        self.read_depths = read_depths
        self.pool = pool

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration: the scrape's registry is its own

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("refill_database_up", "1 when the queue depths could be read.")
        try:
            depths = self.read_depths()
        except Exception:
            log.warning("metrics: the queue depths could not be read", exc_info=True)
            up.add_metric([], 0)
        else:
            up.add_metric([], 1)
            queues = GaugeMetricFamily(
                "refill_queue_depth",
                "Work waiting, at scrape time: auto-reload attempts pending or charging, "
                "webhook deliveries due, e-mails pending.",
                labels=["queue"],
            )
            for name in QUEUES:
                queues.add_metric([name], depths.get(name, 0))
            yield queues
        yield up
        yield from self._pool()

    def _pool(self) -> Iterator[Metric]:
        checked_out = getattr(self.pool, "checkedout", None)
        size = getattr(self.pool, "size", None)
        if callable(checked_out) and callable(size):
            yield GaugeMetricFamily(
                "refill_db_pool_checked_out",
                "Database connections in use (of the process answering the scrape).",
                value=checked_out(),
            )
            yield GaugeMetricFamily(
                "refill_db_pool_size",
                "Database connections the pool keeps (of the process answering the scrape).",
                value=size(),
            )


class _Default:
    """This process's default registry, inside the scrape's own."""

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def scrape(database: DatabaseCollector) -> bytes:
    """The Prometheus text format: the counters (every process's, in multi-process mode)
    and what ``database`` reads now."""
    registry = CollectorRegistry()
    if multiprocess():
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Default())
    registry.register(database)
    return generate_latest(registry)
