"""A wallet driven over the API with a clock we control: reloads run synchronously after
each commit, and "the worker" is one pass of the poller at the current (frozen) time. Used
by the failure-policy and backup-card tests, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from refill import services
from refill.bootstrap import Refill, build
from refill.clock import FrozenClock
from refill.config import Settings
from refill.gateway.base import PaymentGateway
from refill.gateway.sandbox import SandboxGateway
from refill.web import create_app
from tests.support.doubles import RecordingGateway

START = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


@dataclass
class World:
    refill: Refill
    client: TestClient
    clock: FrozenClock
    gateway: RecordingGateway
    headers: dict[str, str]
    subteam_id: str
    cards: dict[str, str]
    usage_count: int = 0

    def call(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        response = self.client.request(method, path, json=body, headers=self.headers)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    def settings(self, status: int = 200, **body: Any) -> Any:
        return self.call("PUT", "/v1/wallet/auto-reload", body, status)

    def use(self, amount: str) -> None:
        self.usage_count += 1
        self.call(
            "POST",
            "/v1/usage",
            {"subteam_id": self.subteam_id, "amount": amount, "reference": f"u{self.usage_count}"},
            201,
        )

    def top_up(self, amount: str, card: str = "pm_card_visa") -> None:
        self.call(
            "POST",
            "/v1/wallet/credits",
            {"amount": amount, "payment_method_id": self.cards[card]},
            201,
        )

    def balance(self) -> str:
        return str(self.call("GET", "/v1/wallet")["balance"])

    def wallet(self) -> Any:
        return self.call("GET", "/v1/wallet")

    def auto_reloads(self) -> list[Any]:
        """Auto-reload attempts, oldest first."""
        data = self.call("GET", "/v1/reloads?limit=200")["data"]
        return [r for r in reversed(data) if r["trigger"] == "auto"]

    def run_worker(self, after: timedelta = timedelta(0)) -> None:
        self.clock.advance(after)
        self.refill.processor.run_due_work()

    def charges(self) -> int:
        return len(self.gateway.calls)


CARDS = [
    "pm_card_visa",
    "pm_card_mastercard",
    "pm_card_chargeCustomerFail",
    "pm_card_visa_chargeDeclinedInsufficientFunds",
    "pm_card_chargeDeclinedExpiredCard",
    "pm_card_authenticationRequired",
    "pm_card_visa_chargeDeclinedLostCard",
]


@contextmanager
def world_on(
    db_url: str, inner: PaymentGateway | None = None, clock: FrozenClock | None = None
) -> Iterator[World]:
    """An agency with one subteam and every card of ``CARDS`` saved; ``inner``: the
    gateway behind the recording one (the sandbox on ``clock`` by default)."""
    clock = clock or FrozenClock(START)
    gateway = RecordingGateway(inner or SandboxGateway(clock))
    service = build(
        Settings(database_url=db_url), gateway=gateway, clock=clock, in_process_worker=False
    )
    service.process_new_attempts_inline()
    service.processor.pending_grace = timedelta(0)
    _, key = services.create_agency(service.db, name="Policy Co")
    headers = {"Authorization": f"Bearer {key.secret}"}
    with TestClient(create_app(service)) as client:
        subteam = client.post("/v1/subteams", json={"name": "s"}, headers=headers).json()
        cards = {
            token: client.post(
                "/v1/payment-methods", json={"token": token}, headers=headers
            ).json()["id"]
            for token in CARDS
        }
        yield World(service, client, clock, gateway, headers, subteam["id"], cards)
    service.close()


def enable(w: World, card: str, **extra: Any) -> Any:
    body = {
        "enabled": True,
        "threshold": "20.00",
        "reload_amount": "50.00",
        "payment_method_id": w.cards[card],
        **extra,
    }
    return w.settings(**body)
