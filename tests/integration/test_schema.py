"""The migrations create exactly the tables the code declares, on both engines."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from refill.db.migrate import check_up_to_date, current_revision, downgrade, head_revision, upgrade
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


def test_migration_0005_brings_saved_settings_within_the_bounds_and_audits_each_change(
    db_url: str,
) -> None:
    engine = create_engine(db_url)
    huge = 9_223_372_036_854_775_807
    try:
        downgrade(engine, "0004")
        with engine.begin() as conn:
            now = datetime(2026, 11, 1, tzinfo=UTC)
            for agency, currency, threshold, daily in (
                ("agc_wild", "USD", huge, 1000),
                ("agc_yen", "JPY", 2_000_000 * 1_000_000, 10),
                ("agc_tame", "USD", 20_000_000, 10),
            ):
                conn.execute(
                    text(
                        "INSERT INTO agencies (id, name, currency, timezone, created_at) "
                        "VALUES (:id, :id, :c, 'UTC', :now)"
                    ),
                    {"id": agency, "c": currency, "now": now},
                )
                conn.execute(
                    text(
                        "INSERT INTO accounts (id, agency_id, kind, currency, balance, "
                        "reload_below, created_at) VALUES (:w, :id, 'wallet', :c, 0, :t, :now)"
                    ),
                    {"w": "wal_" + agency, "id": agency, "c": currency, "t": threshold, "now": now},
                )
                conn.execute(
                    text(
                        "INSERT INTO auto_reload_settings (wallet_id, enabled, threshold, "
                        "reload_amount, status, mode, daily_limit, updated_at) "
                        "VALUES (:w, true, :t, 50000000, 'active', 'fixed', :d, :now)"
                    ),
                    {"w": "wal_" + agency, "t": threshold, "d": daily, "now": now},
                )
        upgrade(engine)
        with engine.connect() as conn:
            saved = {
                row.wallet_id: (row.threshold, row.daily_limit, row.reload_below)
                for row in conn.execute(
                    text(
                        "SELECT s.wallet_id, s.threshold, s.daily_limit, a.reload_below "
                        "FROM auto_reload_settings s JOIN accounts a ON a.id = s.wallet_id"
                    )
                )
            }
            audited = sorted(
                (row.agency_id, row.actor, row.action)
                for row in conn.execute(text("SELECT agency_id, actor, action FROM audit_log"))
            )
    finally:
        engine.dispose()
    assert saved == {
        "wal_agc_wild": (10_000_000_000, 50, 10_000_000_000),
        "wal_agc_yen": (1_000_000_000_000, 10, 1_000_000_000_000),
        "wal_agc_tame": (20_000_000, 10, 20_000_000),
    }
    assert audited == [
        ("agc_wild", "system", "auto_reload.clamped"),
        ("agc_yen", "system", "auto_reload.clamped"),
    ]


def test_a_database_with_money_in_it_upgrades_with_its_foreign_keys_enforced(
    db_url: str,
) -> None:
    """`refill db upgrade` opens SQLite with foreign keys on; SQLite alters a table by
    copying it, which must not fail (or lose a row) when other rows point to that table."""
    from refill import services
    from refill.bootstrap import build
    from refill.config import Settings
    from refill.db.database import create_db_engine

    service = build(Settings(database_url=db_url), in_process_worker=False)
    try:
        agency, _ = services.create_agency(service.db, name="Has Money")
        subteam = services.create_subteam(service.db, agency_id=agency.id, name="Calls")
        services.grant_credits(service.db, agency_id=agency.id, amount=9_000_000, reference="g")
        services.record_usage(
            service.db, agency_id=agency.id, subteam_id=subteam.id, amount=1, reference="u"
        )
    finally:
        service.close()
    engine = create_db_engine(db_url)  # as `refill db upgrade` opens it
    try:
        downgrade(engine, "0006")
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            balance = conn.execute(
                text("SELECT balance FROM accounts WHERE agency_id = :a AND kind = 'wallet'"),
                {"a": agency.id},
            ).scalar_one()
            transfers = conn.execute(text("SELECT count(*) FROM transfers")).scalar_one()
            if conn.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
        assert (balance, transfers) == (8_999_999, 2)
    finally:
        engine.dispose()
