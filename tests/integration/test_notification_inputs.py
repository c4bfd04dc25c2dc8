"""Bad input to the notification routes (webhook endpoints, events, the agency's billing
details, the low-balance alert, receipts) gets a problem+json with a stable code and
changes nothing; endpoints never show their secret again and never cross agencies; subteam
keys reach none of these routes. On SQLite and PostgreSQL."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from refill import services
from refill.bootstrap import Refill
from refill.web import create_app
from tests.support.notifying import notifying_refill

ADDRESSES = {
    "hooks.example.com": ["93.184.216.34"],
    "other.example.com": ["8.8.8.8"],
    "internal.example.com": ["10.0.0.7"],
    "rebind.example.com": ["127.0.0.1"],
    "mixed.example.com": ["93.184.216.34", "192.168.0.9"],
}
HOOK = "https://hooks.example.com/refill"
ALL = ["*"]


def fake_resolver(host: str, port: int) -> list[str]:
    """Like getaddrinfo without a network: IP literals stand for themselves."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    if host in ADDRESSES:
        return list(ADDRESSES[host])
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.fixture
def guarded(db_url: str) -> Iterator[Refill]:
    """Private addresses refused, names resolved by ``fake_resolver``, nothing delivered."""
    service = notifying_refill(
        db_url, smtp_url=None, resolver=fake_resolver, allow_private=False, listen=False
    )
    yield service
    service.close()


@pytest.fixture
def api(guarded: Refill) -> Iterator[TestClient]:
    with TestClient(create_app(guarded)) as test_client:
        yield test_client


def owner_headers(refill: Refill, name: str = "Acme") -> dict[str, str]:
    _, key = services.create_agency(refill.db, name=name)
    return {"Authorization": f"Bearer {key.secret}"}


@pytest.fixture
def acme(guarded: Refill) -> dict[str, str]:
    return owner_headers(guarded)


@pytest.fixture
def owner(refill: Refill) -> dict[str, str]:
    return owner_headers(refill)


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


def endpoint_audit(client: TestClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    entries = client.get("/v1/audit-log", headers=headers).json()["data"]
    return [e for e in entries if e["action"].startswith("webhook_endpoint.")]


def agency_state(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "agency": client.get("/v1/agency", headers=headers).json(),
        "audit": client.get("/v1/audit-log", headers=headers).json(),
    }


def owner_view(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    """What another key must not change, as the owner sees it."""
    return {
        **agency_state(client, headers),
        "endpoints": client.get("/v1/webhook-endpoints", headers=headers).json(),
        "alerts": client.get("/v1/wallet/alerts", headers=headers).json(),
        "events": client.get("/v1/events", headers=headers).json(),
    }


def create(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    response = client.post("/v1/webhook-endpoints", json=ep(), headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def ep(url: Any = HOOK, events: Any = ALL, **more: Any) -> dict[str, Any]:
    return {"url": url, "events": events, **more}


# --- webhook endpoints ----------------------------------------------------------------------

NOT_ALLOWED, INVALID, UNKNOWN_TYPE = "url_not_allowed", "validation_error", "unknown_event_type"
BAD_ZONE = "invalid_timezone"
REFUSED_ENDPOINTS = [
    ("ftp", ep("ftp://hooks.example.com/x"), NOT_ALLOWED, "http://"),
    ("no-host", ep("https:///x"), NOT_ALLOWED, "host"),
    ("private-address", ep("https://internal.example.com/x"), NOT_ALLOWED, "10.0.0.7"),
    ("loopback", ep("https://rebind.example.com/x"), NOT_ALLOWED, "127.0.0.1"),
    ("one-address-private", ep("https://mixed.example.com/x"), NOT_ALLOWED, "192.168.0.9"),
    ("metadata-ip-literal", ep("http://169.254.169.254/"), NOT_ALLOWED, "169.254.169.254"),
    ("mapped-ipv6-literal", ep("http://[::ffff:127.0.0.1]/"), NOT_ALLOWED, "not a public"),
    ("credentials", ep("https://u:p@hooks.example.com/x"), NOT_ALLOWED, "password"),
    ("unresolvable", ep("https://nowhere.example.com/x"), NOT_ALLOWED, "does not resolve"),
    ("unknown-event-type", ep(events=["reload.exploded"]), UNKNOWN_TYPE, "reload.exploded"),
    ("ping-is-not-subscribable", ep(events=["ping"]), UNKNOWN_TYPE, "ping"),
    ("star-with-others", ep(events=["*", "topup.succeeded"]), UNKNOWN_TYPE, "*"),
    ("empty-events", ep(events=[]), INVALID, "events"),
    ("missing-events", {"url": HOOK}, INVALID, "events"),
    ("unknown-field", ep(secret="whsec_mine"), INVALID, "secret"),
    ("url-not-a-string", ep(42), INVALID, "url"),
    ("events-not-a-list", ep(events="*"), INVALID, "events"),
    ("event-not-a-string", ep(events=[1]), INVALID, "events"),
    ("nul-in-url", ep("https://hooks.example.com/\x00"), "invalid_characters", "NUL"),
    ("url-over-2000", ep(HOOK + "/" + "a" * 2000), INVALID, "url"),
    ("description-over-500", ep(description="d" * 501), INVALID, "description"),
    ("more-than-50-events", ep(events=["topup.succeeded"] * 51), INVALID, "events"),
]


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [pytest.param(body, code, says, id=name) for name, body, code, says in REFUSED_ENDPOINTS],
)
def test_a_refused_endpoint_is_a_422_problem_and_changes_nothing(
    api: TestClient, acme: dict[str, str], body: dict[str, Any], code: str, says: str
) -> None:
    problem = assert_problem(api.post("/v1/webhook-endpoints", json=body, headers=acme), 422, code)
    assert says in problem["detail"]
    assert api.get("/v1/webhook-endpoints", headers=acme).json()["data"] == []
    assert endpoint_audit(api, acme) == []


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://hooks.example.com:99999/x", id="port-out-of-range"),
        pytest.param("https://hooks.example.com/\tx", id="tab-in-path"),
        pytest.param("https://hooks.example.com/x\r\n", id="crlf-at-end"),
    ],
)
def test_an_endpoint_url_that_cannot_be_sent_is_a_422(
    guarded: Refill, acme: dict[str, str], url: str
) -> None:
    with TestClient(create_app(guarded), raise_server_exceptions=False) as lenient:
        response = lenient.post("/v1/webhook-endpoints", json=ep(url), headers=acme)
    assert_problem(response, 422, "url_not_allowed")


def test_a_created_endpoint_shows_its_secret_once(api: TestClient, acme: dict[str, str]) -> None:
    events = ["topup.succeeded", "auto_reload.failed", "topup.succeeded"]
    created = api.post("/v1/webhook-endpoints", json=ep(events=events), headers=acme)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"]
    assert (body["url"], body["events"], body["enabled"]) == (
        HOOK,
        ["auto_reload.failed", "topup.succeeded"],
        True,
    )
    assert body["secret"].startswith("whsec_")
    assert len(body["secret"]) > len("whsec_") + 16
    shown = api.get(f"/v1/webhook-endpoints/{body['id']}", headers=acme)
    assert "secret" not in shown.json()
    listed = api.get("/v1/webhook-endpoints", headers=acme)
    assert [e["id"] for e in listed.json()["data"]] == [body["id"]]
    assert "secret" not in listed.json()["data"][0]
    assert body["secret"] not in shown.text + listed.text
    assert body["secret"] not in api.get("/v1/audit-log", headers=acme).text
    assert [e["action"] for e in endpoint_audit(api, acme)] == ["webhook_endpoint.created"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"url": "https://internal.example.com/x"}, id="private-url"),
        pytest.param({"url": "http://127.0.0.1:8080/"}, id="loopback-literal"),
        pytest.param({"url": "https://rebind.example.com/x", "enabled": False}, id="with-more"),
    ],
)
def test_a_patched_url_is_checked_again_and_a_refusal_keeps_the_old_one(
    api: TestClient, acme: dict[str, str], body: dict[str, Any]
) -> None:
    endpoint = create(api, acme)
    path = f"/v1/webhook-endpoints/{endpoint['id']}"
    assert_problem(api.patch(path, json=body, headers=acme), 422, "url_not_allowed")
    after = api.get(path, headers=acme).json()
    assert (after["url"], after["enabled"]) == (HOOK, True)
    assert [e["action"] for e in endpoint_audit(api, acme)] == ["webhook_endpoint.created"]
    other = "https://other.example.com/in"
    assert api.patch(path, json={"url": other}, headers=acme).json()["url"] == other
    assert api.get(path, headers=acme).json()["url"] == other


def test_rotating_gives_a_new_secret(api: TestClient, acme: dict[str, str]) -> None:
    endpoint = create(api, acme)
    rotated = api.post(f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=acme)
    assert rotated.status_code == 200, rotated.text
    secret = rotated.json()["secret"]
    assert secret.startswith("whsec_")
    assert secret != endpoint["secret"]
    again = api.post(f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=acme)
    assert again.json()["secret"] not in (secret, endpoint["secret"])


def test_a_deleted_endpoint_is_gone(api: TestClient, acme: dict[str, str]) -> None:
    endpoint = create(api, acme)
    path = f"/v1/webhook-endpoints/{endpoint['id']}"
    deleted = api.delete(path, headers=acme)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_problem(api.get(path, headers=acme), 404, "endpoint_not_found")
    assert api.get("/v1/webhook-endpoints", headers=acme).json()["data"] == []
    assert_problem(api.delete(path, headers=acme), 404, "endpoint_not_found")


ENDPOINT_ROUTES = [
    pytest.param("GET", "", None, id="get"),
    pytest.param("PATCH", "", {"enabled": False}, id="patch"),
    pytest.param("PATCH", "", {"url": "https://other.example.com/x"}, id="patch-url"),
    pytest.param("DELETE", "", None, id="delete"),
    pytest.param("POST", "/rotate-secret", None, id="rotate"),
    pytest.param("POST", "/test", None, id="test"),
    pytest.param("GET", "/deliveries", None, id="deliveries"),
    pytest.param("POST", "/deliveries/wd_missing/retry", None, id="retry"),
]


@pytest.mark.parametrize(("method", "suffix", "body"), ENDPOINT_ROUTES)
def test_unknown_and_other_agencies_endpoints_are_404_and_stay_untouched(
    api: TestClient, guarded: Refill, acme: dict[str, str], method: str, suffix: str, body: Any
) -> None:
    theirs = owner_headers(guarded, "Other")
    their_id = create(api, theirs)["id"]
    before = owner_view(api, theirs)
    for endpoint_id in ("we_missing", their_id):
        path = f"/v1/webhook-endpoints/{endpoint_id}{suffix}"
        response = api.request(method, path, json=body, headers=acme)
        assert_problem(response, 404, "endpoint_not_found")
        assert "secret" not in response.json()
    assert owner_view(api, theirs) == before
    deliveries = api.get(f"/v1/webhook-endpoints/{their_id}/deliveries", headers=theirs)
    assert deliveries.json()["data"] == []
    assert api.get("/v1/webhook-endpoints", headers=acme).json()["data"] == []
    assert api.get("/v1/events", headers=acme).json()["data"] == []


def test_an_unknown_delivery_of_a_known_endpoint_is_404(
    api: TestClient, acme: dict[str, str]
) -> None:
    endpoint = create(api, acme)
    path = f"/v1/webhook-endpoints/{endpoint['id']}/deliveries/wd_missing/retry"
    assert_problem(api.post(path, headers=acme), 404, "delivery_not_found")


# --- events ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        pytest.param("/v1/events?type=nope", 422, "unknown_event_type", id="unknown-type"),
        pytest.param("/v1/events?type=" + "x" * 65, 422, "validation_error", id="long-type"),
        pytest.param("/v1/events/evt_missing", 404, "event_not_found", id="unknown-event"),
        pytest.param("/v1/events?limit=0", 422, "validation_error", id="limit-zero"),
        pytest.param("/v1/events?limit=1000", 422, "validation_error", id="limit-1000"),
        pytest.param("/v1/events?limit=abc", 422, "validation_error", id="limit-not-a-number"),
        pytest.param("/v1/events?cursor=nope!", 422, "invalid_cursor", id="bad-cursor"),
    ],
)
def test_bad_event_queries_are_problems(
    client: TestClient, owner: dict[str, str], path: str, status: int, code: str
) -> None:
    assert_problem(client.get(path, headers=owner), status, code)


# --- the agency's billing details -----------------------------------------------------------


def mails(*addresses: str, **more: Any) -> dict[str, Any]:
    return {"billing_emails": list(addresses), **more}


REFUSED_AGENCY_CHANGES = [
    ("no-at", mails("not-an-email"), INVALID),
    ("no-dot", mails("a@nodot"), INVALID),
    ("no-local-part", mails("@example.com"), INVALID),
    ("space", mails("a b@example.com"), INVALID),
    ("empty", mails(""), INVALID),
    ("one-bad-of-two", mails("ok@example.com", "bad"), INVALID),
    ("bad-email-with-a-valid-timezone", mails("bad", timezone="Europe/Paris"), INVALID),
    ("bad-timezone-good-emails", mails("ok@example.com", timezone="Mars/X"), BAD_ZONE),
    ("eleven-addresses", mails(*[f"u{i}@example.com" for i in range(11)]), INVALID),
    ("emails-not-a-list", {"billing_emails": "a@example.com"}, INVALID),
    ("long-tax-id", {"tax_id": "T" * 65}, INVALID),
    ("long-address", {"billing_address": "A" * 501}, INVALID),
    ("unknown-field", {"name": "Renamed"}, INVALID),
    ("nul-in-tax-id", {"tax_id": "VAT\x001"}, "invalid_characters"),
]


@pytest.mark.parametrize(
    ("body", "code"),
    [pytest.param(body, code, id=name) for name, body, code in REFUSED_AGENCY_CHANGES],
)
def test_a_refused_agency_change_changes_nothing(
    client: TestClient, owner: dict[str, str], body: dict[str, Any], code: str
) -> None:
    before = agency_state(client, owner)
    assert_problem(client.patch("/v1/agency", json=body, headers=owner), 422, code)
    assert agency_state(client, owner) == before


def test_billing_emails_are_stored_lowercased_deduplicated_and_sorted(
    client: TestClient, owner: dict[str, str]
) -> None:
    emails = ["Zed@Example.com", " amy@example.com ", "zed@example.com", "AMY@EXAMPLE.COM"]
    response = client.patch("/v1/agency", json={"billing_emails": emails}, headers=owner)
    assert response.status_code == 200, response.text
    assert response.json()["billing_emails"] == ["amy@example.com", "zed@example.com"]
    shown = client.get("/v1/agency", headers=owner).json()
    assert shown["billing_emails"] == ["amy@example.com", "zed@example.com"]
    cleared = client.patch("/v1/agency", json={"billing_emails": []}, headers=owner)
    assert cleared.json()["billing_emails"] == []


def test_billing_address_and_tax_id_are_set_and_cleared_with_an_empty_string(
    client: TestClient, owner: dict[str, str]
) -> None:
    details = {"billing_address": "1 Main St\nSpringfield", "tax_id": "  VAT-123  "}
    response = client.patch("/v1/agency", json=details, headers=owner)
    assert response.status_code == 200, response.text
    shown = client.get("/v1/agency", headers=owner).json()
    assert (shown["billing_address"], shown["tax_id"]) == ("1 Main St\nSpringfield", "VAT-123")
    only_tax = client.patch("/v1/agency", json={"tax_id": ""}, headers=owner).json()
    assert (only_tax["billing_address"], only_tax["tax_id"]) == ("1 Main St\nSpringfield", None)
    cleared = client.patch("/v1/agency", json={"billing_address": "   "}, headers=owner).json()
    assert (cleared["billing_address"], cleared["tax_id"]) == (None, None)
    assert client.get("/v1/agency", headers=owner).json() == cleared


# --- the low-balance alert ------------------------------------------------------------------


FIVE = {"low_balance_alert": "5.00", "currency": "USD"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param({"low_balance_alert": "-1"}, "invalid_amount", id="negative"),
        pytest.param({"low_balance_alert": "abc"}, "invalid_amount", id="not-a-number"),
        pytest.param({"low_balance_alert": "1.0000001"}, "invalid_amount", id="seven-decimals"),
        pytest.param({"low_balance_alert": "1e3"}, "invalid_amount", id="exponent"),
        pytest.param({"low_balance_alert": "0"}, "validation_error", id="zero"),
        pytest.param({"low_balance_alert": "0.00"}, "validation_error", id="zero-cents"),
        pytest.param({"low_balance_alert": 20}, "validation_error", id="a-number"),
        pytest.param({"low_balance_alert": "9" * 41}, "validation_error", id="too-long"),
        pytest.param({"low_balance_alert": "99999999"}, "validation_error", id="too-high"),
        pytest.param({}, "validation_error", id="missing"),
        pytest.param({"low_balance_alert": "5", "x": 1}, "validation_error", id="unknown-field"),
    ],
)
def test_a_refused_alert_leaves_the_alert_as_it_was(
    client: TestClient, owner: dict[str, str], body: dict[str, Any], code: str
) -> None:
    first = client.put("/v1/wallet/alerts", json={"low_balance_alert": "5"}, headers=owner)
    assert first.json()["low_balance_alert"] == "5.00"
    before = agency_state(client, owner)
    assert_problem(client.put("/v1/wallet/alerts", json=body, headers=owner), 422, code)
    assert client.get("/v1/wallet/alerts", headers=owner).json() == FIVE
    assert agency_state(client, owner) == before


def test_an_alert_is_set_and_cleared_with_null(client: TestClient, owner: dict[str, str]) -> None:
    assert client.get("/v1/wallet/alerts", headers=owner).json()["low_balance_alert"] is None
    response = client.put("/v1/wallet/alerts", json={"low_balance_alert": "20.00"}, headers=owner)
    assert response.status_code == 200, response.text
    assert response.json() == {"low_balance_alert": "20.00", "currency": "USD"}
    assert client.get("/v1/wallet/alerts", headers=owner).json()["low_balance_alert"] == "20.00"
    assert client.get("/v1/agency", headers=owner).json()["low_balance_alert"] == "20.00"
    cleared = client.put("/v1/wallet/alerts", json={"low_balance_alert": None}, headers=owner)
    assert cleared.json()["low_balance_alert"] is None
    assert client.get("/v1/wallet/alerts", headers=owner).json()["low_balance_alert"] is None


# --- receipts -------------------------------------------------------------------------------


def test_an_unknown_reload_has_no_receipt(client: TestClient, owner: dict[str, str]) -> None:
    assert_problem(
        client.get("/v1/reloads/rl_missing/receipt", headers=owner), 404, "receipt_not_found"
    )


def test_another_agencys_receipt_is_404(
    client: TestClient, refill: Refill, owner: dict[str, str]
) -> None:
    theirs = owner_headers(refill, "Other")
    card = client.post("/v1/payment-methods", json={"token": "pm_card_visa"}, headers=theirs)
    topup = client.post(
        "/v1/wallet/credits",
        json={"amount": "40.00", "payment_method_id": card.json()["id"]},
        headers=theirs,
    )
    assert topup.status_code == 201, topup.text
    path = f"/v1/reloads/{topup.json()['id']}/receipt"
    assert client.get(path, headers=theirs).status_code == 200
    assert_problem(client.get(path, headers=owner), 404, "receipt_not_found")


# --- subteam keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("GET", "/v1/events", None, id="list-events"),
        pytest.param("GET", "/v1/events/evt_missing", None, id="get-event"),
        pytest.param("GET", "/v1/webhook-endpoints", None, id="list-endpoints"),
        pytest.param("POST", "/v1/webhook-endpoints", {"url": HOOK, "events": ALL}, id="create"),
        pytest.param("GET", "/v1/webhook-endpoints/EP", None, id="get-endpoint"),
        pytest.param("PATCH", "/v1/webhook-endpoints/EP", {"enabled": False}, id="patch"),
        pytest.param("DELETE", "/v1/webhook-endpoints/EP", None, id="delete"),
        pytest.param("POST", "/v1/webhook-endpoints/EP/rotate-secret", None, id="rotate"),
        pytest.param("POST", "/v1/webhook-endpoints/EP/test", None, id="test"),
        pytest.param("GET", "/v1/webhook-endpoints/EP/deliveries", None, id="deliveries"),
        pytest.param("POST", "/v1/webhook-endpoints/EP/deliveries/wd_x/retry", None, id="retry"),
        pytest.param("GET", "/v1/wallet/alerts", None, id="get-alerts"),
        pytest.param("PUT", "/v1/wallet/alerts", {"low_balance_alert": "1.00"}, id="put-alerts"),
        pytest.param("GET", "/v1/agency", None, id="get-agency"),
        pytest.param("PATCH", "/v1/agency", {"timezone": "Europe/Paris"}, id="patch-agency"),
        pytest.param("GET", "/v1/reloads/rl_missing/receipt", None, id="receipt"),
    ],
)
def test_a_subteam_key_is_403_on_every_owner_only_route(
    api: TestClient, acme: dict[str, str], method: str, path: str, body: Any
) -> None:
    endpoint = create(api, acme)
    subteam = api.post("/v1/subteams", json={"name": "Sales"}, headers=acme).json()
    key = api.post("/v1/keys", json={"subteam_id": subteam["id"]}, headers=acme)
    assert key.status_code == 201, key.text
    sub = {"Authorization": f"Bearer {key.json()['api_key']}"}
    before = owner_view(api, acme)
    response = api.request(method, path.replace("EP", endpoint["id"]), json=body, headers=sub)
    assert_problem(response, 403, "forbidden")
    assert "secret" not in response.json()
    assert owner_view(api, acme) == before
