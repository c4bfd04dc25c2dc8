"""Make sure the PostgreSQL server the tests use answers; start the local cluster if not.

Used by `make test`. PostgreSQL tests never skip, so when the server cannot be reached this
fails with a message saying what is missing instead of letting the suite half-run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def conninfo() -> str:
    url = make_url(os.environ.get("REFILL_TEST_DATABASE_URL", DEFAULT))
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def answers(dsn: str) -> str | None:
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except psycopg.Error as exc:
        return str(exc).strip()


def start_local_cluster() -> None:
    versions = sorted(p.name for p in Path("/etc/postgresql").glob("*") if p.is_dir())
    for version in versions:
        cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"]
        print(f"ensure_postgres: trying {' '.join(cmd)}", file=sys.stderr)
        subprocess.run(cmd, check=False)


def main() -> int:
    dsn = conninfo()
    shown = make_url(dsn).render_as_string(hide_password=True)
    if answers(dsn) is None:
        return 0
    start_local_cluster()
    error = None
    for _ in range(20):
        error = answers(dsn)
        if error is None:
            print(f"ensure_postgres: {shown} is up", file=sys.stderr)
            return 0
        time.sleep(0.5)
    print(
        f"PostgreSQL is required by the tests and does not answer at {shown}:\n  {error}\n"
        "Start a server there (user postgres, database test, trust auth on 127.0.0.1:5432), "
        "or point REFILL_TEST_DATABASE_URL at one.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
