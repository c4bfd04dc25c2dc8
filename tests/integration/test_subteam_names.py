"""Subteam names unique per agency whatever their case, renaming, archiving and restoring,
on SQLite and PostgreSQL: through the API, the services and migration 0008.

Time is a FrozenClock, so nothing sleeps and every timestamp is known.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from refill import services
from refill.bootstrap import Refill
from refill.clock import FrozenClock
from refill.db.database import Database, create_db_engine
from refill.db.migrate import current_revision, downgrade, head_revision, upgrade
from refill.db.schema import transfers
from refill.errors import Conflict, Forbidden
from refill.services import subteams as subteam_service

START = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class Owner:
    agency_id: str
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


@pytest.fixture
def owner(svc: Refill) -> Owner:
    agency, key = services.create_agency(svc.db, name="Acme Voice")
    return Owner(agency.id, key.secret)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def create(api: TestClient, owner: Owner, name: str) -> Any:
    return api.post("/v1/subteams", json={"name": name}, headers=owner.headers)


def made(api: TestClient, owner: Owner, name: str) -> str:
    response = create(api, owner, name)
    assert response.status_code == 201, response.text
    subteam_id: str = response.json()["id"]
    return subteam_id


def patch(api: TestClient, owner: Owner, subteam_id: str, body: Any) -> Any:
    return api.patch(f"/v1/subteams/{subteam_id}", json=body, headers=owner.headers)


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert (body["status"], body["code"]) == (status, code), body
    return body


def names(svc: Refill, owner: Owner) -> list[str]:
    page = services.list_subteams(svc.db, agency_id=owner.agency_id, include_archived=True)
    return [t.name for t in page.data]


def audit_actions(svc: Refill, owner: Owner) -> list[str]:
    entries = services.list_audit_log(svc.db, agency_id=owner.agency_id, limit=200).data
    return [e.action for e in entries]


# --- unique names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param("Sales", "sales", id="lower-case"),
        pytest.param("Sales", "  SALES  ", id="capitals-and-spaces"),
        pytest.param("Équipe Nord", "ÉQUIPE NORD", id="accented-capitals"),
        pytest.param("Straße", "STRASSE", id="sharp-s-folds-to-ss"),
    ],
)
def test_a_second_subteam_with_the_same_name_in_any_case_is_refused_409(
    svc: Refill, api: TestClient, owner: Owner, first: str, second: str
) -> None:
    made(api, owner, first)

    body = assert_problem(create(api, owner, second), 409, "subteam_name_taken")

    assert body["field"] == "name"
    assert names(svc, owner) == [first]


def test_the_same_name_is_free_in_another_agency(
    svc: Refill, api: TestClient, owner: Owner
) -> None:
    _, other_key = services.create_agency(svc.db, name="Other Voice")
    made(api, owner, "Sales")

    response = api.post("/v1/subteams", json={"name": "SALES"}, headers=bearer(other_key.secret))

    assert response.status_code == 201


def test_a_rename_to_another_subteams_name_in_any_case_is_refused_409_and_changes_nothing(
    svc: Refill, api: TestClient, owner: Owner
) -> None:
    made(api, owner, "Sales")
    support = made(api, owner, "Support")
    before = audit_actions(svc, owner)

    assert_problem(patch(api, owner, support, {"name": " sAlEs "}), 409, "subteam_name_taken")
    assert_problem(
        patch(api, owner, support, {"name": "sales", "archived": True}), 409, "subteam_name_taken"
    )

    assert names(svc, owner) == ["Sales", "Support"]
    assert api.get(f"/v1/subteams/{support}", headers=owner.headers).json()["archived_at"] is None
    assert audit_actions(svc, owner) == before


def test_a_subteam_renamed_in_its_own_name_with_other_capitals_is_renamed_and_audited(
    svc: Refill, api: TestClient, owner: Owner
) -> None:
    sales = made(api, owner, "sales")

    response = patch(api, owner, sales, {"name": "Sales"})

    assert response.status_code == 200
    assert response.json()["name"] == "Sales"
    [entry] = [
        e
        for e in services.list_audit_log(svc.db, agency_id=owner.agency_id).data
        if e.action == "subteam.renamed"
    ]
    assert (entry.before, entry.after, entry.target_id) == (
        {"name": "sales"},
        {"name": "Sales"},
        sales,
    )


def test_an_archived_subteams_name_is_still_taken(
    svc: Refill, api: TestClient, owner: Owner
) -> None:
    sales = made(api, owner, "Sales")
    assert patch(api, owner, sales, {"archived": True}).status_code == 200

    assert_problem(create(api, owner, "sales"), 409, "subteam_name_taken")


def test_two_subteams_created_with_one_name_at_once_make_one_the_database_refuses_the_other(
    svc: Refill, owner: Owner
) -> None:
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def create_as(name: str) -> None:
        barrier.wait()
        try:
            subteam_service.create_subteam(svc.db, agency_id=owner.agency_id, name=name)
            outcomes.append("created")
        except Conflict as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=create_as, args=(n,)) for n in ("Night", "NIGHT")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["created", "subteam_name_taken"]
    assert len(names(svc, owner)) == 1


# --- migration 0008 ------------------------------------------------------------------------

SEEDED = [
    # (id, agency, name, minutes after the start): ids do not sort in creation order.
    ("sub_z1", "agc_a", "sales", 0),
    ("sub_a1", "agc_a", "Sales", 1),  # the second "sales": (2)
    ("sub_m1", "agc_a", "Support", 2),
    ("sub_b1", "agc_a", "SALES", 3),  # the third: (3)
    ("sub_c1", "agc_a", "support (2)", 4),  # unique: keeps its name
    ("sub_d1", "agc_a", "SUPPORT", 5),  # "(2)" is taken by sub_c1: (3)
    ("sub_e1", "agc_b", "Sales", 6),  # another agency: keeps its name
]


def _seed_at_0007(url: str) -> None:
    # The engine `refill db upgrade` uses: on SQLite it enforces foreign keys.
    engine = create_db_engine(url)
    try:
        downgrade(engine, "0007")
        start = START.replace(tzinfo=None) if url.startswith("sqlite") else START
        with engine.begin() as conn:
            for agency in ("agc_a", "agc_b"):
                conn.execute(
                    text(
                        "INSERT INTO agencies (id, name, currency, timezone, created_at) "
                        "VALUES (:id, :id, 'USD', 'UTC', :now)"
                    ),
                    {"id": agency, "now": start},
                )
                conn.execute(
                    text(
                        "INSERT INTO accounts (id, agency_id, kind, currency, balance, "
                        "created_at) VALUES (:w, :id, 'wallet', 'USD', 0, :now)"
                    ),
                    {"w": "wal_" + agency, "id": agency, "now": start},
                )
            for subteam_id, agency, name, minutes in SEEDED:
                conn.execute(
                    text(
                        "INSERT INTO subteams (id, agency_id, wallet_id, name, created_at) "
                        "VALUES (:id, :agency, :wallet, :name, :at)"
                    ),
                    {
                        "id": subteam_id,
                        "agency": agency,
                        "wallet": "wal_" + agency,
                        "name": name,
                        "at": start + timedelta(minutes=minutes),
                    },
                )
            # Rows that refer to a renamed subteam: the migration must not copy the table.
            conn.execute(
                text(
                    "INSERT INTO api_keys (id, agency_id, subteam_id, role, digest, created_at) "
                    "VALUES ('key_1', 'agc_a', 'sub_a1', 'subteam', :digest, :now)"
                ),
                {"digest": "0" * 64, "now": start},
            )
            conn.execute(
                text(
                    "INSERT INTO accounts (id, agency_id, kind, currency, balance, created_at) "
                    "VALUES ('sys_usage_usd', NULL, 'usage_revenue', 'USD', 0, :now)"
                ),
                {"now": start},
            )
            conn.execute(
                text(
                    "INSERT INTO transfers (agency_id, debit_account_id, credit_account_id, "
                    "amount, kind, reference, subteam_id, wallet_balance_after, created_at) "
                    "VALUES ('agc_a', 'wal_agc_a', 'sys_usage_usd', 1, 'usage', 'u1', "
                    "'sub_a1', 0, :now)"
                ),
                {"now": start},
            )
        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_migration_0008_suffixes_duplicate_names_in_creation_order_and_audits_each(
    db_url: str,
) -> None:
    _seed_at_0007(db_url)

    db = Database(db_url)
    try:
        stored = db.read(
            lambda tx: {
                row.id: (row.name, row.name_key)
                for row in tx.conn.execute(text("SELECT id, name, name_key FROM subteams"))
            }
        )
        audited = db.read(
            lambda tx: sorted(
                (row.target_id, row.actor, row.action, json.loads(row.after)["name"])
                for row in tx.conn.execute(
                    text("SELECT target_id, actor, action, after FROM audit_log")
                )
            )
        )
        usage = db.read(
            lambda tx: tx.conn.execute(
                select(func.count()).where(transfers.c.subteam_id == "sub_a1")
            ).scalar_one()
        )
        with pytest.raises(Conflict):
            subteam_service.create_subteam(db, agency_id="agc_a", name="SALES (2)")
    finally:
        db.dispose()

    assert stored == {
        "sub_z1": ("sales", "sales"),
        "sub_a1": ("Sales (2)", "sales (2)"),
        "sub_m1": ("Support", "support"),
        "sub_b1": ("SALES (3)", "sales (3)"),
        "sub_c1": ("support (2)", "support (2)"),
        "sub_d1": ("SUPPORT (3)", "support (3)"),
        "sub_e1": ("Sales", "sales"),
    }
    assert audited == [
        ("sub_a1", "system", "subteam.renamed", "Sales (2)"),
        ("sub_b1", "system", "subteam.renamed", "SALES (3)"),
        ("sub_d1", "system", "subteam.renamed", "SUPPORT (3)"),
    ]
    assert usage == 1


# --- archive and restore -------------------------------------------------------------------


@dataclass
class Archived:
    subteam_id: str
    subteam_secrets: list[str]
    earlier_reference: str


@pytest.fixture
def archived(svc: Refill, api: TestClient, owner: Owner, clock: FrozenClock) -> Archived:
    """Sales with credits, one recorded usage and three working keys (one rolled with an
    hour's overlap), then archived."""
    services.grant_credits(svc.db, agency_id=owner.agency_id, amount=50_000_000, reference="g")
    sales = made(api, owner, "Sales")
    first = services.create_subteam_key(svc.db, agency_id=owner.agency_id, subteam_id=sales)
    second = services.create_subteam_key(svc.db, agency_id=owner.agency_id, subteam_id=sales)
    rolled, _ = services.roll_key(
        svc.db,
        agency_id=owner.agency_id,
        key_id=second.id,
        expires_in=timedelta(hours=1),
        actor="test",
    )
    recorded = api.post(
        "/v1/usage",
        json={"subteam_id": sales, "amount": "1.00", "reference": "before"},
        headers=bearer(first.secret),
    )
    assert recorded.status_code == 201, recorded.text
    clock.advance(timedelta(minutes=1))
    response = patch(api, owner, sales, {"archived": True})
    assert response.status_code == 200, response.text
    assert response.json()["archived_at"] == "2026-12-03T09:01:00Z"
    return Archived(sales, [first.secret, second.secret, rolled.secret], "before")


def _balance_and_transfers(svc: Refill, owner: Owner) -> tuple[int, int]:
    wallet = services.get_wallet(svc.db, svc.policy, agency_id=owner.agency_id)
    count = svc.db.read(
        lambda tx: tx.conn.execute(
            select(func.count()).where(transfers.c.agency_id == owner.agency_id)
        ).scalar_one()
    )
    return wallet.balance, int(count)


def test_archiving_revokes_every_working_key_of_the_subteam_each_audited(
    svc: Refill, api: TestClient, owner: Owner, archived: Archived
) -> None:
    for secret in archived.subteam_secrets:
        response = api.post(
            "/v1/calls/authorize", json={"subteam_id": archived.subteam_id}, headers=bearer(secret)
        )
        assert_problem(response, 401, "unauthenticated")
    entries = services.list_audit_log(svc.db, agency_id=owner.agency_id, limit=200).data
    revoked = [e for e in entries if e.action == "key.revoked"]
    [archiving] = [e for e in entries if e.action == "subteam.archived"]
    assert len(revoked) == 3
    assert all(e.after == {"reason": "subteam_archived"} for e in revoked)
    assert archiving.after is not None
    assert sorted(archiving.after["revoked_key_ids"]) == sorted(str(e.target_id) for e in revoked)
    assert api.get("/v1/wallet", headers=owner.headers).status_code == 200  # owner key lives


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/v1/usage", {"amount": "1.00", "reference": "after"}, id="usage"),
        pytest.param("/v1/calls/authorize", {}, id="authorize"),
    ],
)
def test_an_archived_subteams_usage_and_calls_are_refused_403_on_the_owner_key_too(
    svc: Refill,
    api: TestClient,
    owner: Owner,
    archived: Archived,
    path: str,
    body: dict[str, str],
) -> None:
    before = _balance_and_transfers(svc, owner)

    response = api.post(
        path, json={"subteam_id": archived.subteam_id, **body}, headers=owner.headers
    )

    assert_problem(response, 403, "subteam_archived")
    assert _balance_and_transfers(svc, owner) == before


def test_the_debit_and_the_authorization_themselves_refuse_an_archived_subteam(
    svc: Refill, owner: Owner, archived: Archived
) -> None:
    before = _balance_and_transfers(svc, owner)

    with pytest.raises(Forbidden) as usage:
        services.record_usage(
            svc.db,
            agency_id=owner.agency_id,
            subteam_id=archived.subteam_id,
            amount=1_000_000,
            reference="past-the-check",
        )
    with pytest.raises(Forbidden) as call:
        services.authorize_call(svc.db, agency_id=owner.agency_id, subteam_id=archived.subteam_id)

    assert (usage.value.code, call.value.code) == ("subteam_archived", "subteam_archived")
    assert _balance_and_transfers(svc, owner) == before


def test_usage_recorded_before_archiving_replays_as_it_was(
    svc: Refill, api: TestClient, owner: Owner, archived: Archived
) -> None:
    before = _balance_and_transfers(svc, owner)

    response = api.post(
        "/v1/usage",
        json={
            "subteam_id": archived.subteam_id,
            "amount": "1.00",
            "reference": archived.earlier_reference,
        },
        headers=owner.headers,
    )

    assert response.status_code == 200, response.text
    assert _balance_and_transfers(svc, owner) == before


def test_an_archived_subteam_gets_no_new_key(
    svc: Refill, api: TestClient, owner: Owner, archived: Archived
) -> None:
    keys_before = services.list_keys(svc.db, agency_id=owner.agency_id).data

    response = api.post(f"/v1/subteams/{archived.subteam_id}/keys", headers=owner.headers)

    assert_problem(response, 403, "subteam_archived")
    assert services.list_keys(svc.db, agency_id=owner.agency_id).data == keys_before


def test_a_restored_subteam_takes_usage_again_with_new_keys_only(
    svc: Refill, api: TestClient, owner: Owner, archived: Archived
) -> None:
    restored = patch(api, owner, archived.subteam_id, {"archived": False})
    fresh = api.post(f"/v1/subteams/{archived.subteam_id}/keys", headers=owner.headers)
    usage = api.post(
        "/v1/usage",
        json={"subteam_id": archived.subteam_id, "amount": "1.00", "reference": "later"},
        headers=bearer(fresh.json()["api_key"]),
    )
    old = api.post(
        "/v1/calls/authorize",
        json={"subteam_id": archived.subteam_id},
        headers=bearer(archived.subteam_secrets[0]),
    )

    assert restored.status_code == 200
    assert restored.json()["archived_at"] is None
    assert fresh.status_code == 201
    assert usage.status_code == 201, usage.text
    assert_problem(old, 401, "unauthenticated")
    assert audit_actions(svc, owner)[:3] == ["key.created", "subteam.restored", "subteam.archived"]


def test_archiving_twice_or_an_empty_patch_changes_nothing_and_audits_nothing(
    svc: Refill, api: TestClient, owner: Owner, archived: Archived
) -> None:
    before = audit_actions(svc, owner)

    again = patch(api, owner, archived.subteam_id, {"archived": True})
    empty = patch(api, owner, archived.subteam_id, {})
    nothing = api.patch(f"/v1/subteams/{archived.subteam_id}", headers=owner.headers)

    assert again.json() == empty.json() == nothing.json()
    assert again.json()["archived_at"] == "2026-12-03T09:01:00Z"
    assert audit_actions(svc, owner) == before


def test_the_list_leaves_archived_subteams_out_unless_asked_and_shows_when_they_were_archived(
    api: TestClient, owner: Owner, archived: Archived
) -> None:
    support = made(api, owner, "Support")

    default = api.get("/v1/subteams", headers=owner.headers).json()
    everything = api.get("/v1/subteams?include_archived=true", headers=owner.headers).json()
    one = api.get(f"/v1/subteams/{archived.subteam_id}", headers=owner.headers).json()

    assert [(t["id"], t["archived_at"]) for t in default["data"]] == [(support, None)]
    assert [(t["name"], t["archived_at"]) for t in everything["data"]] == [
        ("Sales", "2026-12-03T09:01:00Z"),
        ("Support", None),
    ]
    assert (one["name"], one["archived_at"]) == ("Sales", "2026-12-03T09:01:00Z")


# --- the PATCH's own refusals --------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param({"name": ""}, "validation_error", id="empty-name"),
        pytest.param({"name": "   "}, "validation_error", id="blank-name"),
        pytest.param({"name": "x" * 201}, "validation_error", id="name-too-long"),
        pytest.param({"name": 7}, "validation_error", id="name-not-text"),
        pytest.param({"name": "Sa\x00les"}, "invalid_characters", id="nul-in-name"),
        pytest.param({"archived": "yes"}, "validation_error", id="archived-not-boolean"),
        pytest.param({"archived": 1}, "validation_error", id="archived-number"),
        pytest.param({"frozen": True}, "validation_error", id="unknown-field"),
        pytest.param([], "validation_error", id="not-an-object"),
    ],
)
def test_a_patch_that_does_not_validate_is_refused_422_and_changes_nothing(
    svc: Refill, api: TestClient, owner: Owner, body: Any, code: str
) -> None:
    sales = made(api, owner, "Sales")
    before = (names(svc, owner), audit_actions(svc, owner))

    assert_problem(patch(api, owner, sales, body), 422, code)

    assert (names(svc, owner), audit_actions(svc, owner)) == before


@pytest.mark.parametrize("method", ["GET", "PATCH"])
def test_another_agencys_subteam_is_not_found_and_not_changed(
    svc: Refill, api: TestClient, owner: Owner, method: str
) -> None:
    other, _ = services.create_agency(svc.db, name="Other Voice")
    theirs = subteam_service.create_subteam(svc.db, agency_id=other.id, name="Theirs").id

    response = api.request(
        method, f"/v1/subteams/{theirs}", json={"archived": True}, headers=owner.headers
    )

    assert_problem(response, 404, "subteam_not_found")
    stored = subteam_service.read_subteam(svc.db, agency_id=other.id, subteam_id=theirs)
    assert stored.archived_at is None


def test_a_subteam_key_may_neither_rename_nor_archive(
    svc: Refill, api: TestClient, owner: Owner
) -> None:
    sales = made(api, owner, "Sales")
    key = services.create_subteam_key(svc.db, agency_id=owner.agency_id, subteam_id=sales)

    response = api.patch(
        f"/v1/subteams/{sales}", json={"archived": True}, headers=bearer(key.secret)
    )

    assert_problem(response, 403, "forbidden")
    stored = subteam_service.read_subteam(svc.db, agency_id=owner.agency_id, subteam_id=sales)
    assert (stored.name, stored.archived_at) == ("Sales", None)
