"""Database migrations: `refill db upgrade`."""

from __future__ import annotations

import typer
from sqlalchemy.exc import OperationalError

from refill.cli.common import (
    console,
    safe_url,
    settings_from_env,
    unreachable,
)
from refill.db.database import create_db_engine
from refill.db.migrate import upgrade

db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the migrations to REFILL_DATABASE_URL (default: sqlite:///refill.db)."""
    settings = settings_from_env()
    engine = create_db_engine(settings.database_url)
    try:
        upgrade(engine)
    except OperationalError as exc:
        raise unreachable(settings.database_url, exc) from None
    finally:
        engine.dispose()
    console.print(f"database at {safe_url(settings.database_url)} is up to date")
