"""What every command shares: settings from the environment, the service, one-line errors.

Exit status, for every command: 0 done; 1 refused or failed (bad input, not found, a port
in use; for `refill reloads stuck`: something to look at); 2 the database cannot be used
(no database file, not migrated, cannot be opened), as for a command line Typer refuses.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from refill import logs
from refill.bootstrap import Refill, build
from refill.config import Settings
from refill.db.migrate import DatabaseBehind, check_up_to_date

# soft_wrap: messages stay on one line when stderr is a file or a pipe.
console = Console(stderr=True, soft_wrap=True)

FAILED = 1
DATABASE_UNUSABLE = 2


def logging_to_stderr(level: int = logging.INFO, settings: Settings | None = None) -> None:
    """Log to stderr as REFILL_LOG_FORMAT says: text lines, or one JSON object a line."""
    if settings is None:
        settings = settings_from_env()
    logs.setup(settings.log_format, level)


def fail(message: str, *, code: int = FAILED) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code=code)


def cannot_open(url: str, exc: DBAPIError) -> typer.Exit:
    return fail(f"cannot open the database at {safe_url(url)}: {exc.orig}", code=DATABASE_UNUSABLE)


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


def open_service(settings: Settings | None = None, *, worker: bool = False) -> Refill:
    """Build the service on REFILL_DATABASE_URL, refusing a database that is missing (no
    file is left behind) or behind (exit 2)."""
    if settings is None:
        settings = settings_from_env()
    refuse_missing_sqlite_file(settings.database_url)
    refill = build(settings, in_process_worker=worker)
    try:
        check_up_to_date(refill.db.engine)
    except DatabaseBehind as exc:
        refill.close()
        raise fail(exc.message, code=DATABASE_UNUSABLE) from None
    except DBAPIError as exc:
        refill.close()
        raise cannot_open(settings.database_url, exc) from None
    return refill


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names; None for another engine or an in-memory database."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    if parsed.database in (None, "", ":memory:"):
        return None
    if parsed.query.get("uri") in ("true", "1"):
        return None  # a `file:` URI (memory, read-only modes): sqlite3 decides, not us
    return Path(os.path.abspath(parsed.database))


def refuse_missing_sqlite_file(url: str) -> None:
    """Exit 2 before connecting when the SQLite file does not exist: connecting would
    leave an empty file behind that every later command takes for a database."""
    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise fail(f"no database at {path}: run `refill db upgrade` first", code=DATABASE_UNUSABLE)


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)
