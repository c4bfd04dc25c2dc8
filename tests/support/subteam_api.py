"""An agency with subteams on a frozen clock, driven over the API: what the subteam-rule and
hold tests share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient

from refill import ledger_check, services
from refill.bootstrap import Refill
from refill.clock import FrozenClock

PROBLEM = "application/problem+json"


@dataclass
class Agency:
    """An owner's API client, with the subteams it made and a key for each."""

    api: TestClient
    refill: Refill
    clock: FrozenClock
    agency_id: str
    headers: dict[str, str]
    subteams: dict[str, str] = field(default_factory=dict)  # name -> id
    keys: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> headers

    @classmethod
    def open(
        cls, api: TestClient, refill: Refill, clock: FrozenClock, *, timezone: str = "UTC"
    ) -> Agency:
        agency, key = services.create_agency(refill.db, name="Acme Voice")
        made = cls(api, refill, clock, agency.id, {"Authorization": f"Bearer {key.secret}"})
        made.ok("PATCH", "/v1/agency", {"timezone": timezone})
        return made

    def call(self, method: str, path: str, body: Any = None, *, as_: str | None = None) -> Any:
        headers = self.keys[as_] if as_ else self.headers
        return self.api.request(method, path, json=body, headers=headers)

    def ok(self, method: str, path: str, body: Any = None, *, as_: str | None = None) -> Any:
        response = self.call(method, path, body, as_=as_)
        assert response.status_code < 300, response.text
        return response.json()

    def subteam(self, name: str) -> str:
        subteam_id = str(self.ok("POST", "/v1/subteams", {"name": name})["id"])
        self.subteams[name] = subteam_id
        key = self.ok("POST", f"/v1/subteams/{subteam_id}/keys", {})
        self.keys[name] = {"Authorization": f"Bearer {key['api_key']}"}
        return subteam_id

    def grant(self, amount: int, reference: str = "start") -> None:
        services.grant_credits(
            self.refill.db, agency_id=self.agency_id, amount=amount, reference=reference
        )

    def use(self, name: str, amount: str, reference: str, **extra: Any) -> Any:
        body = {"subteam_id": self.subteams[name], "amount": amount, "reference": reference}
        return self.call("POST", "/v1/usage", {**body, **extra}, as_=name)

    def authorize(self, name: str, **extra: Any) -> Any:
        body = {"subteam_id": self.subteams[name], **extra}
        return self.ok("POST", "/v1/calls/authorize", body, as_=name)

    def patch(self, name: str, body: dict[str, Any]) -> Any:
        return self.call("PATCH", f"/v1/subteams/{self.subteams[name]}", body)

    def shown(self, name: str) -> dict[str, Any]:
        return dict(self.ok("GET", f"/v1/subteams/{self.subteams[name]}"))

    def wallet(self) -> dict[str, Any]:
        return dict(self.ok("GET", "/v1/wallet"))

    def transfers(self) -> list[dict[str, Any]]:
        return list(self.ok("GET", "/v1/transactions?limit=200")["data"])

    def events(self, type_: str) -> list[dict[str, Any]]:
        data = self.ok("GET", "/v1/events?limit=100")["data"]
        return [e for e in data if e["type"] == type_]

    def audit(self) -> list[str]:
        return [e["action"] for e in self.ok("GET", "/v1/audit-log?limit=100")["data"]]

    def assert_books_balance(self) -> None:
        check = self.refill.db.read(ledger_check.check_ledger)
        assert check.balanced, check


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body
