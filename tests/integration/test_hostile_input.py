"""Hostile input never gives a 5xx and changes nothing, on SQLite and PostgreSQL.

NUL characters in every string parameter of every /v1 route and in the portal's sign-in
form, malformed cursors, time zones that are not zones, other spellings of an amount,
bodies over the size limit (with and without Content-Length) and deeply nested JSON.
Refusals are problem+json with a stable code (an HTML page under /portal).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, get_args

import httpx
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel

from refill import services
from refill.api.app import ROUTERS
from refill.bootstrap import Refill, build
from refill.config import Settings
from refill.web import create_app
from tests.support.stripe_events import signed
from tests.support.stripe_peer import LocalStripe, gateway_on

PROBLEM = "application/problem+json"
NUL = "a\u0000b"


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM, response.headers
    body = response.json()
    assert body["status"] == status, body
    assert body["code"], body
    if code is not None:
        assert body["code"] == code, body


def refusal_problem(response: httpx.Response) -> str | None:
    """What is wrong with the answer to hostile input, or None: never a 5xx, and every
    refusal is problem+json with a code."""
    status = response.status_code
    if status >= 500:
        return f"{status} {response.text[:300]}"
    if status >= 400:
        if response.headers.get("content-type") != PROBLEM:
            return f"{status} as {response.headers.get('content-type')}: {response.text[:200]}"
        if not response.json().get("code"):
            return f"{status} without a code: {response.text[:200]}"
    return None


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@dataclass
class World:
    """An agency with one of everything, so that every route has real ids to be given."""

    client: TestClient
    refill: Refill
    headers: dict[str, str]
    samples: dict[str, str]

    def state(self) -> dict[str, Any]:
        return {
            path: self.client.get(path, headers=self.headers).json()
            for path in ("/v1/wallet", "/v1/agency", "/v1/transactions", "/v1/audit-log")
        }


@pytest.fixture
def world(client: TestClient, refill: Refill) -> World:
    _, key = services.create_agency(refill.db, name="Hostile Agency")
    headers = auth(key.secret)

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = client.post(path, json=body, headers=headers)
        assert response.status_code in (200, 201), response.text
        return dict(response.json())

    subteams = [post("/v1/subteams", {"name": f"Team {n}"})["id"] for n in range(3)]
    cards, reloads = [], []
    for token in ("pm_card_visa", "pm_card_mastercard"):
        cards.append(post("/v1/payment-methods", {"token": token})["id"])
        credit = {"amount": "20.00", "payment_method_id": cards[-1]}
        reloads.append(post("/v1/wallet/credits", credit)["id"])
    sub_key = post(f"/v1/subteams/{subteams[0]}/keys", {"name": "k"})["id"]
    post("/v1/usage", {"subteam_id": subteams[0], "amount": "1.00", "reference": "seed"})
    samples = {
        "subteam_id": subteams[0],
        "payment_method_id": cards[0],
        "reload_id": reloads[0],
        "key_id": sub_key,  # a subteam key: revoking it never locks the owner out
        "token": "pm_card_visa",
        "reference": "hostile-ref",
        "timezone": "UTC",
        "mode": "fixed",
    }
    return World(client, refill, headers, samples)


# --- 1. NUL in every string parameter of every /v1 route ---------------------------------


def _stringy(schema: dict[str, Any]) -> bool:
    """Whether a body field takes a string (alone, nullable or from a set of strings)."""
    return '"type": "string"' in json.dumps(schema)


def _body_model(route: APIRoute) -> type[BaseModel] | None:
    if route.body_field is None:
        return None
    annotation = route.body_field.field_info.annotation
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _sample(name: str, samples: dict[str, str]) -> str:
    if name in samples:
        return samples[name]
    if name in ("amount", "threshold", "reload_amount", "target_balance", "monthly_cap"):
        return "10.00"
    return "hostile"


def _params(dependant: Dependant, kind: str) -> list[str]:
    """The names (aliases) of the route's path, query or header parameters, dependencies'
    included."""
    own = [p.alias for p in getattr(dependant, f"{kind}_params")]
    return own + [n for d in dependant.dependencies for n in _params(d, kind) if n not in own]


def nul_cases(route: APIRoute, world: World) -> Iterator[tuple[str, dict[str, Any]]]:
    """(what, request keyword arguments) for each place a NUL can go in ``route``; all else
    in the request is valid-looking (real ids, a body that would pass)."""
    path_names = _params(route.dependant, "path")
    model = _body_model(route)
    valid: dict[str, str] = {}
    if model is not None:
        fields = model.model_json_schema()["properties"].items()
        valid = {n: _sample(n, world.samples) for n, f in fields if _stringy(f)}

    def case(body: Any = valid, headers: dict[str, str] | None = None, nul_in: str = "") -> Any:
        values = {n: "a%00b" if n == nul_in else _sample(n, world.samples) for n in path_names}
        sent = {"url": route.path.format(**values), "headers": headers or world.headers}
        return sent if model is None and body is valid else {**sent, "json": body}

    for name in path_names:
        yield f"path:{name}", case(nul_in=name)
    for name in [*_params(route.dependant, "query"), "undeclared"]:
        yield f"query:{name}", {**case(), "params": {name: NUL}}
    for alias in _params(route.dependant, "header"):
        header = alias.replace("_", "-")
        value = f"{world.headers['Authorization']}\x00" if header == "authorization" else NUL
        others = {k: v for k, v in world.headers.items() if k.lower() != header}
        yield f"header:{header}", case(headers={**others, header: value})
    for name in valid:
        yield f"body:{name}", case(body={**valid, name: f"{valid[name]}\u0000"})
    if model is None and "POST" in (route.methods or ()):
        event = {"id": "evt_\u0000", "type": "x\u0000", "data": {"object": {"id": "\u0000"}}}
        yield "body:raw-json", case(body=event)


def test_a_nul_in_any_string_parameter_of_any_v1_route_is_refused_without_a_5xx(
    world: World,
) -> None:
    routes = [
        r
        for router in ROUTERS
        for r in router.routes
        if isinstance(r, APIRoute) and r.path.startswith("/v1")
    ]
    assert len(routes) >= 20, [r.path for r in routes]
    failures: list[str] = []
    for route in routes:
        for method in sorted(route.methods or ()):
            for what, kwargs in nul_cases(route, world):
                try:
                    wrong = refusal_problem(world.client.request(method, **kwargs))
                except Exception as exc:  # the test client re-raises what became a 500
                    wrong = f"500, raised {type(exc).__name__}: {str(exc).splitlines()[0]}"
                if wrong is not None:
                    failures.append(f"{method} {route.path} [{what}]: {wrong}")
    assert not failures, "\n".join(failures)


# --- 2. NUL in the portal's sign-in form --------------------------------------------------


@pytest.mark.parametrize("field", ["email", "password"], ids=["email", "password"])
def test_a_nul_in_the_portal_sign_in_form_is_a_422_page_with_the_portal_headers(
    client: TestClient, field: str
) -> None:
    page = client.get("/portal/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None, page.text
    form = {"email": "owner@example.com", "password": "correct horse", "csrf_token": token[1]}
    form[field] = NUL
    response = client.post("/portal/login", data=form, follow_redirects=False)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("text/html"), response.headers
    assert "Content-Security-Policy" in response.headers
    assert response.headers["X-Frame-Options"] == "DENY"
    assert not response.text.lstrip().startswith("{"), response.text


# --- 3. Cursors ---------------------------------------------------------------------------

LISTS = ["subteams", "payment-methods", "reloads", "transactions", "audit-log", "keys"]
BAD_CURSORS = {
    "wrI": "wrI",
    "30-digit-number": b64("123456789012345678901234567890"),
    "bangs": "!!!",
    "wrong-shape-id": "WRONG-SHAPE",  # replaced by an id of the other kind of list
    "negative": b64("-5"),
    "non-ascii": b64("été"),
    "200-chars": "A" * 200,
    "2**63": b64("9223372036854775808"),
    "zero": b64("0"),
    "decoded-nul": "AA",
    "padding-inside": "MT=Iz",
    "uppercase-id": b64("sub_" + "A" * 26),
}


@pytest.mark.parametrize("cursor", BAD_CURSORS.values(), ids=BAD_CURSORS.keys())
@pytest.mark.parametrize("name", LISTS)
def test_a_malformed_cursor_is_422_invalid_cursor_on_every_list(
    world: World, name: str, cursor: str
) -> None:
    if cursor == "WRONG-SHAPE":  # transactions have integer ids, the other lists text ids
        cursor = b64("sub_" + "0" * 26 if name == "transactions" else "12345")
    response = world.client.get(f"/v1/{name}", params={"cursor": cursor}, headers=world.headers)
    assert_problem(response, 422, "invalid_cursor")


@pytest.mark.parametrize("name", LISTS)
def test_an_empty_cursor_is_refused_as_problem_json(world: World, name: str) -> None:
    response = world.client.get(f"/v1/{name}?cursor=", headers=world.headers)
    assert 400 <= response.status_code < 500, response.text
    assert_problem(response, response.status_code)


@pytest.mark.parametrize("name", LISTS)
def test_a_real_next_cursor_walks_to_the_second_page(world: World, name: str) -> None:
    path, headers = f"/v1/{name}", world.headers
    whole = world.client.get(path, headers=headers).json()["data"]
    assert len(whole) >= 2, whole
    first = world.client.get(path, params={"limit": 1}, headers=headers).json()
    assert first["next_cursor"], first
    cursor = first["next_cursor"]
    second = world.client.get(path, params={"limit": 1, "cursor": cursor}, headers=headers)
    assert second.status_code == 200, second.text
    assert first["data"] + second.json()["data"] == whole[:2]


# --- 4. Time zones ------------------------------------------------------------------------

BAD_ZONES = ["America", "Etc", "America/", "", " UTC", "../etc/passwd", "Europe/Nowhere"]


@pytest.mark.parametrize("zone", BAD_ZONES, ids=[repr(z) for z in BAD_ZONES])
def test_a_time_zone_that_is_not_an_iana_zone_is_refused_and_the_zone_kept(
    world: World, zone: str
) -> None:
    set_paris = world.client.patch(
        "/v1/agency", json={"timezone": "Europe/Paris"}, headers=world.headers
    )
    assert set_paris.status_code == 200, set_paris.text
    before = world.state()
    response = world.client.patch("/v1/agency", json={"timezone": zone}, headers=world.headers)
    assert_problem(response, 422, "invalid_timezone")
    assert world.state() == before
    assert before["/v1/agency"]["timezone"] == "Europe/Paris"


@pytest.mark.parametrize("zone", ["America/New_York", "UTC"])
def test_a_real_time_zone_is_accepted(world: World, zone: str) -> None:
    response = world.client.patch("/v1/agency", json={"timezone": zone}, headers=world.headers)
    assert response.status_code == 200, response.text
    assert world.client.get("/v1/agency", headers=world.headers).json()["timezone"] == zone


# --- 5. Other spellings of an amount ------------------------------------------------------

ODD_AMOUNTS = ["5\n", "5.00\n", "\n5", "-0", "00", "007.10", " 5", "5 ", "+5", "5.", ".5"]


@pytest.mark.parametrize("amount", ODD_AMOUNTS, ids=[repr(a) for a in ODD_AMOUNTS])
@pytest.mark.parametrize("where", ["usage", "auto-reload-threshold"])
def test_another_spelling_of_an_amount_is_refused_and_changes_nothing(
    world: World, where: str, amount: str
) -> None:
    saved = world.client.put(
        "/v1/wallet/auto-reload", json={"threshold": "10.00"}, headers=world.headers
    )
    assert saved.status_code == 200, saved.text
    before = world.state()
    if where == "usage":
        body = {"subteam_id": world.samples["subteam_id"], "amount": amount, "reference": "odd"}
        response = world.client.post("/v1/usage", json=body, headers=world.headers)
    else:
        response = world.client.put(
            "/v1/wallet/auto-reload", json={"threshold": amount}, headers=world.headers
        )
    assert_problem(response, 422, "invalid_amount")
    assert world.state() == before


# --- 6. and 7. Bodies too large, and too deep ---------------------------------------------


@pytest.fixture
def stripe_world(db_url: str, localstripe: LocalStripe) -> Iterator[World]:
    """A Stripe-mode service (webhooks on, signed with WEBHOOK_SECRET), default body limit."""
    stripe_gateway = gateway_on(localstripe)
    settings = Settings(database_url=db_url)
    service = build(
        settings, gateway=stripe_gateway, webhooks=stripe_gateway, in_process_worker=False
    )
    with TestClient(create_app(service)) as client:
        agency, key = services.create_agency(service.db, name="Stripe Agency")
        headers = auth(key.secret)
        subteam = client.post("/v1/subteams", json={"name": "Sales"}, headers=headers).json()
        services.grant_credits(service.db, agency_id=agency.id, amount=10**7, reference="g")
        yield World(client, service, headers, {"subteam_id": subteam["id"]})
    service.close()


def usage_body(subteam_id: str, size: int) -> bytes:
    """A valid usage body padded with blanks to exactly ``size`` bytes."""
    body = json.dumps({"subteam_id": subteam_id, "amount": "1.00", "reference": "big"})
    return body.encode().ljust(size, b" ")


def chunks(body: bytes) -> Iterator[bytes]:
    """A body without Content-Length: httpx sends a generator chunked."""
    for start in range(0, len(body), 64 * 1024):
        yield body[start : start + 64 * 1024]


OVERSIZED = {
    "usage-authenticated": ("/v1/usage", True),
    "usage-anonymous": ("/v1/usage", False),
    "stripe-webhook": ("/v1/webhooks/stripe", False),
    "portal-login": ("/portal/login", False),
}


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(("path", "authenticated"), OVERSIZED.values(), ids=OVERSIZED.keys())
def test_a_body_over_the_limit_is_413_before_anything_else_and_writes_nothing(
    stripe_world: World, path: str, authenticated: bool, chunked: bool
) -> None:
    world, limit = stripe_world, stripe_world.refill.settings.max_body_bytes
    assert limit == 1024 * 1024
    before = world.state()
    body = usage_body(world.samples["subteam_id"], limit + 1)
    headers = {"Content-Type": "application/json"}
    if path.startswith("/portal"):
        body = b"email=owner%40example.com&password=" + b"p" * limit
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if authenticated:
        headers.update(world.headers)
    content: bytes | Iterator[bytes] = chunks(body) if chunked else body
    response = world.client.post(path, content=content, headers=headers)
    assert ("content-length" in response.request.headers) is not chunked
    if path.startswith("/portal"):
        assert response.status_code == 413, response.text
        assert response.headers["content-type"].startswith("text/html"), response.headers
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "Content-Security-Policy" in response.headers
    else:
        assert_problem(response, 413, "request_too_large")
    assert world.state() == before


def test_a_body_of_exactly_the_limit_is_accepted(stripe_world: World) -> None:
    world = stripe_world
    body = usage_body(world.samples["subteam_id"], world.refill.settings.max_body_bytes)
    headers = {**world.headers, "Content-Type": "application/json"}
    response = world.client.post("/v1/usage", content=chunks(body), headers=headers)
    assert response.status_code == 201, response.text


DEPTH = 100_000
EVENT = '{"id": "evt_1", "type": "x", "data": {"object": %s}}'
DEEP = {
    "arrays": "[" * DEPTH + "]" * DEPTH,
    "objects": '{"a":' * DEPTH + "1" + "}" * DEPTH,
    "inside-an-event": EVENT % ("[" * DEPTH + "]" * DEPTH),
}


@pytest.mark.parametrize("payload", DEEP.values(), ids=DEEP.keys())
@pytest.mark.parametrize("path", ["/v1/usage", "/v1/webhooks/stripe"], ids=["usage", "webhook"])
def test_deeply_nested_json_is_a_4xx_problem_not_a_crash(
    stripe_world: World, path: str, payload: str
) -> None:
    body = payload.encode()
    assert len(body) < stripe_world.refill.settings.max_body_bytes
    headers = {**stripe_world.headers, "Content-Type": "application/json"}
    if path.endswith("stripe"):
        headers["Stripe-Signature"] = signed(body)
    before = stripe_world.state()
    response = stripe_world.client.post(path, content=body, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert_problem(response, response.status_code)
    assert stripe_world.state() == before
