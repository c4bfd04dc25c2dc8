"""An agency owner driving the API through a test client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient


@dataclass
class Owner:
    client: TestClient
    agency_id: str
    headers: dict[str, str]
    subteam_id: str

    def post(self, path: str, body: dict[str, object]) -> Any:
        response = self.client.post(path, json=body, headers=self.headers)
        assert response.status_code < 300, response.text
        return response.json()

    def get(self, path: str) -> Any:
        response = self.client.get(path, headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()

    def card(self, token: str = "pm_card_visa") -> str:  # noqa: S107  a sandbox test card, not a secret
        return str(self.post("/v1/payment-methods", {"token": token})["id"])

    def auto_reload(self, **body: object) -> Any:
        response = self.client.put("/v1/wallet/auto-reload", json=body, headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()

    def use(self, amount: str, reference: str) -> Any:
        return self.post(
            "/v1/usage", {"subteam_id": self.subteam_id, "amount": amount, "reference": reference}
        )

    def balance(self) -> str:
        return str(self.get("/v1/wallet")["balance"])

    def reloads(self) -> list[dict[str, Any]]:
        return list(self.get("/v1/reloads")["data"])
