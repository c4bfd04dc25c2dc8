"""Bad input gets a clear problem+json error with a stable code, and changes nothing.

Also: authentication, subteam-key scope, cross-agency isolation, idempotency and
pagination. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from refill import services
from refill.bootstrap import Refill
from tests.support.doubles import RecordingGateway


@dataclass
class Tenant:
    headers: dict[str, str]
    subteam_id: str
    card_id: str


def make_tenant(client: TestClient, refill: Refill, name: str) -> Tenant:
    _, key = services.create_agency(refill.db, name=name)
    headers = {"Authorization": f"Bearer {key.secret}"}
    subteam = client.post("/v1/subteams", json={"name": "Sales"}, headers=headers).json()
    card = client.post(
        "/v1/payment-methods", json={"token": "pm_card_visa"}, headers=headers
    ).json()
    response = client.post(
        "/v1/wallet/credits",
        json={"amount": "40.00", "payment_method_id": card["id"]},
        headers=headers,
    )
    assert response.status_code == 201
    return Tenant(headers, subteam["id"], card["id"])


@pytest.fixture
def tenant(client: TestClient, refill: Refill) -> Tenant:
    return make_tenant(client, refill, "Tenant A")


@pytest.fixture
def other(client: TestClient, refill: Refill) -> Tenant:
    return make_tenant(client, refill, "Tenant B")


def state(client: TestClient, t: Tenant) -> dict[str, Any]:
    """Everything a bad request must leave untouched."""
    return {
        path: client.get(path, headers=t.headers).json()
        for path in (
            "/v1/wallet",
            "/v1/transactions",
            "/v1/reloads",
            "/v1/payment-methods",
            "/v1/subteams",
            "/v1/audit-log",
        )
    }


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:refill:problem:{code}"
    assert body["title"]
    assert body["detail"]
    return body


def send(
    client: TestClient, t: Tenant, method: str, path: str, body: Any, raw: bool = False
) -> Any:
    headers = {**t.headers, "Content-Type": "application/json"}
    content = body if raw else None
    json_body = None if raw else body
    return client.request(method, path, headers=headers, content=content, json=json_body)


HUGE_NUMBER = "9" * 5000

BAD_USAGE = [
    ('{"subteam_id": "S", "amount": "1.00", "reference": ', True, 400, "malformed_json"),
    (
        '{"subteam_id": "S", "amount": ' + HUGE_NUMBER + ', "reference": "r"}',
        True,
        400,
        "malformed_json",
    ),
    ({"subteam_id": "S", "amount": 1.5, "reference": "r"}, False, 422, "validation_error"),
    ({"subteam_id": "S", "amount": 10, "reference": "r"}, False, 422, "validation_error"),
    ({"subteam_id": "S", "amount": True, "reference": "r"}, False, 422, "validation_error"),
    ({"subteam_id": "S", "amount": None, "reference": "r"}, False, 422, "validation_error"),
    ({"subteam_id": "S", "amount": ["1"], "reference": "r"}, False, 422, "validation_error"),
    ({"subteam_id": "S", "amount": "-1.00", "reference": "r"}, False, 422, "invalid_amount"),
    ({"subteam_id": "S", "amount": "0", "reference": "r"}, False, 422, "invalid_amount"),
    ({"subteam_id": "S", "amount": "abc", "reference": "r"}, False, 422, "invalid_amount"),
    ({"subteam_id": "S", "amount": "1e3", "reference": "r"}, False, 422, "invalid_amount"),
    ({"subteam_id": "S", "amount": "NaN", "reference": "r"}, False, 422, "invalid_amount"),
    ({"subteam_id": "S", "amount": "Infinity", "reference": "r"}, False, 422, "invalid_amount"),
    ({"subteam_id": "S", "amount": " 1.00", "reference": "r"}, False, 422, "invalid_amount"),
    ({"subteam_id": "S", "amount": "1,00", "reference": "r"}, False, 422, "invalid_amount"),
    ({"subteam_id": "S", "amount": "0.0000001", "reference": "r"}, False, 422, "invalid_amount"),
    (
        {"subteam_id": "S", "amount": "99999999999999999999", "reference": "r"},
        False,
        422,
        "invalid_amount",
    ),
    (
        {"subteam_id": "S", "amount": "1.00", "reference": "r", "extra": 1},
        False,
        422,
        "validation_error",
    ),
    ({"subteam_id": "S", "amount": "1.00"}, False, 422, "validation_error"),
    ({"subteam_id": "S", "amount": "1.00", "reference": ""}, False, 422, "validation_error"),
    ({"subteam_id": "S", "amount": "1.00", "reference": "   "}, False, 422, "validation_error"),
    ({"subteam_id": "S", "amount": "1.00", "reference": "r" * 256}, False, 422, "validation_error"),
    (
        {"subteam_id": "sub_nope", "amount": "1.00", "reference": "r"},
        False,
        404,
        "subteam_not_found",
    ),
    ({"subteam_id": "S", "amount": "41.00", "reference": "r"}, False, 402, "insufficient_credits"),
    ([], False, 422, "validation_error"),
    ("just a string", False, 422, "validation_error"),
]
BAD_USAGE_IDS = [
    "truncated-json",
    "5000-digit-number",
    "float",
    "integer",
    "bool",
    "null",
    "list",
    "negative",
    "zero",
    "non-numeric",
    "exponent",
    "nan",
    "infinity",
    "leading-space",
    "comma",
    "seven-decimals",
    "beyond-bigint",
    "unknown-field",
    "missing-reference",
    "empty-reference",
    "blank-reference",
    "reference-too-long",
    "unknown-subteam",
    "more-than-the-balance",
    "array-body",
    "string-body",
]


@pytest.mark.parametrize(("body", "raw", "status", "code"), BAD_USAGE, ids=BAD_USAGE_IDS)
def test_bad_usage_is_refused_with_a_problem_and_changes_nothing(
    client: TestClient, tenant: Tenant, body: Any, raw: bool, status: int, code: str
) -> None:
    if isinstance(body, dict) and body.get("subteam_id") == "S":
        body = {**body, "subteam_id": tenant.subteam_id}
    if raw:
        body = body.replace('"S"', f'"{tenant.subteam_id}"')
    before = state(client, tenant)
    problem = assert_problem(send(client, tenant, "POST", "/v1/usage", body, raw), status, code)
    if code == "insufficient_credits":
        assert problem["available"] == "40.00"
    assert state(client, tenant) == before


BAD_SETTINGS = [
    ({"threshold": "-1.00"}, "invalid_amount"),
    ({"threshold": 20}, "validation_error"),
    ({"reload_amount": "4.99"}, "invalid_auto_reload_settings"),
    ({"reload_amount": "10000.01"}, "invalid_auto_reload_settings"),
    ({"reload_amount": "10.001"}, "invalid_auto_reload_settings"),
    (
        {"enabled": True, "threshold": "20.00", "reload_amount": "50.00"},
        "invalid_auto_reload_settings",
    ),
    (
        {
            "enabled": True,
            "threshold": "20.00",
            "reload_amount": "50.00",
            "payment_method_id": "pay_nope",
        },
        "payment_method_not_found",
    ),
    ({"enabled": "yes"}, "validation_error"),
    ({"enabled": True, "colour": "blue"}, "validation_error"),
    ({"mode": "double"}, "validation_error"),
    ({"daily_limit": 0}, "validation_error"),
    ({"daily_limit": "5"}, "validation_error"),
    ({"daily_limit": None}, "invalid_auto_reload_settings"),
    ({"mode": None}, "invalid_auto_reload_settings"),
    ({"monthly_cap": "0.00"}, "invalid_auto_reload_settings"),
]


@pytest.mark.parametrize(
    ("body", "code"),
    BAD_SETTINGS,
    ids=[
        "negative-threshold",
        "numeric-threshold",
        "below-minimum",
        "above-maximum",
        "fraction-of-a-cent",
        "enable-without-card",
        "unknown-card",
        "string-bool",
        "unknown-field",
        "unknown-mode",
        "zero-daily-limit",
        "string-daily-limit",
        "null-daily-limit",
        "null-mode",
        "zero-monthly-cap",
    ],
)
def test_bad_auto_reload_settings_are_refused_and_change_nothing(
    client: TestClient, tenant: Tenant, body: dict[str, Any], code: str
) -> None:
    before = state(client, tenant)
    status = 404 if code.endswith("not_found") else 422
    assert_problem(send(client, tenant, "PUT", "/v1/wallet/auto-reload", body), status, code)
    assert state(client, tenant) == before


BAD_CREDITS = [
    ({"amount": "4.99", "payment_method_id": "CARD"}, 422, "invalid_auto_reload_settings"),
    ({"amount": "10.001", "payment_method_id": "CARD"}, 422, "invalid_auto_reload_settings"),
    ({"amount": "-10.00", "payment_method_id": "CARD"}, 422, "invalid_amount"),
    ({"amount": 10, "payment_method_id": "CARD"}, 422, "validation_error"),
    ({"amount": "10.00", "payment_method_id": "pay_nope"}, 404, "payment_method_not_found"),
    ({"amount": "10.00"}, 422, "validation_error"),
]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    BAD_CREDITS,
    ids=[
        "below-minimum",
        "fraction-of-a-cent",
        "negative",
        "number",
        "unknown-card",
        "missing-card",
    ],
)
def test_bad_top_ups_are_refused_charge_nothing_and_change_nothing(
    client: TestClient,
    tenant: Tenant,
    gateway: RecordingGateway,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    if body.get("payment_method_id") == "CARD":
        body = {**body, "payment_method_id": tenant.card_id}
    before, charges = state(client, tenant), len(gateway.calls)
    assert_problem(send(client, tenant, "POST", "/v1/wallet/credits", body), status, code)
    assert state(client, tenant) == before
    assert len(gateway.calls) == charges


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/v1/subteams", {"name": ""}, "validation_error"),
        ("/v1/subteams", {"name": "x" * 201}, "validation_error"),
        ("/v1/subteams", {"name": 5}, "validation_error"),
        ("/v1/payment-methods", {"token": "pm_card_unknown"}, "invalid_payment_method"),
        ("/v1/payment-methods", {"token": ""}, "validation_error"),
        ("/v1/payment-methods", {"token": "4242424242424242", "cvc": "123"}, "validation_error"),
    ],
    ids=[
        "empty-name",
        "long-name",
        "numeric-name",
        "unknown-token",
        "empty-token",
        "card-number-with-extra-field",
    ],
)
def test_bad_subteams_and_cards_are_refused_and_change_nothing(
    client: TestClient, tenant: Tenant, path: str, body: dict[str, Any], code: str
) -> None:
    before = state(client, tenant)
    assert_problem(send(client, tenant, "POST", path, body), 422, code)
    assert state(client, tenant) == before


# --- authentication and scope -------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer rfl_unknown"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer sk_test_123"},
    ],
    ids=["missing", "basic-scheme", "unknown-key", "empty-key", "foreign-key-format"],
)
def test_requests_without_a_valid_key_are_401(
    client: TestClient, tenant: Tenant, headers: dict[str, str]
) -> None:
    for method, path in [("GET", "/v1/wallet"), ("POST", "/v1/usage")]:
        response = client.request(method, path, headers=headers, json={})
        assert_problem(response, 401, "unauthenticated")


def test_a_subteam_key_acts_only_for_its_own_subteam(client: TestClient, tenant: Tenant) -> None:
    second = client.post("/v1/subteams", json={"name": "Support"}, headers=tenant.headers).json()
    key = client.post(f"/v1/subteams/{tenant.subteam_id}/keys", headers=tenant.headers).json()
    assert key["api_key"].startswith("rfl_")
    assert len(key["api_key"]) >= 43
    sub = {"Authorization": f"Bearer {key['api_key']}"}
    ok = client.post(
        "/v1/usage",
        headers=sub,
        json={"subteam_id": tenant.subteam_id, "amount": "1.00", "reference": "r1"},
    )
    assert ok.status_code == 201
    assert (
        client.post(
            "/v1/calls/authorize", headers=sub, json={"subteam_id": tenant.subteam_id}
        ).json()["allowed"]
        is True
    )
    before = state(client, tenant)
    assert_problem(
        client.post(
            "/v1/usage",
            headers=sub,
            json={"subteam_id": second["id"], "amount": "1.00", "reference": "r2"},
        ),
        403,
        "forbidden",
    )
    assert_problem(
        client.post("/v1/calls/authorize", headers=sub, json={"subteam_id": second["id"]}),
        403,
        "forbidden",
    )
    for method, path, body in [
        ("GET", "/v1/wallet", None),
        ("PUT", "/v1/wallet/auto-reload", {"enabled": False}),
        ("POST", "/v1/wallet/credits", {"amount": "10.00", "payment_method_id": tenant.card_id}),
        ("GET", "/v1/reloads", None),
        ("GET", "/v1/transactions", None),
        ("POST", "/v1/subteams", {"name": "x"}),
        ("POST", f"/v1/subteams/{tenant.subteam_id}/keys", None),
    ]:
        assert_problem(client.request(method, path, headers=sub, json=body), 403, "forbidden")
    assert state(client, tenant) == before


def test_another_agencys_objects_are_404_and_stay_untouched(
    client: TestClient, tenant: Tenant, other: Tenant
) -> None:
    reload_id = client.get("/v1/reloads", headers=other.headers).json()["data"][0]["id"]
    theirs = state(client, other)
    ours = state(client, tenant)
    attempts = [
        (
            "POST",
            "/v1/usage",
            {"subteam_id": other.subteam_id, "amount": "1.00", "reference": "x"},
            "subteam_not_found",
        ),
        ("POST", "/v1/calls/authorize", {"subteam_id": other.subteam_id}, "subteam_not_found"),
        ("POST", f"/v1/subteams/{other.subteam_id}/keys", None, "subteam_not_found"),
        (
            "PUT",
            "/v1/wallet/auto-reload",
            {
                "enabled": True,
                "threshold": "1.00",
                "reload_amount": "5.00",
                "payment_method_id": other.card_id,
            },
            "payment_method_not_found",
        ),
        (
            "POST",
            "/v1/wallet/credits",
            {"amount": "10.00", "payment_method_id": other.card_id},
            "payment_method_not_found",
        ),
        ("DELETE", f"/v1/payment-methods/{other.card_id}", None, "payment_method_not_found"),
        ("GET", f"/v1/reloads/{reload_id}", None, "reload_not_found"),
        ("POST", f"/v1/reloads/{reload_id}/cancel", None, "reload_not_found"),
    ]
    for method, path, body, code in attempts:
        response = client.request(method, path, headers=tenant.headers, json=body)
        assert_problem(response, 404, code)
    assert state(client, other) == theirs
    assert state(client, tenant) == ours


# --- idempotency --------------------------------------------------------------------------


def test_repeating_a_usage_reference_returns_the_first_result(
    client: TestClient, tenant: Tenant
) -> None:
    body = {"subteam_id": tenant.subteam_id, "amount": "2.50", "reference": "call-1"}
    first = client.post("/v1/usage", json=body, headers=tenant.headers)
    again = client.post("/v1/usage", json=body, headers=tenant.headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    before = state(client, tenant)
    for change in (
        {"amount": "2.51"},
        {
            "subteam_id": client.post(
                "/v1/subteams", json={"name": "Other"}, headers=tenant.headers
            ).json()["id"]
        },
    ):
        before = state(client, tenant)
        response = client.post("/v1/usage", json={**body, **change}, headers=tenant.headers)
        assert_problem(response, 409, "reference_conflict")
        assert state(client, tenant) == before


def test_a_top_up_repeated_with_the_same_idempotency_key_charges_once(
    client: TestClient, tenant: Tenant, gateway: RecordingGateway
) -> None:
    headers = {**tenant.headers, "Idempotency-Key": "topup-42"}
    body = {"amount": "12.00", "payment_method_id": tenant.card_id}
    charges = len(gateway.calls)
    first = client.post("/v1/wallet/credits", json=body, headers=headers)
    again = client.post("/v1/wallet/credits", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert len(gateway.calls) == charges + 1
    assert client.get("/v1/wallet", headers=tenant.headers).json()["balance"] == "52.00"
    before = state(client, tenant)
    conflict = client.post("/v1/wallet/credits", json={**body, "amount": "13.00"}, headers=headers)
    assert_problem(conflict, 409, "idempotency_key_conflict")
    assert state(client, tenant) == before
    assert len(gateway.calls) == charges + 1


# --- pagination and routing ---------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=201", "limit=abc", "cursor=%%%", "cursor=bm90LWEtbnVtYmVy"],
    ids=["zero", "too-many", "not-a-number", "garbage-cursor", "non-numeric-cursor"],
)
def test_bad_page_parameters_are_422(client: TestClient, tenant: Tenant, query: str) -> None:
    response = client.get(f"/v1/transactions?{query}", headers=tenant.headers)
    body = assert_problem(response, 422, response.json().get("code", "?"))
    assert body["code"] in {"validation_error", "invalid_cursor"}


def test_pages_walk_the_ledger_newest_first_without_gaps_or_repeats(
    client: TestClient, tenant: Tenant
) -> None:
    for i in range(5):
        client.post(
            "/v1/usage",
            headers=tenant.headers,
            json={"subteam_id": tenant.subteam_id, "amount": "1.00", "reference": f"p{i}"},
        )
    seen: list[str] = []
    cursor = None
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(f"/v1/transactions?{query}", headers=tenant.headers).json()
        seen += [t["id"] for t in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    everything = client.get("/v1/transactions?limit=200", headers=tenant.headers).json()
    assert seen == [t["id"] for t in everything["data"]]
    assert len(seen) == 6
    assert len(set(seen)) == 6
    ids = [int(i.removeprefix("txn_")) for i in seen]
    assert ids == sorted(ids, reverse=True)


def test_unknown_routes_and_methods_are_problems(client: TestClient, tenant: Tenant) -> None:
    assert_problem(client.get("/v1/nope", headers=tenant.headers), 404, "not_found")
    assert_problem(client.delete("/v1/wallet", headers=tenant.headers), 405, "method_not_allowed")
