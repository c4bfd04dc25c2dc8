"""The migrations create exactly the tables the code declares, on both engines."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from refill.db.migrate import check_up_to_date, current_revision, head_revision
from refill.db.schema import metadata


def test_migrated_database_matches_the_declared_schema(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, metadata)
        assert diff == []
        assert current_revision(engine) == head_revision()
        check_up_to_date(engine)  # does not raise
    finally:
        engine.dispose()
