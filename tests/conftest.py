"""Shared fixtures: real databases (a fresh SQLite file, a fresh PostgreSQL database).

PostgreSQL tests never skip: when the server does not answer, the run stops with a message
that says what is missing.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from argon2 import PasswordHasher, profiles
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from refill.bootstrap import Refill, build
from refill.clock import FrozenClock
from refill.config import Settings
from refill.db.database import create_db_engine
from refill.db.migrate import upgrade
from refill.db.schema import metadata
from refill.gateway.sandbox import SandboxGateway
from refill.services import passwords
from refill.web import create_app
from tests.support.doubles import RecordingGateway
from tests.support.server import start_server  # noqa: F401  (a fixture for every e2e module)
from tests.support.stripe_peer import LocalStripe

TIERS = ("unit", "integration", "e2e", "browser")

# One server key for every service and `refill serve` the tests start (webhook secrets and
# link tokens are derived from it); no key file is written into the checkout.
os.environ.setdefault("REFILL_SECRET_KEY", "dGVzdHMtb2YtcmVmaWxsLWEta2V5LW9mLTMyLWJ5dGVzISE=")

# Passwords made in this process (members added, sign-ups, resets) are argon2id with the
# cheapest parameters: a real hash costs 64 MiB and about 0.4 s here, and hundreds of tests
# sign someone in. Every `refill serve` a test starts keeps the real parameters (the
# sign-in burst test measures them).
passwords.use_hasher(PasswordHasher.from_parameters(profiles.CHEAPEST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test carries its tier's marker, from its folder (`make test-fast` runs unit)."""
    for item in items:
        for tier in TIERS:
            if f"/tests/{tier}/" in str(item.path):
                item.add_marker(getattr(pytest.mark, tier))


DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ENGINES = ["sqlite", "postgresql"]


def pg_admin_url() -> str:
    return os.environ.get("REFILL_TEST_DATABASE_URL", DEFAULT_PG)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this run, dropped at the end."""
    admin_url = make_url(pg_admin_url())
    name = f"refill_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # not a skip: PostgreSQL tests must run
        pytest.exit(
            f"PostgreSQL is not reachable at {admin_url.render_as_string(hide_password=True)} "
            f"({type(exc).__name__}: {exc}). Start it (make test tries pg_ctlcluster) or set "
            "REFILL_TEST_DATABASE_URL.",
            returncode=3,
        )
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    engine = create_db_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; each test gets a copy."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    engine = create_db_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()  # the last connection to close folds the WAL back into the file
    assert not path.with_name(path.name + "-wal").exists()
    return path


def _truncate_postgres(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(t.name for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=ENGINES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A clean, migrated database on each engine."""
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "refill.db"
        shutil.copy(template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_url")
    _truncate_postgres(url)
    return url


@pytest.fixture(scope="session")
def localstripe() -> Iterator[LocalStripe]:
    """The Stripe emulator, one process for the whole run (it cannot run twice at once)."""
    peer = LocalStripe()
    yield peer
    peer.stop()


@pytest.fixture
def gateway() -> RecordingGateway:
    return RecordingGateway(SandboxGateway())


@pytest.fixture
def refill(db_url: str, gateway: RecordingGateway) -> Iterator[Refill]:
    """The service with reloads processed synchronously right after each commit."""
    service = build(Settings(database_url=db_url), gateway=gateway, in_process_worker=False)
    service.process_new_attempts_inline()
    yield service
    service.close()


@pytest.fixture
def client(refill: Refill) -> Iterator[TestClient]:
    with TestClient(create_app(refill)) as test_client:
        yield test_client


FROZEN_START = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    """Time that moves only when a test says so (2026-12-03 09:00 UTC, unless a module
    gives its own ``clock``)."""
    return FrozenClock(FROZEN_START)


@pytest.fixture
def svc(db_url: str, clock: FrozenClock) -> Iterator[Refill]:
    """The service on ``clock`` without its worker: a reload waits until a test runs it."""
    service = build(Settings(database_url=db_url), clock=clock, in_process_worker=False)
    yield service
    service.close()


@pytest.fixture
def api(svc: Refill) -> Iterator[TestClient]:
    with TestClient(create_app(svc)) as test_client:
        yield test_client


@pytest.fixture
def frozen_refill(db_url: str, gateway: RecordingGateway, clock: FrozenClock) -> Iterator[Refill]:
    """The service on ``clock``, reloads processed right after each commit."""
    service = build(
        Settings(database_url=db_url), gateway=gateway, clock=clock, in_process_worker=False
    )
    service.process_new_attempts_inline()
    yield service
    service.close()


@pytest.fixture
def frozen_client(frozen_refill: Refill) -> Iterator[TestClient]:
    with TestClient(create_app(frozen_refill)) as test_client:
        yield test_client
