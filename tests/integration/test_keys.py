"""API keys: list, name, revoke, roll, last use; through the API, the services and the CLI.

Time is a FrozenClock the tests move, so nothing sleeps. On SQLite and PostgreSQL, except
the `refill keys` subprocesses (SQLite only: each costs seconds).
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from refill import services
from refill.bootstrap import Refill, build
from refill.clock import FrozenClock
from refill.config import Settings
from refill.db.database import Database
from refill.errors import Conflict, Unauthenticated, ValidationFailed
from refill.web import create_app
from tests.support.cli import run as cli_run

START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
LISTED_FIELDS = {
    "id",
    "role",
    "subteam_id",
    "name",
    "created_at",
    "last_used_at",
    "revoked_at",
    "expires_at",
}
PROBLEM = "application/problem+json"
WEEK = 7 * 24 * 3600
REFILL = str(Path(sys.executable).parent / "refill")


# --- fixtures and helpers -----------------------------------------------------------------


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@dataclass(frozen=True)
class Key:
    id: str
    secret: str
    agency_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


def new_agency(svc: Refill, name: str = "Acme Voice") -> Key:
    agency, issued = services.create_agency(svc.db, name=name)
    return Key(issued.id, issued.secret, agency.id)


def new_subteam(api: TestClient, owner: Key, name: str = "Sales") -> str:
    response = api.post("/v1/subteams", json={"name": name}, headers=owner.headers)
    assert response.status_code == 201, response.text
    subteam_id: str = response.json()["id"]
    return subteam_id


def new_key(api: TestClient, owner: Key, body: dict[str, Any] | None = None) -> Key:
    response = api.post("/v1/keys", json=body or {}, headers=owner.headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == {"id", "api_key"}
    return Key(created["id"], created["api_key"], owner.agency_id)


def new_subteam_key(api: TestClient, owner: Key, subteam_id: str, name: str | None = None) -> Key:
    body = None if name is None else {"name": name}
    response = api.post(f"/v1/subteams/{subteam_id}/keys", json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    created = response.json()
    return Key(created["id"], created["api_key"], owner.agency_id)


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert (body["status"], body["code"]) == (status, code), body
    assert body["type"] == f"urn:refill:problem:{code}"
    assert body["detail"]
    return body


def listed(api: TestClient, caller: Key) -> dict[str, dict[str, Any]]:
    """GET /v1/keys as ``caller``, by key id (one page is plenty here)."""
    response = api.get("/v1/keys", headers=caller.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None
    return {k["id"]: k for k in body["data"]}


def stored(svc: Refill, key: Key) -> services.ApiKey:
    """The key as stored, read without authenticating (which would note a use)."""
    page = services.list_keys(svc.db, agency_id=key.agency_id, limit=services.MAX_PAGE)
    return next(k for k in page.data if k.id == key.id)


def audit_entries(api: TestClient, caller: Key, action: str) -> list[dict[str, Any]]:
    response = api.get("/v1/audit-log", headers=caller.headers)
    assert response.status_code == 200, response.text
    return [e for e in response.json()["data"] if e["action"] == action]


def works(api: TestClient, key: Key) -> bool:
    """Whether the key authenticates: 401 when it does not, anything else when it does."""
    response = api.post(
        "/v1/calls/authorize", json={"subteam_id": "sub_nonexistent"}, headers=key.headers
    )
    if response.status_code == 401:
        assert_problem(response, 401, "unauthenticated")
        return False
    return True


def at(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


# --- 1. listing ---------------------------------------------------------------------------


def test_get_keys_lists_each_key_of_the_agency_with_its_fields_and_never_a_secret(
    svc: Refill, api: TestClient
) -> None:
    owner = new_agency(svc)
    subteam_id = new_subteam(api, owner)
    named_owner = new_key(api, owner, {"name": "production dialer"})
    team_key = new_subteam_key(api, owner, subteam_id, name="sales floor")
    revoked = new_key(api, owner)
    assert api.post(f"/v1/keys/{revoked.id}/revoke", headers=owner.headers).status_code == 200
    other = new_agency(svc, "Other Agency")
    other_extra = new_key(api, other, {"name": "theirs"})

    response = api.get("/v1/keys", headers=owner.headers)
    assert response.status_code == 200, response.text
    keys = {k["id"]: k for k in response.json()["data"]}

    assert set(keys) == {owner.id, named_owner.id, team_key.id, revoked.id}
    for key in keys.values():
        assert set(key) == LISTED_FIELDS, key
        assert "digest" not in key
        assert "api_key" not in key
        assert not any(isinstance(v, str) and v.startswith("rfl_") for v in key.values()), key
    for secret in (owner.secret, named_owner.secret, team_key.secret, revoked.secret):
        assert secret not in response.text
    assert "rfl_" not in response.text
    assert keys[owner.id] | {"created_at": None, "last_used_at": None} == {
        "id": owner.id,
        "role": "owner",
        "subteam_id": None,
        "name": None,
        "created_at": None,
        "last_used_at": None,
        "revoked_at": None,
        "expires_at": None,
    }
    assert at(keys[owner.id]["created_at"]) == START
    assert at(keys[owner.id]["last_used_at"]) == START  # this very request used it
    assert (keys[named_owner.id]["role"], keys[named_owner.id]["name"]) == (
        "owner",
        "production dialer",
    )
    assert keys[named_owner.id]["last_used_at"] is None
    assert keys[team_key.id]["role"] == "subteam"
    assert keys[team_key.id]["subteam_id"] == subteam_id
    assert keys[team_key.id]["name"] == "sales floor"
    assert at(keys[revoked.id]["revoked_at"]) == START
    assert all(keys[k]["revoked_at"] is None for k in (owner.id, named_owner.id, team_key.id))

    theirs = listed(api, other)
    assert set(theirs) == {other.id, other_extra.id}
    assert not set(theirs) & set(keys)


def test_get_keys_pages_through_every_key_newest_first_by_id(svc: Refill, api: TestClient) -> None:
    owner = new_agency(svc)
    created = {owner.id} | {new_key(api, owner).id for _ in range(4)}
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        response = api.get("/v1/keys", params=params, headers=owner.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["data"]) <= 2
        seen += [k["id"] for k in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(created)
    assert len(seen) == len(created)
    assert seen == sorted(seen, reverse=True)


OWNER_ONLY_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/keys", None),
    ("POST", "/v1/keys", {}),
    ("POST", "/v1/keys", {"subteam_id": "{subteam}"}),
    ("POST", "/v1/keys/{owner_key}/revoke", None),
    ("POST", "/v1/keys/{own_key}/revoke", None),
    ("POST", "/v1/keys/{owner_key}/roll", {"expires_in_seconds": 60}),
    ("POST", "/v1/keys/{own_key}/roll", {"expires_in_seconds": 60}),
    ("POST", "/v1/subteams/{subteam}/keys", {"name": "mine"}),
]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    OWNER_ONLY_ROUTES,
    ids=[
        "list",
        "create-owner-key",
        "create-subteam-key",
        "revoke-owner-key",
        "revoke-itself",
        "roll-owner-key",
        "roll-itself",
        "create-key-for-own-subteam",
    ],
)
def test_key_routes_refuse_a_subteam_key_with_403_and_change_nothing(
    svc: Refill, api: TestClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    owner = new_agency(svc)
    subteam_id = new_subteam(api, owner)
    team_key = new_subteam_key(api, owner, subteam_id)
    before = listed(api, owner)

    def fill(value: str) -> str:
        return value.format(subteam=subteam_id, owner_key=owner.id, own_key=team_key.id)

    filled = (
        None if body is None else {k: fill(v) if isinstance(v, str) else v for k, v in body.items()}
    )
    response = api.request(method, fill(path), json=filled, headers=team_key.headers)
    assert_problem(response, 403, "forbidden")
    after = listed(api, owner)
    assert set(after) == set(before)
    assert all(after[k]["revoked_at"] is None and after[k]["expires_at"] is None for k in after)
    assert works(api, team_key)
    assert works(api, owner)


@pytest.mark.parametrize(
    ("action", "body"),
    [("revoke", None), ("roll", {"expires_in_seconds": 0})],
    ids=["revoke", "roll"],
)
def test_an_owner_cannot_revoke_or_roll_another_agencys_key(
    svc: Refill, api: TestClient, action: str, body: dict[str, Any] | None
) -> None:
    mine = new_agency(svc, "Mine")
    theirs = new_agency(svc, "Theirs")
    their_spare = new_key(api, theirs)
    response = api.post(f"/v1/keys/{their_spare.id}/{action}", json=body, headers=mine.headers)
    assert_problem(response, 404, "key_not_found")
    assert works(api, their_spare)
    assert set(listed(api, theirs)) == {theirs.id, their_spare.id}
    assert audit_entries(api, theirs, f"key.{action}d") == []


@pytest.mark.parametrize("action", ["revoke", "roll"], ids=["revoke", "roll"])
def test_revoking_or_rolling_an_unknown_key_is_404(
    svc: Refill, api: TestClient, action: str
) -> None:
    owner = new_agency(svc)
    response = api.post(f"/v1/keys/key_0000000000000000000000000/{action}", headers=owner.headers)
    assert_problem(response, 404, "key_not_found")


# --- 2. revoking --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["owner", "subteam"], ids=["owner-key", "subteam-key"])
def test_a_revoked_key_is_refused_with_401_on_its_very_next_request(
    svc: Refill, api: TestClient, kind: str
) -> None:
    owner = new_agency(svc)
    subteam_id = new_subteam(api, owner)
    victim = new_key(api, owner) if kind == "owner" else new_subteam_key(api, owner, subteam_id)

    def request() -> Any:
        if kind == "owner":
            return api.get("/v1/keys", headers=victim.headers)
        body = {"subteam_id": subteam_id}
        return api.post("/v1/calls/authorize", json=body, headers=victim.headers)

    assert request().status_code == 200

    response = api.post(f"/v1/keys/{victim.id}/revoke", headers=owner.headers)
    assert response.status_code == 200, response.text
    assert at(response.json()["revoked_at"]) == START
    assert set(response.json()) == LISTED_FIELDS

    assert_problem(request(), 401, "unauthenticated")
    with pytest.raises(Unauthenticated):
        services.authenticate(svc.db, victim.secret)
    assert works(api, owner)


def test_an_owner_key_can_revoke_itself_and_its_next_request_is_401(
    svc: Refill, api: TestClient
) -> None:
    owner = new_agency(svc)
    spare = new_key(api, owner)
    response = api.post(f"/v1/keys/{owner.id}/revoke", headers=owner.headers)
    assert response.status_code == 200, response.text
    assert_problem(api.get("/v1/keys", headers=owner.headers), 401, "unauthenticated")
    assert works(api, spare)


def test_revoking_twice_is_idempotent_and_audited_once_with_the_callers_key(
    svc: Refill, api: TestClient, clock: FrozenClock
) -> None:
    owner = new_agency(svc)
    victim = new_key(api, owner, {"name": "old dialer"})
    first = api.post(f"/v1/keys/{victim.id}/revoke", headers=owner.headers)
    assert first.status_code == 200, first.text
    clock.advance(timedelta(minutes=5))
    second = api.post(f"/v1/keys/{victim.id}/revoke", headers=owner.headers)
    assert second.status_code == 200, second.text
    assert second.json() == first.json()  # revoked_at stays the first revocation's
    assert at(second.json()["revoked_at"]) == START

    entries = audit_entries(api, owner, "key.revoked")
    assert len(entries) == 1, entries
    entry = entries[0]
    assert entry["actor"] == f"key:{owner.id}"
    assert entry["target_id"] == victim.id
    assert entry["before"] == {"role": "owner", "subteam_id": None, "name": "old dialer"}
    assert "rfl_" not in json.dumps(entries)


# --- 3. the last owner key ----------------------------------------------------------------


def test_the_last_owner_key_cannot_be_revoked_and_keeps_working(
    svc: Refill, api: TestClient
) -> None:
    owner = new_agency(svc)
    subteam_id = new_subteam(api, owner)
    new_subteam_key(api, owner, subteam_id)  # a subteam key is not an owner key

    body = assert_problem(
        api.post(f"/v1/keys/{owner.id}/revoke", headers=owner.headers), 409, "last_owner_key"
    )
    assert "last owner key" in body["detail"]
    assert listed(api, owner)[owner.id]["revoked_at"] is None
    assert works(api, owner)
    assert audit_entries(api, owner, "key.revoked") == []


def test_with_two_owner_keys_one_revokes_the_other_and_then_is_the_last(
    svc: Refill, api: TestClient
) -> None:
    first = new_agency(svc)
    second = new_key(api, first)
    response = api.post(f"/v1/keys/{first.id}/revoke", headers=second.headers)
    assert response.status_code == 200, response.text
    assert not works(api, first)
    assert_problem(
        api.post(f"/v1/keys/{second.id}/revoke", headers=second.headers), 409, "last_owner_key"
    )
    assert works(api, second)


def test_a_rolled_owner_key_that_is_about_to_expire_does_not_count_as_another_owner_key(
    svc: Refill, api: TestClient, clock: FrozenClock
) -> None:
    owner = new_agency(svc)
    rolled = api.post(
        f"/v1/keys/{owner.id}/roll", json={"expires_in_seconds": 3600}, headers=owner.headers
    )
    assert rolled.status_code == 201, rolled.text
    successor = Key(rolled.json()["id"], rolled.json()["api_key"], owner.agency_id)
    # The old key still works for an hour, but revoking the successor would leave the
    # agency without an owner key an hour from now.
    assert_problem(
        api.post(f"/v1/keys/{successor.id}/revoke", headers=owner.headers), 409, "last_owner_key"
    )
    clock.advance(timedelta(hours=1))
    assert not works(api, owner)
    assert works(api, successor)


ROUNDS = 5


def simultaneously(*calls: Callable[[], Any]) -> list[Any]:
    """Run each call on its own thread, released together by a barrier; their results (or
    the exception each raised), in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        barrier.wait(timeout=30)
        try:
            results[index] = call()
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return results


def test_two_owner_keys_revoking_each_other_at_once_leave_exactly_one_working_owner_key(
    svc: Refill, api: TestClient
) -> None:
    """Real threads on the service: the agency's lock serializes the two revocations."""
    for round_ in range(ROUNDS):
        a = new_agency(svc, f"Race {round_}")
        b = new_key(api, a)

        def revoke(caller: Key, target: Key) -> Callable[[], services.ApiKey]:
            return lambda: services.revoke_key(
                svc.db, agency_id=caller.agency_id, key_id=target.id, actor=f"key:{caller.id}"
            )

        by_a, by_b = simultaneously(revoke(a, b), revoke(b, a))
        outcomes = [
            r.code if isinstance(r, Conflict) else ("revoked" if r.revoked_at else repr(r))
            for r in (by_a, by_b)
        ]
        assert sorted(outcomes) == ["last_owner_key", "revoked"], (round_, by_a, by_b)
        winner, loser = (a, b) if outcomes[0] == "revoked" else (b, a)
        assert services.authenticate(svc.db, winner.secret).is_owner
        with pytest.raises(Unauthenticated):
            services.authenticate(svc.db, loser.secret)
        keys = listed(api, winner)
        assert [k for k, v in keys.items() if v["revoked_at"] is None] == [winner.id]
        assert len(audit_entries(api, winner, "key.revoked")) == 1


def test_two_owner_keys_revoking_each_other_over_http_at_once_never_revoke_both(
    svc: Refill, api: TestClient
) -> None:
    """The same race through the API: the losing request is refused, with 409 when it got
    past authentication first, or 401 when its own key was already revoked."""
    for round_ in range(ROUNDS):
        a = new_agency(svc, f"HTTP race {round_}")
        b = new_key(api, a)

        def revoke(caller: Key, target: Key) -> Callable[[], Any]:
            return lambda: api.post(f"/v1/keys/{target.id}/revoke", headers=caller.headers)

        by_a, by_b = simultaneously(revoke(a, b), revoke(b, a))
        statuses = sorted([by_a.status_code, by_b.status_code])
        assert statuses in ([200, 401], [200, 409]), (round_, by_a.text, by_b.text)
        winner, loser, refused = (a, b, by_b) if by_a.status_code == 200 else (b, a, by_a)
        if refused.status_code == 409:
            assert_problem(refused, 409, "last_owner_key")
        else:
            assert_problem(refused, 401, "unauthenticated")
        assert works(api, winner)
        assert not works(api, loser)


# --- 4. rolling ---------------------------------------------------------------------------


def roll(api: TestClient, caller: Key, target: Key, body: Any = None) -> Any:
    return api.post(f"/v1/keys/{target.id}/roll", json=body, headers=caller.headers)


@pytest.mark.parametrize(
    ("kind", "name"),
    [("owner", None), ("owner", "billing script"), ("subteam", None), ("subteam", "dialer")],
    ids=["owner", "named-owner", "subteam", "named-subteam"],
)
def test_rolling_gives_a_new_working_key_and_the_old_one_works_until_expires_at(
    svc: Refill, api: TestClient, clock: FrozenClock, kind: str, name: str | None
) -> None:
    owner = new_agency(svc)
    subteam_id = new_subteam(api, owner)
    if kind == "owner":
        old = new_key(api, owner, {"name": name})
    else:
        old = new_subteam_key(api, owner, subteam_id, name=name)
    clock.advance(timedelta(minutes=10))
    rolled_at = clock.now()

    response = roll(api, owner, old, {"expires_in_seconds": 3600})
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "api_key", "previous"}
    new = Key(body["id"], body["api_key"], owner.agency_id)
    assert new.id != old.id
    assert new.id.startswith("key_")
    assert new.secret.startswith("rfl_")
    assert new.secret not in (old.secret, owner.secret)
    previous = body["previous"]
    assert previous["id"] == old.id
    assert at(previous["expires_at"]) == rolled_at + timedelta(hours=1)
    assert previous["revoked_at"] is None
    assert "rfl_" not in json.dumps(previous)

    principal = services.authenticate(svc.db, new.secret)  # works at once
    assert (principal.key_id, principal.role, principal.subteam_id) == (
        new.id,
        kind,
        None if kind == "owner" else subteam_id,
    )
    keys = listed(api, owner)
    assert (keys[new.id]["role"], keys[new.id]["subteam_id"], keys[new.id]["name"]) == (
        kind,
        None if kind == "owner" else subteam_id,
        name,
    )
    assert keys[new.id]["expires_at"] is None
    assert keys[new.id]["revoked_at"] is None
    assert at(keys[new.id]["created_at"]) == rolled_at

    clock.advance(timedelta(hours=1) - timedelta(microseconds=1))
    assert works(api, old)
    clock.advance(timedelta(microseconds=1))  # exactly expires_at
    assert not works(api, old)
    with pytest.raises(Unauthenticated):
        services.authenticate(svc.db, old.secret)
    assert works(api, new)


def test_a_rolled_subteam_key_still_acts_for_its_own_subteam_only(
    svc: Refill, api: TestClient
) -> None:
    owner = new_agency(svc)
    mine, other = new_subteam(api, owner, "Mine"), new_subteam(api, owner, "Other")
    old = new_subteam_key(api, owner, mine)
    response = roll(api, owner, old, {"expires_in_seconds": 60})
    assert response.status_code == 201, response.text
    new = Key(response.json()["id"], response.json()["api_key"], owner.agency_id)
    ok = api.post("/v1/calls/authorize", json={"subteam_id": mine}, headers=new.headers)
    assert ok.status_code == 200, ok.text
    refused = api.post("/v1/calls/authorize", json={"subteam_id": other}, headers=new.headers)
    assert_problem(refused, 403, "forbidden")
    assert_problem(api.get("/v1/keys", headers=new.headers), 403, "forbidden")


@pytest.mark.parametrize(
    "body",
    [{"expires_in_seconds": 0}, None, {}],
    ids=["zero", "no-body", "empty-body"],
)
def test_rolling_with_no_overlap_stops_the_old_key_at_once(
    svc: Refill, api: TestClient, body: dict[str, Any] | None
) -> None:
    owner = new_agency(svc)
    caller = new_key(api, owner)
    response = roll(api, caller, owner, body)
    assert response.status_code == 201, response.text
    assert at(response.json()["previous"]["expires_at"]) == START
    assert not works(api, owner)
    new = Key(response.json()["id"], response.json()["api_key"], owner.agency_id)
    assert works(api, new)
    assert works(api, caller)


def test_a_key_can_roll_itself_and_switch_over_without_downtime(
    svc: Refill, api: TestClient, clock: FrozenClock
) -> None:
    owner = new_agency(svc)
    response = roll(api, owner, owner, {"expires_in_seconds": WEEK})
    assert response.status_code == 201, response.text
    new = Key(response.json()["id"], response.json()["api_key"], owner.agency_id)
    assert at(response.json()["previous"]["expires_at"]) == START + timedelta(days=7)
    clock.advance(timedelta(days=6, hours=23))
    assert works(api, owner)
    assert works(api, new)
    clock.advance(timedelta(hours=1))
    assert not works(api, owner)
    assert works(api, new)


def test_rolling_a_rolled_key_again_never_extends_its_expiry(
    svc: Refill, api: TestClient, clock: FrozenClock
) -> None:
    owner = new_agency(svc)
    caller = new_key(api, owner)
    first = roll(api, caller, owner, {"expires_in_seconds": 3600})
    assert first.status_code == 201, first.text
    clock.advance(timedelta(minutes=10))
    second = roll(api, caller, owner, {"expires_in_seconds": WEEK})
    assert second.status_code == 201, second.text
    assert at(second.json()["previous"]["expires_at"]) == START + timedelta(hours=1)
    third = roll(api, caller, owner, {"expires_in_seconds": 60})
    assert third.status_code == 201, third.text
    assert at(third.json()["previous"]["expires_at"]) == clock.now() + timedelta(seconds=60)
    clock.advance(timedelta(seconds=60))
    assert not works(api, owner)
    for response in (first, second, third):
        assert works(api, Key(response.json()["id"], response.json()["api_key"], owner.agency_id))


@pytest.mark.parametrize(
    "body",
    [
        {"expires_in_seconds": WEEK + 1},
        {"expires_in_seconds": 10**12},
        {"expires_in_seconds": -1},
        {"expires_in_seconds": -WEEK},
        {"expires_in_seconds": "60"},
        {"expires_in_seconds": 60.5},
        {"expires_in_seconds": True},
        {"expires_in_seconds": None},
        {"expires_in_seconds": 60, "extra": 1},
    ],
    ids=[
        "week-plus-one-second",
        "huge",
        "negative",
        "minus-a-week",
        "string",
        "float",
        "boolean",
        "null",
        "unknown-field",
    ],
)
def test_rolling_with_a_bad_expiry_is_422_and_changes_nothing(
    svc: Refill, api: TestClient, body: dict[str, Any]
) -> None:
    owner = new_agency(svc)
    caller = new_key(api, owner)
    before = listed(api, caller)
    response = roll(api, caller, owner, body)
    assert_problem(response, 422, "validation_error")
    assert "rfl_" not in response.text
    after = listed(api, caller)
    assert set(after) == set(before)
    assert after[owner.id]["expires_at"] is None
    assert works(api, owner)
    assert audit_entries(api, caller, "key.rolled") == []


def test_rolling_with_exactly_seven_days_is_accepted(svc: Refill, api: TestClient) -> None:
    owner = new_agency(svc)
    response = roll(api, owner, owner, {"expires_in_seconds": WEEK})
    assert response.status_code == 201, response.text


def test_the_service_refuses_an_overlap_outside_zero_to_seven_days(svc: Refill) -> None:
    owner = new_agency(svc)
    for overlap in (timedelta(days=7, microseconds=1), timedelta(microseconds=-1)):
        with pytest.raises(ValidationFailed):
            services.roll_key(
                svc.db, agency_id=owner.agency_id, key_id=owner.id, expires_in=overlap, actor="t"
            )
    assert stored(svc, owner).expires_at is None


@pytest.mark.parametrize("state", ["revoked", "expired"], ids=["revoked", "expired"])
def test_rolling_a_key_that_no_longer_works_is_409_key_inactive(
    svc: Refill, api: TestClient, clock: FrozenClock, state: str
) -> None:
    owner = new_agency(svc)
    victim = new_key(api, owner)
    if state == "revoked":
        assert api.post(f"/v1/keys/{victim.id}/revoke", headers=owner.headers).status_code == 200
    else:
        assert roll(api, owner, victim, {"expires_in_seconds": 60}).status_code == 201
        clock.advance(timedelta(seconds=60))
    keys_before = set(listed(api, owner))
    rolls_before = len(audit_entries(api, owner, "key.rolled"))

    response = roll(api, owner, victim, {"expires_in_seconds": 60})
    assert_problem(response, 409, "key_inactive")
    assert "rfl_" not in response.text
    assert set(listed(api, owner)) == keys_before
    assert len(audit_entries(api, owner, "key.rolled")) == rolls_before


def test_a_roll_is_in_the_audit_log_with_the_new_key_and_the_old_keys_expiry(
    svc: Refill, api: TestClient
) -> None:
    owner = new_agency(svc)
    caller = new_key(api, owner)
    old = new_key(api, owner, {"name": "cron"})
    response = roll(api, caller, old, {"expires_in_seconds": 600})
    assert response.status_code == 201, response.text
    entries = audit_entries(api, caller, "key.rolled")
    assert len(entries) == 1, entries
    entry = entries[0]
    assert entry["actor"] == f"key:{caller.id}"
    assert entry["target_id"] == old.id
    assert entry["before"] == {"role": "owner", "subteam_id": None, "name": "cron"}
    assert entry["after"]["new_key_id"] == response.json()["id"]
    assert at(entry["after"]["old_key_expires_at"]) == START + timedelta(minutes=10)
    assert "rfl_" not in json.dumps(entry)


# --- 5. last use --------------------------------------------------------------------------


def test_last_used_at_is_set_by_the_first_request_then_written_at_most_once_a_minute(
    svc: Refill, api: TestClient, clock: FrozenClock
) -> None:
    assert timedelta(minutes=1) == services.KEY_USE_RESOLUTION
    owner = new_agency(svc)
    user = new_key(api, owner)
    assert stored(svc, user).last_used_at is None  # created, never used

    clock.advance(timedelta(minutes=3))
    first = clock.now()
    assert api.get("/v1/wallet", headers=user.headers).status_code == 200
    assert stored(svc, user).last_used_at == first

    clock.advance(timedelta(seconds=20))
    assert api.get("/v1/wallet", headers=user.headers).status_code == 200
    clock.advance(timedelta(seconds=39))
    assert api.get("/v1/wallet", headers=user.headers).status_code == 200
    assert stored(svc, user).last_used_at == first  # two requests within the minute

    clock.advance(timedelta(seconds=2))  # 61 s after the first
    assert api.get("/v1/wallet", headers=user.headers).status_code == 200
    assert stored(svc, user).last_used_at == first + timedelta(seconds=61)

    listed_by_other = listed(api, owner)[user.id]
    assert at(listed_by_other["last_used_at"]) == first + timedelta(seconds=61)


def test_a_refused_key_does_not_count_as_used(
    svc: Refill, api: TestClient, clock: FrozenClock
) -> None:
    owner = new_agency(svc)
    victim = new_key(api, owner)
    assert api.post(f"/v1/keys/{victim.id}/revoke", headers=owner.headers).status_code == 200
    clock.advance(timedelta(minutes=5))
    assert not works(api, victim)
    assert stored(svc, victim).last_used_at is None


def test_last_used_at_is_noted_per_key(svc: Refill, api: TestClient, clock: FrozenClock) -> None:
    owner = new_agency(svc)
    a, b = new_key(api, owner), new_key(api, owner)
    assert works(api, a)
    clock.advance(timedelta(seconds=30))
    assert works(api, b)
    assert stored(svc, a).last_used_at == START
    assert stored(svc, b).last_used_at == START + timedelta(seconds=30)


# --- 6. names and subteam keys ------------------------------------------------------------


@pytest.mark.parametrize("route", ["keys", "subteam-keys"], ids=["owner-key", "subteam-key"])
@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("production dialer", "production dialer"),
        ("  padded  ", "padded"),
        ("x" * 100, "x" * 100),
        ("Zürich 🚀", "Zürich 🚀"),
        ("   ", None),
        (None, None),
    ],
    ids=["plain", "padded", "100-chars", "unicode", "blank", "none"],
)
def test_a_key_gets_an_optional_name(
    svc: Refill, api: TestClient, route: str, given: str | None, kept: str | None
) -> None:
    owner = new_agency(svc)
    subteam_id = new_subteam(api, owner)
    path = "/v1/keys" if route == "keys" else f"/v1/subteams/{subteam_id}/keys"
    response = api.post(path, json={"name": given}, headers=owner.headers)
    assert response.status_code == 201, response.text
    key = listed(api, owner)[response.json()["id"]]
    assert key["name"] == kept
    assert key["role"] == ("owner" if route == "keys" else "subteam")
    created = [e for e in audit_entries(api, owner, "key.created") if e["target_id"] == key["id"]]
    assert len(created) == 1
    assert created[0]["actor"] == f"key:{owner.id}"
    assert created[0]["after"]["name"] == kept


@pytest.mark.parametrize("route", ["keys", "subteam-keys"], ids=["owner-key", "subteam-key"])
@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("x" * 101, "validation_error"),
        ("é" * 101, "validation_error"),
        ("x" * 10_000, "validation_error"),
        (42, "validation_error"),
        ("bad\x00name", "invalid_characters"),
    ],
    ids=["101-chars", "101-accented", "10000-chars", "number", "nul"],
)
def test_a_bad_key_name_is_422_and_creates_nothing(
    svc: Refill, api: TestClient, route: str, name: Any, code: str
) -> None:
    owner = new_agency(svc)
    subteam_id = new_subteam(api, owner)
    path = "/v1/keys" if route == "keys" else f"/v1/subteams/{subteam_id}/keys"
    response = api.post(path, json={"name": name}, headers=owner.headers)
    assert_problem(response, 422, code)
    assert set(listed(api, owner)) == {owner.id}
    assert audit_entries(api, owner, "key.created") == []


def test_the_service_refuses_a_key_name_over_100_characters(svc: Refill) -> None:
    owner = new_agency(svc)
    with pytest.raises(ValidationFailed):
        services.create_key(svc.db, agency_id=owner.agency_id, name="x" * 101, actor="t")
    page = services.list_keys(svc.db, agency_id=owner.agency_id)
    assert [k.id for k in page.data] == [owner.id]


def test_post_keys_with_a_subteam_id_makes_a_key_that_records_usage_for_that_subteam_only(
    svc: Refill, api: TestClient
) -> None:
    owner = new_agency(svc)
    services.grant_credits(
        svc.db, agency_id=owner.agency_id, amount=10_000_000, reference="welcome"
    )
    mine, other = new_subteam(api, owner, "Mine"), new_subteam(api, owner, "Other")
    key = new_key(api, owner, {"subteam_id": mine, "name": "floor 2"})

    listed_key = listed(api, owner)[key.id]
    assert (listed_key["role"], listed_key["subteam_id"], listed_key["name"]) == (
        "subteam",
        mine,
        "floor 2",
    )
    principal = services.authenticate(svc.db, key.secret)
    assert (principal.role, principal.subteam_id, principal.is_owner) == ("subteam", mine, False)

    ok = api.post(
        "/v1/usage",
        json={"subteam_id": mine, "amount": "1.50", "reference": "call-1"},
        headers=key.headers,
    )
    assert ok.status_code == 201, ok.text
    refused = api.post(
        "/v1/usage",
        json={"subteam_id": other, "amount": "1.50", "reference": "call-2"},
        headers=key.headers,
    )
    assert_problem(refused, 403, "forbidden")
    wallet = api.get("/v1/wallet", headers=owner.headers).json()
    assert wallet["balance"] == "8.50", wallet
    assert_problem(api.get("/v1/wallet", headers=key.headers), 403, "forbidden")


@pytest.mark.parametrize("whose", ["unknown", "another-agency"], ids=["unknown", "other-agency"])
def test_post_keys_for_a_subteam_not_of_the_agency_is_404_and_creates_nothing(
    svc: Refill, api: TestClient, whose: str
) -> None:
    owner = new_agency(svc)
    if whose == "unknown":
        subteam_id = "sub_0000000000000000000000000"
    else:
        subteam_id = new_subteam(api, new_agency(svc, "Theirs"))
    for path, body in (
        ("/v1/keys", {"subteam_id": subteam_id}),
        (f"/v1/subteams/{subteam_id}/keys", {}),
    ):
        response = api.post(path, json=body, headers=owner.headers)
        assert_problem(response, 404, "subteam_not_found")
    assert set(listed(api, owner)) == {owner.id}


# --- 7. the CLI (SQLite only: each subprocess costs seconds) --------------------------------


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "refill.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def file_db(sqlite_url: str) -> Iterator[Database]:
    db = Database(sqlite_url)
    yield db
    db.dispose()


def test_cli_keys_create_list_and_revoke(sqlite_url: str, file_db: Database) -> None:
    agency, original = services.create_agency(file_db, name="CLI Agency")
    _, other_original = services.create_agency(file_db, name="Someone Else")

    created = cli_run(
        ["keys", "create", "--agency", agency.id, "--name", "ops laptop", "--json"], sqlite_url
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.count("\n") == 1, created.stdout
    assert created.stdout.endswith("\n"), created.stdout
    issued = json.loads(created.stdout)
    assert set(issued) == {"id", "api_key"}
    assert issued["api_key"].startswith("rfl_")
    principal = services.authenticate(file_db, issued["api_key"])
    assert (principal.agency_id, principal.role, principal.key_id) == (
        agency.id,
        "owner",
        issued["id"],
    )
    app_service = build(Settings(database_url=sqlite_url), in_process_worker=False)
    try:
        with TestClient(create_app(app_service)) as api:
            headers = {"Authorization": f"Bearer {issued['api_key']}"}
            assert api.get("/v1/keys", headers=headers).status_code == 200
    finally:
        app_service.close()

    listing = cli_run(["keys", "list", "--agency", agency.id, "--json"], sqlite_url)
    assert listing.returncode == 0, listing.stderr
    assert "rfl_" not in listing.stdout
    assert "digest" not in listing.stdout
    lines = [json.loads(line) for line in listing.stdout.splitlines()]
    assert {k["id"] for k in lines} == {original.id, issued["id"]}
    assert other_original.id not in listing.stdout
    for key in lines:
        assert set(key) == LISTED_FIELDS, key
        assert key["role"] == "owner"
        assert key["revoked_at"] is None
    assert next(k for k in lines if k["id"] == issued["id"])["name"] == "ops laptop"

    revoked = cli_run(["keys", "revoke", issued["id"]], sqlite_url)
    assert revoked.returncode == 0, revoked.stderr
    assert issued["id"] in revoked.stdout
    with pytest.raises(Unauthenticated):
        services.authenticate(file_db, issued["api_key"])
    assert services.authenticate(file_db, original.secret).is_owner
    entries = services.list_audit_log(file_db, agency_id=agency.id).data
    assert [(e.action, e.actor, e.target_id) for e in entries if e.action == "key.revoked"] == [
        ("key.revoked", "cli", issued["id"])
    ]


def test_cli_refuses_to_revoke_the_last_owner_key_in_one_line_without_a_traceback(
    sqlite_url: str, file_db: Database
) -> None:
    agency, only = services.create_agency(file_db, name="Lonely Agency")
    result = cli_run(["keys", "revoke", only.id], sqlite_url)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    message = result.stderr.strip()
    assert "\n" not in message, result.stderr
    assert "last owner key" in message, result.stderr
    assert services.authenticate(file_db, only.secret).is_owner
    assert services.list_keys(file_db, agency_id=agency.id).data[0].revoked_at is None


def test_cli_keys_list_prints_every_key_of_an_agency_even_past_one_page(
    sqlite_url: str, file_db: Database
) -> None:
    agency, original = services.create_agency(file_db, name="Many Keys")
    extra = [
        services.create_key(file_db, agency_id=agency.id, name=f"dialer {i}", actor="t").id
        for i in range(services.MAX_PAGE)
    ]
    result = cli_run(["keys", "list", "--agency", agency.id, "--json"], sqlite_url)
    assert result.returncode == 0, result.stderr
    listed_ids = [json.loads(line)["id"] for line in result.stdout.splitlines()]
    assert len(listed_ids) == len(set(listed_ids))
    missing = {original.id, *extra} - set(listed_ids)
    assert not missing, f"{len(listed_ids)} keys listed, {len(missing)} missing"


def test_cli_keys_list_for_an_unknown_agency_fails_instead_of_printing_no_keys(
    sqlite_url: str,
) -> None:
    result = cli_run(
        ["keys", "list", "--agency", "agc_0000000000000000000000000", "--json"], sqlite_url
    )
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    assert "not found" in result.stderr
    assert "Traceback" not in result.stderr
