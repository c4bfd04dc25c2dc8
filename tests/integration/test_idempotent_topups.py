"""A top-up repeated with one Idempotency-Key, at once and later, over HTTP on SQLite and
PostgreSQL: one charge, the second request told to wait while the first runs (409
``idempotency_key_in_use`` with ``Retry-After: 1``, as Stripe does), then the first
result replayed. Never a 500."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi.testclient import TestClient
from httpx import Response

from refill import services
from refill.bootstrap import Refill, build
from refill.config import Settings
from refill.gateway.base import ChargeRequest, ChargeResult
from refill.gateway.sandbox import SandboxGateway
from refill.web import create_app
from tests.support.doubles import RecordingGateway

ROUNDS = 6


@dataclass
class HeldGateway(RecordingGateway):
    """The sandbox, but a charge waits for ``release`` (the bank is slow to answer)."""

    release: threading.Event = field(default_factory=threading.Event)
    entered: threading.Event = field(default_factory=threading.Event)

    def charge(self, request: ChargeRequest) -> ChargeResult:
        self.entered.set()
        assert self.release.wait(30), "the test never released the charge"
        return super().charge(request)


@dataclass
class Platform:
    refill: Refill
    gateway: HeldGateway
    client: TestClient
    agency_id: str
    headers: dict[str, str]
    card: str

    def top_up(self, key: str) -> httpx.Response:
        response: Response = self.client.post(
            "/v1/wallet/credits",
            json={"amount": "20.00", "payment_method_id": self.card},
            headers={**self.headers, "Idempotency-Key": key},
        )
        return response

    def balance(self) -> int:
        return services.get_wallet(
            self.refill.db, self.refill.policy, agency_id=self.agency_id
        ).balance


@pytest.fixture
def platform(db_url: str) -> Iterator[Platform]:
    gateway = HeldGateway(SandboxGateway())
    service = build(Settings(database_url=db_url), gateway=gateway, in_process_worker=False)
    agency, key = services.create_agency(service.db, name="Retrying Platform")
    headers = {"Authorization": f"Bearer {key.secret}"}
    with TestClient(create_app(service)) as client:
        card = client.post("/v1/payment-methods", json={"token": "pm_card_visa"}, headers=headers)
        yield Platform(service, gateway, client, agency.id, headers, card.json()["id"])
    service.close()


def test_the_same_key_while_the_first_top_up_runs_is_told_to_retry_then_replays_it(
    platform: Platform,
) -> None:
    first: list[httpx.Response] = []
    running = threading.Thread(target=lambda: first.append(platform.top_up("k-1")))
    running.start()
    assert platform.gateway.entered.wait(10)

    meanwhile = platform.top_up("k-1")
    platform.gateway.release.set()
    running.join(30)
    later = platform.top_up("k-1")

    assert meanwhile.status_code == 409
    assert meanwhile.json()["code"] == "idempotency_key_in_use"
    assert meanwhile.headers["Retry-After"] == "1"
    assert first[0].status_code == 201
    assert (later.status_code, later.json()["id"]) == (200, first[0].json()["id"])
    assert len(platform.gateway.calls) == 1
    assert platform.balance() == 20_000_000


def _race(platform: Platform, key: str) -> list[int]:
    barrier = threading.Barrier(2)
    answers: list[httpx.Response] = []

    def send() -> None:
        barrier.wait()
        answers.append(platform.top_up(key))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return sorted(a.status_code for a in answers)


def test_two_requests_with_one_key_at_the_same_instant_charge_once_and_never_500(
    platform: Platform,
) -> None:
    platform.gateway.release.set()  # the bank answers at once: the race is in Refill
    outcomes = [_race(platform, f"race-{n}") for n in range(ROUNDS)]

    # One created it; the other was told to wait, or (once it finished) got it replayed.
    assert all(codes in ([200, 201], [201, 409]) for codes in outcomes), outcomes
    assert len(platform.gateway.calls) == ROUNDS
    assert platform.balance() == ROUNDS * 20_000_000
