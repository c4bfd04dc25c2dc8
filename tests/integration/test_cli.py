"""The `refill` command as an operator runs it: real subprocesses, real databases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import inspect

from refill import alerts, ledger_check, services
from refill.db.database import Database, create_db_engine
from refill.db.migrate import current_revision, head_revision
from refill.db.schema import accounts, agencies, api_keys, metadata
from refill.reload.policy import ReloadPolicy
from tests.support.cli import count_rows, one_line, run


def test_agency_create_json_prints_exactly_one_json_line_with_a_working_owner_key(
    db_url: str,
) -> None:
    result = run(["agency", "create", "--name", "Acme Voice", "--json"], db_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n"), result.stdout
    assert result.stdout.count("\n") == 1, result.stdout
    created = json.loads(result.stdout)
    assert isinstance(created, dict)
    assert set(created) == {"agency_id", "api_key"}
    assert all(isinstance(v, str) and v for v in created.values())

    db = Database(db_url)
    try:
        principal = services.authenticate(db, created["api_key"])
        agency = services.get_agency(db, created["agency_id"])
    finally:
        db.dispose()
    assert principal.agency_id == created["agency_id"]
    assert principal.is_owner
    assert (agency.name, agency.currency) == ("Acme Voice", "USD")


def test_agency_create_with_an_unsupported_currency_fails_on_stderr_and_creates_nothing(
    db_url: str,
) -> None:
    result = run(["agency", "create", "--name", "Acme", "--currency", "XYZ", "--json"], db_url)
    assert result.returncode != 0
    assert result.stdout == ""
    message = one_line(result.stderr)
    assert "currency 'XYZ' is not supported" in message, result.stderr
    assert "Traceback" not in result.stderr
    for table in (agencies, accounts, api_keys):
        assert count_rows(db_url, table) == 0, table


def test_db_upgrade_creates_the_schema_on_a_fresh_sqlite_file_and_a_second_run_changes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "fresh.db"
    url = f"sqlite:///{path}"

    first = run(["db", "upgrade"], url)
    assert first.returncode == 0, first.stderr
    assert "Created the database schema" in first.stderr
    engine = create_db_engine(url)
    try:
        assert current_revision(engine) == head_revision() is not None
        assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()

    created = run(["agency", "create", "--name", "Before the second upgrade", "--json"], url)
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["api_key"]

    second = run(["db", "upgrade"], url)
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stderr
    engine = create_db_engine(url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
    assert count_rows(url, agencies) == 1
    db = Database(url)
    try:
        assert services.authenticate(db, key).is_owner  # the data is untouched
    finally:
        db.dispose()


@pytest.mark.parametrize(
    "command",
    [
        ["serve", "--host", "127.0.0.1", "--port", "1"],
        ["worker"],
        ["agency", "create", "--name", "x"],
    ],
    ids=["serve", "worker", "agency-create"],
)
def test_commands_refuse_an_unmigrated_sqlite_file_and_tell_to_run_refill_db_upgrade(
    tmp_path: Path, command: list[str]
) -> None:
    path = tmp_path / "empty.db"
    path.touch()  # an empty SQLite file: a database at no revision at all
    result = run(command, f"sqlite:///{path}")
    assert result.returncode != 0
    assert "refill db upgrade" in one_line(result.stderr), result.stderr
    assert "Traceback" not in result.stderr
    assert "Uvicorn running" not in result.stderr


def test_reloads_stuck_reports_nothing_on_a_healthy_database(db_url: str) -> None:
    result = run(["reloads", "stuck", "--json"], db_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "refill.db"
    path.write_bytes(sqlite_template.read_bytes())
    return f"sqlite:///{path}"


def test_wallet_adjust_credits_and_debits_once_per_reference_never_below_zero_and_audits_why(
    sqlite_url: str,
) -> None:
    db = Database(sqlite_url)
    agency, _ = services.create_agency(db, name="Adjusted")
    db.dispose()
    base = ["wallet", "adjust", "--agency", agency.id]

    credit = run(
        [*base, "--amount", "50.00", "--reason", "paid at Stripe, pi_123", "--reference", "fix-1"],
        sqlite_url,
    )
    repeat = run(
        [*base, "--amount", "50.00", "--reason", "again", "--reference", "fix-1"], sqlite_url
    )
    debit = run([*base, "--amount", "-12.50", "--reason", "duplicate credit"], sqlite_url)
    too_much = run([*base, "--amount", "-100.00", "--reason", "oops"], sqlite_url)
    no_reason = run([*base, "--amount", "1.00", "--reason", " "], sqlite_url)

    assert credit.returncode == 0, credit.stderr
    assert "balance after 50.00 USD" in credit.stdout
    assert repeat.returncode == 0
    assert "already adjusted" in repeat.stdout
    assert debit.returncode == 0
    assert "balance after 37.50 USD" in debit.stdout
    assert too_much.returncode == 1
    assert "Traceback" not in too_much.stderr
    assert no_reason.returncode == 1
    assert "--reason" in no_reason.stderr
    db = Database(sqlite_url)
    try:
        assert services.get_wallet(db, ReloadPolicy(), agency_id=agency.id).balance == 37_500_000
        entries = services.list_audit_log(db, agency_id=agency.id).data
        assert [(e.action, e.actor, e.after and e.after["reason"]) for e in entries] == [
            ("wallet.adjusted", "cli", "duplicate credit"),
            ("wallet.adjusted", "cli", "paid at Stripe, pi_123"),
        ]
        assert db.read(ledger_check.check_ledger).balanced
    finally:
        db.dispose()


def test_reloads_stuck_lists_open_alerts_until_an_operator_resolves_them(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    db.write(
        lambda tx: alerts.raise_alert(
            tx, kind="payment_mismatch", subject="pi_odd", agency_id=None, message="look at it"
        )
    )
    [alert] = db.read(alerts.open_alerts)
    db.dispose()

    listed = run(["reloads", "stuck", "--json"], sqlite_url)
    resolved = run(["reloads", "resolve-alert", alert.id, "--note", "refunded"], sqlite_url)
    after = run(["reloads", "stuck", "--json"], sqlite_url)

    assert listed.returncode == 1
    [line] = [json.loads(x) for x in listed.stdout.splitlines()]
    assert (line["type"], line["kind"], line["subject"]) == ("alert", "payment_mismatch", "pi_odd")
    assert resolved.returncode == 0, resolved.stderr
    assert (after.returncode, after.stdout) == (0, "")
