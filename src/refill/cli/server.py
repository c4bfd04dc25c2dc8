"""`refill serve` and `refill worker`: the processes of a deployment."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from refill.cli.common import (
    console,
    fail,
    logging_to_stderr,
    open_service,
    settings_from_env,
)
from refill.config import Settings

if TYPE_CHECKING:
    from refill.bootstrap import Refill
    from refill.demo import DemoTraffic

DEFAULT_HOST = "127.0.0.1"


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    demo: Annotated[
        bool, typer.Option(help="Seed a demo agency and simulate call traffic.")
    ] = False,
    worker: Annotated[
        bool, typer.Option(help="Run reloads in this process (off: leave them to `refill worker`).")
    ] = True,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Server processes sharing HOST:PORT (PostgreSQL only; SQLite serves from one).",
        ),
    ] = 1,
) -> None:
    """Serve the HTTP API (and, by default, process reloads in the same process).

    Exits 1 at once, before the database is touched, when HOST:PORT cannot be listened on,
    or when --workers asks for several processes on SQLite.
    """
    settings = settings_from_env()  # reading the configuration touches nothing
    if workers > 1 and settings.database_url.startswith("sqlite"):
        raise fail(
            "SQLite serves from one process: run `refill serve` without --workers, or use "
            "PostgreSQL (REFILL_DATABASE_URL=postgresql+psycopg://…) for several"
        )
    refuse_unusable_address(host, port, demo=demo)
    import uvicorn

    from refill.web import create_app

    logging_to_stderr(settings=settings)
    if workers > 1:
        serve_processes(settings, host=host, port=port, workers=workers, demo=demo, worker=worker)
        return
    refill = open_service(settings, worker=worker)
    traffic = start_demo(refill, host, port) if demo else None
    try:
        uvicorn.run(
            create_app(refill),
            host=host,
            port=port,
            log_level="info",
            access_log=False,
            log_config=None,  # our handlers (REFILL_LOG_FORMAT) for uvicorn's lines too
        )
    finally:
        if traffic is not None:
            traffic.stop()
        refill.db.dispose()


def start_demo(refill: Refill, host: str, port: int) -> DemoTraffic:
    """Seed the demo agency, say how to reach it, and start its simulated calls."""
    from refill.demo import DemoTraffic, seed_demo

    seeded = seed_demo(refill)
    console.print(f"[bold green]Refill demo[/bold green] on http://{host}:{port}")
    console.print(f"  billing:   http://{host}:{port}/portal/team/billing")
    console.print(f"  sign in:   {seeded.owner_email} / {seeded.owner_password}")
    console.print(f"  agency:    {seeded.agency_id} (Demo Agency)")
    console.print(f"  owner key: {seeded.api_key}")
    console.print(
        f"  try:       curl -H 'Authorization: Bearer {seeded.api_key}' "
        f"http://{host}:{port}/v1/wallet"
    )
    traffic = DemoTraffic(refill, seeded)
    traffic.start()
    return traffic


def serve_processes(
    settings: Settings, *, host: str, port: int, workers: int, demo: bool, worker: bool
) -> None:
    """``workers`` server processes on one socket (uvicorn's supervisor), each with its
    own pool, reload worker and delivery threads: every claim (a reload attempt, a
    webhook delivery, an e-mail) is a conditional update with a lease, so the processes
    share the work safely. Metrics are summed across them (prometheus-client's
    multi-process mode). The demo's agency and traffic run in this supervising process."""
    import uvicorn

    opened = open_service(settings)  # refuses a missing or outdated database, once
    traffic = start_demo(opened, host, port) if demo else None
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    scratch = None
    if not metrics_dir:
        scratch = tempfile.TemporaryDirectory(prefix="refill-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = scratch.name
    os.environ[_RELOADS_IN_SERVER] = "1" if worker else "0"
    console.print(f"Refill on http://{host}:{port}, {workers} server processes")
    try:
        uvicorn.run(
            "refill.cli.server:app_of_a_server_process",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="info",
            access_log=False,
            log_config=None,
        )
    finally:
        if traffic is not None:
            traffic.stop()
        opened.close()
        if scratch is not None:
            scratch.cleanup()


_RELOADS_IN_SERVER = "REFILL_SERVE_RELOADS"


def app_of_a_server_process() -> Any:
    """One of ``serve --workers N``'s processes (uvicorn imports and calls this)."""
    from refill.web import create_app

    settings = settings_from_env()
    logging_to_stderr(settings=settings)
    reloads = os.environ.get(_RELOADS_IN_SERVER, "1") == "1"
    return create_app(open_service(settings, worker=reloads))


def refuse_unusable_address(host: str, port: int, *, demo: bool) -> None:
    """Exit 1 unless HOST:PORT can be bound now: found after the demo was seeded, a taken
    port cost a fresh password that the server already running does not know."""
    try:
        try_binding(host, port)
    except OSError as exc:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno != errno.EADDRINUSE:
            raise fail(f"cannot listen on {shown}: {exc.strerror or exc}") from None
        message = f"{shown} is already in use (is another `refill serve` running?)."
        free = next_free_port(host, port)
        if free is not None:
            flags = "".join(
                (f" --host {host}" if host != DEFAULT_HOST else "", " --demo" if demo else "")
            )
            message += f" Pick another port: refill serve{flags} --port {free}"
        raise fail(message) from None


def try_binding(host: str, port: int) -> None:
    """Bind as uvicorn will (SO_REUSEADDR, so a port left in TIME_WAIT is usable), then let go."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def next_free_port(host: str, port: int, tries: int = 10) -> int | None:
    """The first of the next few ports that can be bound now, to suggest; None if none."""
    for candidate in range(port + 1, min(port + 1 + tries, 65536)):
        try:
            try_binding(host, candidate)
        except OSError:
            continue
        return candidate
    return None


def run_worker(
    poll_interval: Annotated[
        float | None,
        typer.Option(help="Seconds between polls (default: REFILL_POLL_INTERVAL_SECONDS)."),
    ] = None,
) -> None:
    """Process reloads left pending, reconcile stuck charges, and deliver events, webhooks
    and e-mail, as its own process."""
    logging_to_stderr()
    refill = open_service()
    if poll_interval is None:
        poll_interval = refill.settings.poll_interval_seconds
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger("refill.worker").info("worker started (poll every %.1fs)", poll_interval)
    refill.notifier.listen()  # events this process writes are dispatched at once
    last_daily = 0.0
    # A pass always runs to the end (claim, charge, record): stopping waits for it.
    while not stop.is_set():
        try:
            refill.processor.run_due_work()
            refill.notifier.run_due_work()
            if time.monotonic() - last_daily > 3600:
                last_daily = time.monotonic()
                refill.notifier.run_daily_jobs()
        except Exception:
            logging.getLogger("refill.worker").exception("worker pass failed")
        stop.wait(poll_interval)
    refill.close()
    logging.getLogger("refill.worker").info("worker stopped")
