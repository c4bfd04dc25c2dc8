"""The `refill` command as an operator runs it: a real subprocess on a real database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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


def run_in(
    directory: Path, args: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `refill` from ``directory`` with no REFILL_* variable but ``env``'s, so that the
    defaults (sqlite:///refill.db, the refill.secret key file) name files in ``directory``."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("REFILL_")}
    return subprocess.run(
        [REFILL, *args],
        env={**inherited, **(env or {})},
        cwd=directory,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@contextmanager
def port_in_use() -> Iterator[int]:
    """A loopback port with a listening socket on it, as another `refill serve` holds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])
