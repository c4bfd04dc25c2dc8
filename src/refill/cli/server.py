"""`refill serve` and `refill worker`: the processes of a deployment."""

from __future__ import annotations

import errno
import logging
import signal
import socket
import threading
import time
from typing import Annotated

import typer

from refill.cli.common import (
    console,
    fail,
    logging_to_stderr,
    open_service,
    settings_from_env,
)

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
) -> None:
    """Serve the HTTP API (and, by default, process reloads in the same process).

    Exits 1 at once, before the database is touched, when HOST:PORT cannot be listened on.
    """
    settings = settings_from_env()  # reading the configuration touches nothing
    refuse_unusable_address(host, port, demo=demo)
    import uvicorn

    from refill.web import create_app

    logging_to_stderr()
    refill = open_service(settings, worker=worker)
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
