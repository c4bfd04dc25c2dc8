"""The `refill` command: serve, worker, db, agency, keys, wallet, usage, reloads,
emails, bench.

One module per group of commands; ``common`` holds what they share (settings from the
environment, the service, one-line errors without tracebacks, the exit statuses).
"""

from typing import Annotated

import typer

from refill import __version__
from refill.cli import agencies, benchmark, database, emails, keys, reloads, server, usage, wallet

app = typer.Typer(help="Refill: keeps prepaid wallets topped up.", no_args_is_help=True)
app.add_typer(database.db_app, name="db")
app.add_typer(agencies.agency_app, name="agency")
app.add_typer(reloads.reloads_app, name="reloads")
app.add_typer(keys.keys_app, name="keys")
app.add_typer(wallet.wallet_app, name="wallet")
app.add_typer(usage.usage_app, name="usage")
app.add_typer(emails.emails_app, name="emails")
app.command()(server.serve)
app.command("worker")(server.run_worker)
app.command()(benchmark.bench)


def print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"refill {__version__}")
        raise typer.Exit()


@app.callback()
def refill_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Refill: keeps prepaid wallets topped up."""


__all__ = ["app"]
