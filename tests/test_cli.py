"""The `refill` command as an operator runs it: real subprocesses, real databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from refill import services
from refill.db.database import Database

REFILL = str(Path(sys.executable).parent / "refill")


def run(args: list[str], database_url: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REFILL_DATABASE_URL": database_url}
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [REFILL, *args], env=env, capture_output=True, text=True, timeout=120, **kwargs
    )


def test_agency_create_prints_one_json_line_with_a_working_owner_key(db_url: str) -> None:
    result = run(["agency", "create", "--name", "Acme Voice", "--json"], db_url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    created = json.loads(lines[0])
    assert set(created) == {"agency_id", "api_key"}
    db = Database(db_url)
    try:
        principal = services.authenticate(db, created["api_key"])
    finally:
        db.dispose()
    assert principal.agency_id == created["agency_id"] and principal.is_owner


def test_agency_create_with_an_unsupported_currency_fails_clearly_and_creates_nothing(
    db_url: str,
) -> None:
    result = run(["agency", "create", "--name", "Acme", "--currency", "XYZ", "--json"], db_url)
    assert result.returncode == 1
    assert "XYZ" in result.stderr and "not supported" in result.stderr
    assert result.stdout == ""
    db = Database(db_url)
    try:
        from sqlalchemy import func, select

        from refill.db.schema import agencies

        count = db.read(
            lambda tx: tx.conn.execute(select(func.count()).select_from(agencies)).scalar_one()
        )
    finally:
        db.dispose()
    assert count == 0


def test_db_upgrade_creates_the_schema_and_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    for _ in range(2):
        result = run(["db", "upgrade"], url)
        assert result.returncode == 0, result.stderr
        assert "up to date" in result.stderr
    created = run(["agency", "create", "--name", "After upgrade", "--json"], url)
    assert created.returncode == 0, created.stderr


@pytest.mark.parametrize(
    "command",
    [["serve", "--port", "1"], ["worker"], ["agency", "create", "--name", "x"]],
    ids=["serve", "worker", "agency-create"],
)
def test_commands_refuse_a_database_that_is_behind_and_name_the_fix(
    tmp_path: Path, command: list[str]
) -> None:
    result = run(command, f"sqlite:///{tmp_path / 'empty.db'}")
    assert result.returncode == 1
    assert "refill db upgrade" in result.stderr


def test_stuck_reloads_report_is_empty_on_a_healthy_database(db_url: str) -> None:
    result = run(["reloads", "stuck", "--json"], db_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
