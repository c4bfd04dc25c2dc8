"""Alembic, driven from code: `refill db upgrade` and the start-up check of `refill serve`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from refill.errors import RefillError

MIGRATIONS = Path(__file__).parent / "migrations"


class DatabaseBehind(RefillError):
    code = "database_behind"
    status = 503


def _config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """One transaction for the migrations. SQLite alters a table by copying it (Alembic's
    batch mode), and with foreign keys on, dropping a table that other rows point to fails:
    they are off while the migrations run and every key is checked before the commit."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        raw: Any = conn.connection.driver_connection
        if sqlite:  # outside any transaction, or SQLite ignores it
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                yield conn
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(
                            f"the migration would leave {len(broken)} rows whose foreign keys "
                            f"point nowhere (first: {tuple(broken[0])}); nothing was changed"
                        )
        finally:
            if sqlite:
                raw.execute("PRAGMA foreign_keys=ON")


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = _config()
    with _migrating(engine) as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Back to ``revision`` (operators undoing a release; tests of a data migration)."""
    cfg = _config()
    with _migrating(engine) as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def check_up_to_date(engine: Engine) -> None:
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise DatabaseBehind(
            f"the database is at revision {current or 'none (empty)'} but this Refill needs "
            f"{head}; run `refill db upgrade` (with the same REFILL_DATABASE_URL) first"
        )
