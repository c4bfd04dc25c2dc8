"""What the `refill` command does when it cannot do its work: a port already taken, no
database, a database it cannot use. Exit statuses: 0 done, 1 refused (for `refill reloads
stuck`: something listed), 2 the database cannot be used. Real subprocesses, real files."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

import refill
from refill import alerts
from refill.db.database import Database, create_db_engine
from refill.db.migrate import MIGRATIONS, head_revision, upgrade
from refill.db.schema import agencies
from tests.support.cli import count_rows, one_line, port_in_use, run, run_in
from tests.support.server import free_port


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "refill.db"
    path.write_bytes(sqlite_template.read_bytes())
    return f"sqlite:///{path}"


def seconds_to_run(
    args: list[str], database_url: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = run(args, database_url)
    return result, time.monotonic() - started


# `refill serve`: the address is checked before the database is touched.


def test_serve_demo_on_a_port_in_use_exits_1_at_once_without_seeding_the_demo(
    sqlite_url: str,
) -> None:
    # The command's own start-up (imports) is most of any run: the refusal may add little.
    _, startup = seconds_to_run(["--version"], sqlite_url)
    with port_in_use() as port:
        result, took = seconds_to_run(["serve", "--demo", "--port", str(port)], sqlite_url)

    assert result.returncode == 1, result.stderr
    message = one_line(result.stderr)
    prefix = (
        f"error: 127.0.0.1:{port} is already in use (is another `refill serve` running?). "
        "Pick another port: refill serve --demo --port "
    )
    assert message.startswith(prefix), result.stderr
    suggested = re.fullmatch(r"\d+", message.removeprefix(prefix))
    assert suggested is not None, result.stderr
    assert int(suggested.group()) != port
    for never in ("sign in", "owner key", "Uvicorn", "Traceback"):
        assert never not in result.stderr + result.stdout, never
    assert took < 1.5 * startup + 0.5, (took, startup)
    assert count_rows(sqlite_url, agencies) == 0


def test_serve_on_a_port_in_use_does_not_create_the_missing_database_file(tmp_path: Path) -> None:
    path = tmp_path / "never.db"
    with port_in_use() as port:
        result = run(["serve", "--port", str(port)], f"sqlite:///{path}")

    assert result.returncode == 1, result.stderr
    assert f"127.0.0.1:{port} is already in use" in one_line(result.stderr)
    assert "Pick another port: refill serve --port " in one_line(result.stderr)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_serve_on_an_address_of_no_local_interface_exits_1_in_one_line_before_the_demo(
    sqlite_url: str,
) -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this machine.
    result = run(["serve", "--demo", "--host", "192.0.2.1", "--port", "8000"], sqlite_url)

    assert result.returncode == 1, result.stderr
    assert one_line(result.stderr).startswith("error: cannot listen on 192.0.2.1:8000: ")
    assert "Traceback" not in result.stderr
    assert count_rows(sqlite_url, agencies) == 0


# `refill --version`


def test_version_prints_the_installed_distributions_version_and_touches_no_database(
    tmp_path: Path,
) -> None:
    result = run_in(tmp_path, ["--version"])

    assert (result.returncode, result.stdout) == (0, f"refill {version('refill')}\n")
    assert refill.__version__ == version("refill")
    assert list(tmp_path.iterdir()) == []


def test_version_of_a_source_tree_without_installed_metadata_is_a_placeholder(
    tmp_path: Path,
) -> None:
    # A copy of the package (src/ holds the editable install's metadata), and -S keeps
    # site-packages, where the installed distribution's metadata is, off the path.
    (tmp_path / "refill").mkdir()
    shutil.copy(Path(refill.__file__), tmp_path / "refill" / "__init__.py")
    result = subprocess.run(
        [sys.executable, "-S", "-c", "import refill; print(refill.__version__)"],
        env={"PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert (result.returncode, result.stdout) == (0, "0+unknown\n"), result.stderr


# `refill reloads stuck`: 0 nothing, 1 something listed, 2 could not check.


def test_reloads_stuck_exits_0_with_nothing_open_and_1_once_it_lists_an_alert(db_url: str) -> None:
    nothing = run(["reloads", "stuck", "--json"], db_url)
    db = Database(db_url)
    try:
        db.write(
            lambda tx: alerts.raise_alert(
                tx, kind="payment_mismatch", subject="pi_odd", agency_id=None, message="look"
            )
        )
    finally:
        db.dispose()
    something = run(["reloads", "stuck"], db_url)

    assert (nothing.returncode, nothing.stdout) == (0, ""), nothing.stderr
    assert something.returncode == 1, something.stderr
    assert "pi_odd" in something.stdout


def test_reloads_stuck_help_documents_its_exit_statuses(tmp_path: Path) -> None:
    result = run_in(tmp_path, ["reloads", "stuck", "--help"])

    assert result.returncode == 0, result.stderr
    text = one_line(result.stdout)
    for status in (
        "0 nothing is stuck and no alert is open;",
        "1 something is listed;",
        "2 the check could not be made (no database, not migrated, cannot be opened",
    ):
        assert status in text, result.stdout


def missing_file(path: Path) -> str:
    return f"sqlite:///{path}"


def garbage_file(path: Path) -> str:
    path.write_text("not a database, a note someone left here\n" * 100)
    return f"sqlite:///{path}"


def empty_file(path: Path) -> str:
    path.touch()
    return f"sqlite:///{path}"


def closed_postgresql_port(_: Path) -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/refill"


@pytest.mark.parametrize(
    ("database", "env", "said"),
    [
        (missing_file, {}, "no database at"),
        (empty_file, {}, "run `refill db upgrade`"),
        (garbage_file, {}, "cannot open the database at sqlite:///"),
        (closed_postgresql_port, {}, "cannot open the database at postgresql+psycopg://"),
        (missing_file, {"REFILL_GATEWAY": "stripe"}, "invalid configuration"),
    ],
    ids=["no-file", "not-migrated", "not-a-database", "unreachable", "invalid-configuration"],
)
def test_reloads_stuck_exits_2_not_1_when_it_cannot_check(
    tmp_path: Path,
    database: Callable[[Path], str],
    env: dict[str, str],
    said: str,
) -> None:
    url = database(tmp_path / "refill.db")
    result = run_in(tmp_path, ["reloads", "stuck"], {"REFILL_DATABASE_URL": url, **env})

    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert said in one_line(result.stderr), result.stderr
    assert "Traceback" not in result.stderr


# Commands that read a database refuse a SQLite file that is not there, and create nothing.

READERS = {
    # serve checks its port first: a free one, so that the database is what it refuses.
    "serve": ["serve", "--port", str(free_port())],
    "worker": ["worker"],
    "agency-create": ["agency", "create", "--name", "Acme"],
    "keys-list": ["keys", "list", "--agency", "agc_x"],
    "keys-create": ["keys", "create", "--agency", "agc_x"],
    "keys-revoke": ["keys", "revoke", "key_x"],
    "wallet-adjust": ["wallet", "adjust", "--agency", "agc_x", "--amount", "1", "--reason", "r"],
    "reloads-stuck": ["reloads", "stuck"],
    "reloads-settle": ["reloads", "settle", "rld_x", "--paid", "--reason", "checked"],
    "reloads-resolve-alert": ["reloads", "resolve-alert", "alr_x", "--note", "done"],
    "emails-list": ["emails", "list"],
}


@pytest.mark.parametrize("command", READERS.values(), ids=READERS.keys())
def test_a_command_without_a_database_exits_2_and_leaves_no_file_behind(
    tmp_path: Path, command: list[str]
) -> None:
    # No REFILL_* at all: the default sqlite:///refill.db, and no server key (which a
    # started service would write to refill.secret).
    result = run_in(tmp_path, command)

    assert result.returncode == 2, (result.stdout, result.stderr)
    assert one_line(result.stderr) == (
        f"error: no database at {tmp_path.resolve() / 'refill.db'}: run `refill db upgrade` first"
    )
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_relative_sqlite_url_is_refused_with_the_absolute_path_it_names(tmp_path: Path) -> None:
    result = run_in(
        tmp_path,
        ["agency", "create", "--name", "Acme"],
        {"REFILL_DATABASE_URL": "sqlite:///d/x.db"},
    )

    assert result.returncode == 2, result.stderr
    assert f"no database at {tmp_path.resolve() / 'd' / 'x.db'}:" in one_line(result.stderr)
    assert list(tmp_path.iterdir()) == []


# `refill db upgrade` says what it did.


def previous_revision() -> str:
    head = head_revision()
    assert head is not None
    down = ScriptDirectory(str(MIGRATIONS)).get_revision(head).down_revision
    assert isinstance(down, str)
    return down


def test_db_upgrade_says_it_created_the_schema_and_then_that_it_is_up_to_date(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"

    created = run_in(tmp_path, ["db", "upgrade"], {"REFILL_DATABASE_URL": url})
    again = run_in(tmp_path, ["db", "upgrade"], {"REFILL_DATABASE_URL": url})

    head = head_revision()
    assert created.returncode == 0, created.stderr
    assert one_line(created.stderr) == f"Created the database schema at {url} (revision {head})"
    assert again.returncode == 0, again.stderr
    assert one_line(again.stderr) == (
        f"The database at {url} is already up to date (revision {head})"
    )


def test_db_upgrade_says_from_which_revision_it_upgraded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    before = previous_revision()
    engine = create_db_engine(url)
    try:
        upgrade(engine, before)
    finally:
        engine.dispose()

    result = run(["db", "upgrade"], url)

    assert result.returncode == 0, result.stderr
    assert one_line(result.stderr) == (
        f"Upgraded the database at {url} from revision {before} to {head_revision()}"
    )


def test_db_upgrade_on_a_migrated_database_says_it_is_already_up_to_date(db_url: str) -> None:
    result = run(["db", "upgrade"], db_url)

    assert result.returncode == 0, result.stderr
    assert "is already up to date" in one_line(result.stderr)
    assert f"(revision {head_revision()})" in one_line(result.stderr)


def test_db_upgrade_names_the_database_without_its_password(pg_url: str) -> None:
    # The test server trusts local connections, so any password is accepted.
    url = make_url(pg_url).set(password="kept-out-of-messages")
    result = run(["db", "upgrade"], url.render_as_string(hide_password=False))

    assert result.returncode == 0, result.stderr
    assert "kept-out-of-messages" not in result.stderr
    assert url.render_as_string(hide_password=True) in one_line(result.stderr)


def test_db_upgrade_of_an_unreachable_database_exits_2_without_its_password(
    tmp_path: Path,
) -> None:
    url = f"postgresql+psycopg://postgres:kept-out-of-messages@127.0.0.1:{free_port()}/refill"
    result = run_in(tmp_path, ["db", "upgrade"], {"REFILL_DATABASE_URL": url})

    assert result.returncode == 2, result.stderr
    assert "cannot open the database at postgresql+psycopg://postgres:***@" in one_line(
        result.stderr
    )
    assert "kept-out-of-messages" not in result.stderr
    assert "Traceback" not in result.stderr
