"""The `refill` command: serve, worker, db, agency, keys, wallet, reloads, bench."""

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
keys_app = typer.Typer(help="API keys: list, create, revoke.", no_args_is_help=True)
wallet_app = typer.Typer(help="Wallets, for operators.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(agency_app, name="agency")
app.add_typer(reloads_app, name="reloads")
app.add_typer(keys_app, name="keys")
app.add_typer(wallet_app, name="wallet")

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
                attach_existing=True,
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
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per item.")] = False,
) -> None:
    """List charges whose outcome the gateway has not given for a long time, and the open
    operator alerts (money taken that could not be credited by itself); exit 1 if any."""
    from datetime import timedelta

    from rich.table import Table

    from refill import alerts
    from refill.reload import stuck_attempts

    refill = _open()
    try:
        since = refill.db.clock.now() - timedelta(minutes=minutes)
        stuck = refill.db.read(lambda tx: stuck_attempts(tx, charging_since=since))
        open_alerts = refill.db.read(alerts.open_alerts)
    except RefillError as exc:
        raise _fail(exc.message) from None
    finally:
        refill.close()
    if as_json:
        for a in stuck:
            typer.echo(
                json.dumps(
                    {
                        "type": "stuck_reload",
                        "id": a.id,
                        "agency_id": a.agency_id,
                        "amount": a.amount,
                        "currency": a.currency,
                        "since": a.created_at.isoformat(),
                    }
                )
            )
        for alert in open_alerts:
            typer.echo(
                json.dumps(
                    {
                        "type": "alert",
                        "id": alert.id,
                        "kind": alert.kind,
                        "subject": alert.subject,
                        "agency_id": alert.agency_id,
                        "message": alert.message,
                        "since": alert.created_at.isoformat(),
                    }
                )
            )
    else:
        out = Console()
        if stuck:
            table = Table("reload", "agency", "amount", "charging since")
            for a in stuck:
                table.add_row(
                    a.id, a.agency_id, str(Money(a.amount, a.currency)), a.created_at.isoformat()
                )
            out.print(table)
        if open_alerts:
            table = Table("alert", "kind", "about", "since", "what to do")
            for alert in open_alerts:
                table.add_row(
                    alert.id,
                    alert.kind,
                    alert.subject,
                    alert.created_at.isoformat(),
                    alert.message,
                )
            out.print(table)
        if not stuck and not open_alerts:
            out.print("no stuck reloads, no open alerts")
    if stuck or open_alerts:
        raise typer.Exit(code=1)


@reloads_app.command("settle")
def reloads_settle(
    reload_id: Annotated[str, typer.Argument(help="The reload (rld_…) to settle.")],
    paid: Annotated[
        bool,
        typer.Option(
            "--paid/--not-paid", help="What the gateway shows: the money was taken, or not."
        ),
    ],
    reason: Annotated[str, typer.Option(help="What you checked, for the audit log.")],
) -> None:
    """Record the outcome of a charge Refill cannot resolve, after checking the gateway:
    --paid credits the wallet once, --not-paid cancels it (never charged again)."""
    from functools import partial

    from refill import alerts
    from refill.reload import settle_by_operator

    refill = _open()
    try:
        attempt = refill.db.write(
            partial(
                settle_by_operator,
                policy=refill.policy,
                attempt_id=reload_id,
                paid=paid,
                reason=reason,
                actor="cli",
            )
        )
        for alert in refill.db.read(alerts.open_alerts):
            if alert.subject == reload_id:
                refill.db.write(
                    partial(
                        alerts.resolve_alert, alert_id=alert.id, resolution=f"settled: {reason}"
                    )
                )
    except RefillError as exc:
        raise _fail(exc.message) from None
    finally:
        refill.close()
    typer.echo(f"reload {attempt.id} is {attempt.status}")


@reloads_app.command("resolve-alert")
def resolve_alert(
    alert_id: Annotated[str, typer.Argument(help="The alert (alr_…).")],
    note: Annotated[str, typer.Option(help="What was done about it.")],
) -> None:
    """Mark an operator alert as dealt with (it leaves `refill reloads stuck`)."""
    from functools import partial

    from refill import alerts

    refill = _open()
    try:
        refill.db.write(partial(alerts.resolve_alert, alert_id=alert_id, resolution=note))
    except RefillError as exc:
        raise _fail(exc.message) from None
    finally:
        refill.close()
    typer.echo(f"alert {alert_id} resolved")


@keys_app.command("list")
def keys_list(
    agency: Annotated[str, typer.Option(help="The agency's id (agc_…).")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per key.")] = False,
) -> None:
    """An agency's API keys (never their secrets), newest first."""
    from rich.table import Table

    refill = _open()
    try:
        services.get_agency(refill.db, agency)  # a mistyped id is an error, not "no keys"
        keys: list[services.ApiKey] = []
        cursor = None
        while True:
            page = services.list_keys(
                refill.db, agency_id=agency, limit=services.MAX_PAGE, cursor=cursor
            )
            keys.extend(page.data)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    except RefillError as exc:
        raise _fail(exc.message) from None
    finally:
        refill.close()
    if as_json:
        for k in keys:
            typer.echo(
                json.dumps(
                    {
                        "id": k.id,
                        "role": k.role,
                        "subteam_id": k.subteam_id,
                        "name": k.name,
                        "created_at": k.created_at.isoformat(),
                        "last_used_at": k.last_used_at and k.last_used_at.isoformat(),
                        "revoked_at": k.revoked_at and k.revoked_at.isoformat(),
                        "expires_at": k.expires_at and k.expires_at.isoformat(),
                    }
                )
            )
        return
    table = Table("key", "role", "subteam", "name", "created", "last used", "state")
    for k in keys:
        state = (
            "revoked"
            if k.revoked_at
            else (f"expires {k.expires_at:%Y-%m-%d %H:%M}" if k.expires_at else "active")
        )
        table.add_row(
            k.id,
            k.role,
            k.subteam_id or "",
            k.name or "",
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never",
            state,
        )
    Console().print(table)


@keys_app.command("create")
def keys_create(
    agency: Annotated[str, typer.Option(help="The agency's id (agc_…).")],
    subteam: Annotated[
        str | None, typer.Option(help="A key for this subteam; without it, an owner key.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="What the key is for.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line on stdout.")] = False,
) -> None:
    """Create a key (shown once): how an operator recovers an agency's lost owner key."""
    refill = _open()
    try:
        key = services.create_key(
            refill.db, agency_id=agency, subteam_id=subteam, name=name, actor="cli"
        )
    except RefillError as exc:
        raise _fail(exc.message) from None
    finally:
        refill.close()
    if as_json:
        typer.echo(json.dumps({"id": key.id, "api_key": key.secret}))
    else:
        typer.echo(f"key:     {key.id}")
        typer.echo(f"api key: {key.secret}")
        typer.echo("The key is shown once; store it now.")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key (key_…).")]) -> None:
    """Revoke a key: every process refuses it from its next request."""
    refill = _open()
    try:
        agency_id = services.key_agency(refill.db, key_id)
        services.revoke_key(refill.db, agency_id=agency_id, key_id=key_id, actor="cli")
    except RefillError as exc:
        raise _fail(exc.message) from None
    finally:
        refill.close()
    typer.echo(f"key {key_id} revoked")


@wallet_app.command("adjust")
def wallet_adjust(
    agency: Annotated[str, typer.Option(help="The agency's id (agc_…).")],
    amount: Annotated[
        str, typer.Option(help='Decimal, in the wallet\'s currency: "50.00" or "-12.50".')
    ],
    reason: Annotated[str, typer.Option(help="Why, for the audit log (required).")],
    reference: Annotated[
        str | None,
        typer.Option(help="Makes the adjustment happen once, however often it is run."),
    ] = None,
) -> None:
    """Credit or debit a wallet by hand (an adjustment in the ledger, never below zero),
    e.g. for money a card paid that Refill could not credit by itself."""
    from refill.money import format_amount, parse_amount

    refill = _open()
    try:
        micros = parse_amount(amount, field="--amount", allow_negative=True)
        transfer, created = services.adjust_wallet(
            refill.db,
            agency_id=agency,
            amount=micros,
            reason=reason,
            reference=reference,
            actor="cli",
        )
        currency = services.get_agency(refill.db, agency).currency
    except RefillError as exc:
        raise _fail(exc.message) from None
    finally:
        refill.close()
    what = "adjusted" if created else "already adjusted (same reference)"
    typer.echo(
        f"wallet {what}: {amount} {currency}, balance after "
        f"{format_amount(transfer.wallet_balance_after, currency)} {currency} "
        f"(reference {transfer.reference})"
    )


if __name__ == "__main__":  # pragma: no cover
    app()
