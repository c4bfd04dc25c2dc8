"""The `refill` command as an operator runs it: a real subprocess on a real database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import Table, func, select

from refill.db.database import Database

REFILL = str(Path(sys.executable).parent / "refill")


def run(args: list[str], database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REFILL, *args],
        env={**os.environ, "REFILL_DATABASE_URL": database_url},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(text: str) -> str:
    """Rich wraps long messages at the console width; compare them as one line."""
    return " ".join(text.split())


def count_rows(database_url: str, table: Table) -> int:
    db = Database(database_url)
    try:
        count = db.read(
            lambda tx: tx.conn.execute(select(func.count()).select_from(table)).scalar_one()
        )
    finally:
        db.dispose()
    return int(count)
