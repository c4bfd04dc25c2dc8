"""What every command shares: settings from the environment, the service, one-line errors."""

from __future__ import annotations

import logging
import sys

import typer
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy.exc import OperationalError

from refill.bootstrap import Refill, build
from refill.config import Settings
from refill.db.migrate import DatabaseBehind, check_up_to_date

# soft_wrap: messages stay on one line when stderr is a file or a pipe.
console = Console(stderr=True, soft_wrap=True)


def logging_to_stderr(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr
    )


def fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=1)


def unreachable(url: str, exc: OperationalError) -> typer.Exit:
    return fail(f"cannot reach the database at {safe_url(url)}: {exc.orig}")


def settings_from_env() -> Settings:
    """REFILL_* settings, or a clear message and exit 1 when they are wrong."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'REFILL_' + str(err['loc'][0]).upper() + ': ' if err['loc'] else ''}"
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise fail(f"invalid configuration: {problems}") from None


def open_service(*, worker: bool = False) -> Refill:
    """Build the service on REFILL_DATABASE_URL, refusing a database that is behind."""
    settings = settings_from_env()
    refill = build(settings, in_process_worker=worker)
    try:
        check_up_to_date(refill.db.engine)
    except DatabaseBehind as exc:
        refill.close()
        raise fail(exc.message) from None
    except OperationalError as exc:
        refill.close()
        raise unreachable(settings.database_url, exc) from None
    return refill


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
