"""`refill serve` and `refill worker`: the processes of a deployment."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Annotated

import typer

from refill.cli.common import (
    console,
    logging_to_stderr,
    open_service,
)


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    demo: Annotated[
        bool, typer.Option(help="Seed a demo agency and simulate call traffic.")
    ] = False,
    worker: Annotated[
        bool, typer.Option(help="Run reloads in this process (off: leave them to `refill worker`).")
    ] = True,
) -> None:
    """Serve the HTTP API (and, by default, process reloads in the same process)."""
    import uvicorn

    from refill.web import create_app

    logging_to_stderr()
    refill = open_service(worker=worker)
    traffic = None
    if demo:
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
    try:
        uvicorn.run(create_app(refill), host=host, port=port, log_level="info", access_log=False)
    finally:
        if traffic is not None:
            traffic.stop()
        refill.db.dispose()


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
