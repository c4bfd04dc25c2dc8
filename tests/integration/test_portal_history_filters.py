"""The billing page's history filter: dates the owner picks (the last day included), the
kind of charge, kept by the pager and by the CSV links; a date that is no date is a page
that says so, on both engines."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from refill import services
from refill.bootstrap import Refill
from tests.support.portal import Agency, make_agency, post, sign_in


@pytest.fixture
def owner(refill: Refill, client: TestClient) -> Agency:
    agency = make_agency(refill)
    assert sign_in(client, agency.owner_email).status_code == 303
    return agency


def rows(html: str) -> list[str]:
    return re.findall(r'data-label="What">([^<]+)<', html)


def test_the_history_shows_only_the_kind_asked_for_and_the_links_keep_the_filter(
    owner: Agency, refill: Refill, client: TestClient
) -> None:
    post(client, "/portal/team/billing/payment-methods", {"token": "pm_card_visa"})
    [card] = services.list_payment_methods(refill.db, agency_id=owner.id).data
    for amount in ("10.00", "11.00"):
        post(
            client,
            "/portal/team/billing/credits",
            {"amount": amount, "payment_method_id": card.id, "confirmed": "yes"},
        )
    today = refill.db.clock.now().date().isoformat()

    manual = client.get(f"/portal/team/billing?trigger=manual&from={today}&through={today}")
    auto = client.get("/portal/team/billing?trigger=auto")

    assert manual.status_code == 200
    assert rows(manual.text) == ["Added by hand", "Added by hand"]
    assert rows(auto.text) == []
    assert "Nothing matches this filter." in auto.text
    live = re.search(r'data-live-url="([^"]+)"', manual.text)
    assert live
    assert "trigger=manual" in live.group(1)
    csv = re.search(r'href="(/portal/team/billing/history\.csv\?[^"]+)"', manual.text)
    assert csv
    query = parse_qs(urlsplit(csv.group(1).replace("&amp;", "&")).query)
    # "Through" a day includes it: the export's exclusive ``to`` is the day after.
    assert query["from"] == [today]
    assert query["to"] != [today]
    assert query["trigger"] == ["manual"]
    exported = client.get(csv.group(1).replace("&amp;", "&"))
    assert exported.status_code == 200
    assert exported.text.count("\n") == 3  # the header and the two top-ups


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("from=2026-02-30", id="no-such-day"),
        pytest.param("through=yesterday", id="not-a-date"),
        pytest.param("trigger=sometimes", id="unknown-kind"),
    ],
)
def test_a_filter_that_cannot_be_read_is_a_page_that_says_so(
    owner: Agency, client: TestClient, query: str
) -> None:
    response = client.get(f"/portal/team/billing?{query}")

    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    assert "Back to billing" in response.text
