"""`refill bench`: the benchmark, from the command line."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from refill.cli.common import (
    console,
    fail,
)


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
    webhooks: Annotated[bool, typer.Option(help="Run the webhook scenario.")] = True,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write every figure to this file.")
    ] = None,
) -> None:
    """Measure Refill's hot paths against hand-written SQL on the same database."""
    from rich.progress import Progress
    from rich.table import Table

    from refill.bench.report import describe, write_json
    from refill.bench.runner import Bench, BenchConfig

    try:
        config = BenchConfig(
            database_url=database,
            seconds=seconds,
            clients=[int(c) for c in clients.split(",")],
            history_sizes=[int(n) for n in history_sizes.split(",")],
            http=http,
            webhooks=webhooks,
        )
    except ValueError:
        raise fail("--clients and --history-sizes take comma-separated whole numbers") from None
    if seconds <= 0 or any(c < 1 for c in config.clients):
        raise fail("--seconds must be positive and every client count at least 1")
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
