"""The `refill` command: serve, worker, db upgrade, agency create."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy.exc import OperationalError

from refill import services
from refill.bootstrap import Refill, build
from refill.config import Settings
from refill.db.database import create_db_engine
from refill.db.migrate import DatabaseBehind, check_up_to_date, upgrade
from refill.errors import RefillError
from refill.money import Money
from refill.portal import auth

app = typer.Typer(help="Refill: keeps prepaid wallets topped up.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
agency_app = typer.Typer(help="Agencies (top-level teams).", no_args_is_help=True)
reloads_app = typer.Typer(help="Reload attempts, for operators.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(agency_app, name="agency")
app.add_typer(reloads_app, name="reloads")

# soft_wrap: messages stay on one line when stderr is a file or a pipe.
console = Console(stderr=True, soft_wrap=True)


def _logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr
    )


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=1)


def _unreachable(url: str, exc: OperationalError) -> typer.Exit:
    return _fail(f"cannot reach the database at {_safe_url(url)}: {exc.orig}")


def _settings() -> Settings:
    """REFILL_* settings, or a clear message and exit 1 when they are wrong."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'REFILL_' + str(err['loc'][0]).upper() + ': ' if err['loc'] else ''}"
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise _fail(f"invalid configuration: {problems}") from None


def _open(*, worker: bool = False) -> Refill:
    """Build the service on REFILL_DATABASE_URL, refusing a database that is behind."""
    settings = _settings()
    refill = build(settings, in_process_worker=worker)
    try:
        check_up_to_date(refill.db.engine)
    except DatabaseBehind as exc:
        refill.close()
        raise _fail(exc.message) from None
    except OperationalError as exc:
        refill.close()
        raise _unreachable(settings.database_url, exc) from None
    return refill


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the migrations to REFILL_DATABASE_URL (default: sqlite:///refill.db)."""
    settings = _settings()
    engine = create_db_engine(settings.database_url)
    try:
        upgrade(engine)
    except OperationalError as exc:
        raise _unreachable(settings.database_url, exc) from None
    finally:
        engine.dispose()
    console.print(f"database at {_safe_url(settings.database_url)} is up to date")


def _safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@agency_app.command("create")
def agency_create(
    name: Annotated[str, typer.Option(help="The agency's display name.")],
    currency: Annotated[str, typer.Option(help="ISO 4217 code of the wallet.")] = "USD",
    owner_email: Annotated[
        str | None, typer.Option(help="Also create the owner's sign-in for the billing page.")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the owner's password from stdin.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line on stdout.")] = False,
) -> None:
    """Create an agency with its wallet and print an owner API key (shown once).

    With --owner-email, the owner's billing-page user is created too; the password is read
    from standard input (--password-stdin), never from the command line.
    """
    password = None
    if owner_email is not None:
        if not password_stdin:
            raise _fail("--owner-email needs --password-stdin (the password is read from stdin)")
        password = sys.stdin.readline().rstrip("\r\n")
        try:
            auth.normalize_email(owner_email)
            auth.check_password(password)
        except RefillError as exc:
            raise _fail(exc.message) from None
    elif password_stdin:
        raise _fail("--password-stdin is for the owner's password: give --owner-email too")
    refill = _open()
    try:
        agency, key = services.create_agency(refill.db, name=name, currency=currency)
        if owner_email is not None:
            auth.add_member(
                refill.db,
                agency_id=agency.id,
                email=owner_email,
                role="owner",
                password=password,
                actor="cli",
            )
    except RefillError as exc:
        raise _fail(exc.message) from None
    finally:
        refill.close()
    if as_json:
        out = {"agency_id": agency.id, "api_key": key.secret}
        if owner_email is not None:
            out["owner_email"] = auth.normalize_email(owner_email)
        typer.echo(json.dumps(out))
    else:
        typer.echo(f"agency:  {agency.id} ({agency.name}, {agency.currency})")
        typer.echo(f"api key: {key.secret}")
        if owner_email is not None:
            typer.echo(f"owner:   {auth.normalize_email(owner_email)} (signs in at /portal/login)")
        typer.echo("The key is shown once; store it now.")


@app.command()
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

    from refill.api.app import create_app

    _logging()
    refill = _open(worker=worker)
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


@app.command("worker")
def run_worker(
    poll_interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 1.0,
) -> None:
    """Process reloads left pending and reconcile stuck charges, as its own process."""
    _logging()
    refill = _open()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger("refill.worker").info("worker started (poll every %.1fs)", poll_interval)
    # A pass always runs to the end (claim, charge, record): stopping waits for it.
    while not stop.is_set():
        try:
            refill.processor.run_due_work()
        except Exception:
            logging.getLogger("refill.worker").exception("worker pass failed")
        stop.wait(poll_interval)
    refill.db.dispose()
    logging.getLogger("refill.worker").info("worker stopped")


@app.command()
def bench(
    database: Annotated[
        str | None,
        typer.Option(help="Database URL (default: a fresh SQLite file in a temp folder)."),
    ] = None,
    seconds: Annotated[float, typer.Option(help="Seconds per scenario (per client count).")] = 5.0,
    clients: Annotated[str, typer.Option(help="Client counts, e.g. 1,4,16.")] = "1,4,16",
    history_sizes: Annotated[
        str, typer.Option(help="Ledger sizes for history-scale.")
    ] = "10000,100000,1000000",
    http: Annotated[bool, typer.Option(help="Run the http-usage scenario.")] = True,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write every figure to this file.")
    ] = None,
) -> None:
    """Measure Refill's hot paths against hand-written SQL on the same database."""
    from rich.progress import Progress
    from rich.table import Table

    from refill.bench.runner import Bench, BenchConfig, describe, write_json

    try:
        config = BenchConfig(
            database_url=database,
            seconds=seconds,
            clients=[int(c) for c in clients.split(",")],
            history_sizes=[int(n) for n in history_sizes.split(",")],
            http=http,
        )
    except ValueError:
        raise _fail("--clients and --history-sizes take comma-separated whole numbers") from None
    if seconds <= 0 or any(c < 1 for c in config.clients):
        raise _fail("--seconds must be positive and every client count at least 1")
    logging.basicConfig(level=logging.WARNING)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("benchmark", total=Bench.phases(config))

        def step(label: str) -> None:
            progress.update(task, advance=1, description=label)

        report = Bench(config, on_progress=step).run()
    table = Table(
        title=f"refill bench — {report['machine']['database']}, "
        f"{report['machine']['cores']} cores, Python {report['machine']['python']}"
    )
    for column in ("scenario", "clients", "Refill", "baseline", "ratio", "target", "met"):
        table.add_column(column, no_wrap=column in ("scenario", "ratio", "met"))
    for row in describe(report):
        table.add_row(*row)
    # Full width when written to a file or a pipe, so saved results stay readable.
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    if json_path is not None:
        write_json(report, json_path)
        console.print(f"figures written to {json_path}")


@reloads_app.command("stuck")
def reloads_stuck(
    minutes: Annotated[
        float, typer.Option(help="Report charges unresolved for longer than this.")
    ] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per attempt.")] = False,
) -> None:
    """List charges whose outcome the gateway has not given for a long time (exit 1 if any)."""
    from datetime import timedelta

    from rich.table import Table

    from refill.reload import stuck_attempts

    refill = _open()
    try:
        since = refill.db.clock.now() - timedelta(minutes=minutes)
        stuck = refill.db.read(lambda tx: stuck_attempts(tx, charging_since=since))
    except RefillError as exc:
        raise _fail(exc.message) from None
    finally:
        refill.close()
    if as_json:
        for a in stuck:
            typer.echo(
                json.dumps(
                    {
                        "id": a.id,
                        "agency_id": a.agency_id,
                        "amount": a.amount,
                        "currency": a.currency,
                        "since": a.created_at.isoformat(),
                    }
                )
            )
    else:
        table = Table("reload", "agency", "amount", "charging since")
        for a in stuck:
            table.add_row(
                a.id, a.agency_id, str(Money(a.amount, a.currency)), a.created_at.isoformat()
            )
        Console().print(table if stuck else "no stuck reloads")
    if stuck:
        raise typer.Exit(code=1)


if __name__ == "__main__":  # pragma: no cover
    app()
