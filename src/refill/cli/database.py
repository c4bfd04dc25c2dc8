"""Database migrations: `refill db upgrade`."""

from __future__ import annotations

import typer
from alembic.util import CommandError
from sqlalchemy.exc import DBAPIError

from refill.cli.common import (
    DATABASE_UNUSABLE,
    cannot_open,
    console,
    fail,
    safe_url,
    settings_from_env,
)
from refill.db.database import create_db_engine
from refill.db.migrate import current_revision, upgrade

db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema of REFILL_DATABASE_URL (default: sqlite:///refill.db);
    running it again changes nothing."""
    settings = settings_from_env()
    url = safe_url(settings.database_url)
    engine = create_db_engine(settings.database_url)
    try:
        before = current_revision(engine)
        upgrade(engine)
        after = current_revision(engine)
    except DBAPIError as exc:
        raise cannot_open(settings.database_url, exc) from None
    except CommandError as exc:  # e.g. a revision from a newer Refill than this one
        raise fail(f"cannot upgrade the database at {url}: {exc}", code=DATABASE_UNUSABLE) from None
    finally:
        engine.dispose()
    if before is None:
        console.print(f"Created the database schema at {url} (revision {after})")
    elif before == after:
        console.print(f"The database at {url} is already up to date (revision {after})")
    else:
        console.print(f"Upgraded the database at {url} from revision {before} to {after}")
