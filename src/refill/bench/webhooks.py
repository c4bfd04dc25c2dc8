"""The webhook scenario: how fast events reach a receiver on this machine, and how long after
the commit that wrote each one.

Clients make balance crossings (credits, then all spent: ``wallet.replenished`` and
``wallet.depleted``) on agencies whose endpoint is a local HTTP receiver answering 204.
Each event's commit time is taken when the database announces it; its arrival when the
receiver reads it (``webhook-id``). The baseline is the same number of clients POSTing a
body of the same size to the same receiver, one connection each, with no database at all:
the receiver's and HTTP's own limit, which every delivery also pays.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from refill import services
from refill.bench.measure import Measurement, run_clients
from refill.bootstrap import build
from refill.config import Settings
from refill.notify.events import NewEvent
from refill.services import notifications

MAX_EVENTS_PER_CLIENT = 400  # a bound besides time
DRAIN_WITHIN = 60.0  # seconds for the last deliveries to arrive after the load stops
PACE = 0.1  # seconds between crossings (two events) when measuring the lag
BODY = b'{"id": "evt_bench", "type": "wallet.depleted", "data": {"balance": "0.00"}}' * 2


@dataclass
class Arrivals:
    """What the receiver saw: each webhook-id and when it arrived (perf_counter)."""

    at: dict[str, float] = field(default_factory=dict)
    posts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _receiver(arrivals: Arrivals) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            now = time.perf_counter()
            with arrivals.lock:
                arrivals.posts += 1
                event_id = self.headers.get("webhook-id")
                if event_id:
                    arrivals.at.setdefault(event_id, now)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass(frozen=True)
class WebhookFigures:
    # ops: delivered events; seconds: first commit to last arrival; latencies: each event's
    # commit to its arrival
    deliveries: Measurement
    baseline: Measurement  # plain POSTs in the same time by as many clients
    undelivered: int


def measure_webhooks(database_url: str, clients: int, seconds: float) -> WebhookFigures:
    arrivals = Arrivals()
    server = _receiver(arrivals)
    url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    settings = Settings(
        database_url=database_url,
        webhook_allow_private=True,
        notify_threads=max(4, clients * 2),
        poll_interval_seconds=1.0,
    )
    refill = build(settings, in_process_worker=False)
    committed: dict[str, float] = {}

    def commit_time(event: NewEvent) -> None:
        committed.setdefault(event.event_id, time.perf_counter())

    refill.db.after_commit.listen(NewEvent, commit_time)
    refill.notifier.listen()
    try:
        agencies = []
        for n in range(clients):
            agency, _ = services.create_agency(refill.db, name=f"webhooks-{n}-{time.time_ns()}")
            subteam = services.create_subteam(refill.db, agency_id=agency.id, name="s")
            notifications.create_endpoint(
                refill.db,
                refill.url_rules,
                refill.keyring,
                agency_id=agency.id,
                url=url,
                event_types=["wallet.replenished", "wallet.depleted"],
                description="bench",
                actor="bench",
            )
            agencies.append((agency.id, subteam.id))

        def crossing(n: int, i: int) -> None:
            if i >= MAX_EVENTS_PER_CLIENT // 2:
                time.sleep(0.01)  # bounded: this client has made its share
                return
            agency_id, subteam_id = agencies[n]
            tag = f"{n}-{i}-{time.perf_counter_ns()}"
            services.grant_credits(
                refill.db, agency_id=agency_id, amount=1_000_000, reference=f"wh-{tag}"
            )
            services.record_usage(
                refill.db,
                agency_id=agency_id,
                subteam_id=subteam_id,
                amount=1_000_000,
                reference=f"wh-use-{tag}",
            )

        # Throughput: every client makes events as fast as it can.
        run_clients(crossing, clients, seconds)
        delivered, undelivered = _settle(committed, arrivals)
        first = min(committed.values(), default=0.0)
        span = max(delivered.values(), default=first) - first
        throughput = Measurement(len(delivered), span, [])
        # Lag: one client at a steady pace the deliveries keep up with.
        committed.clear()

        def paced(n: int, i: int) -> None:
            crossing(0, i)
            time.sleep(PACE)

        run_clients(paced, 1, seconds)
        delivered, late = _settle(committed, arrivals)
        lags = [(delivered[k] - committed[k]) * 1000 for k in delivered]
        return WebhookFigures(
            deliveries=Measurement(throughput.ops, throughput.seconds, lags),
            baseline=_plain_posts(url, clients, seconds),
            undelivered=undelivered + late,
        )
    finally:
        refill.close()
        server.shutdown()
        server.server_close()


def _settle(committed: dict[str, float], arrivals: Arrivals) -> tuple[dict[str, float], int]:
    """Wait (bounded) until every committed event arrived; the arrivals, and how many did
    not arrive."""
    deadline = time.perf_counter() + DRAIN_WITHIN
    while time.perf_counter() < deadline:
        with arrivals.lock:
            if set(committed) <= set(arrivals.at):
                break
        time.sleep(0.02)
    with arrivals.lock:
        delivered = {k: v for k, v in arrivals.at.items() if k in committed}
    return delivered, len(set(committed) - set(delivered))


def _plain_posts(url: str, clients: int, seconds: float) -> Measurement:
    tls = httpx.create_ssl_context()

    def post(n: int, i: int) -> None:
        with httpx.Client(timeout=10, trust_env=False, verify=tls) as client:
            client.post(url, content=BODY, headers={"content-type": "application/json"})

    return run_clients(post, clients, seconds)
