"""End to end over HTTP against a real `refill serve` process (loopback only, bounded)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

REFILL = str(Path(sys.executable).parent / "refill")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A `refill serve` subprocess whose output is collected on a thread."""

    def __init__(self, database_url: str, *extra: str, cwd: Path | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "REFILL_DATABASE_URL": database_url,
            "REFILL_POLL_INTERVAL_SECONDS": "0.2",
        }
        self.proc = subprocess.Popen(
            [REFILL, "serve", "--host", "127.0.0.1", "--port", str(self.port), *extra],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout: float = 30) -> None:
        wait_for(lambda: self._healthy(), timeout, lambda: f"never ready:\n{self.output}")

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"refill serve exited with {self.proc.returncode}:\n{self.output}")
        try:
            return httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._reader.join(timeout=5)


def wait_for(check: Callable[[], Any], timeout: float, why: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(why())


@pytest.fixture
def server(db_url: str) -> Iterator[Server]:
    srv = Server(db_url)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def owner_client(server: Server, db_url: str) -> httpx.Client:
    created = subprocess.run(
        [REFILL, "agency", "create", "--name", "E2E Agency", "--json"],
        env={**os.environ, "REFILL_DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key = json.loads(created.stdout)["api_key"]
    return httpx.Client(
        base_url=server.base, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def test_auto_reload_happens_over_http_against_a_real_server(server: Server, db_url: str) -> None:
    with owner_client(server, db_url) as api:
        assert api.get("/readyz").status_code == 200
        subteam = api.post("/v1/subteams", json={"name": "Sales"}).json()["id"]
        card = api.post("/v1/payment-methods", json={"token": "pm_card_visa"}).json()["id"]
        assert (
            api.post(
                "/v1/wallet/credits", json={"amount": "30.00", "payment_method_id": card}
            ).status_code
            == 201
        )
        settings = api.put(
            "/v1/wallet/auto-reload",
            json={
                "enabled": True,
                "threshold": "20.00",
                "reload_amount": "50.00",
                "payment_method_id": card,
            },
        )
        assert settings.status_code == 200
        used = Decimal(0)
        for i, amount in enumerate(["4.25", "3.333333", "2.416668"]):
            response = api.post(
                "/v1/usage",
                json={"subteam_id": subteam, "amount": amount, "reference": f"call-{i}"},
            )
            assert response.status_code == 201, response.text
            used += Decimal(amount)

        def reloaded() -> Any:
            data = api.get("/v1/reloads").json()["data"]
            return [r for r in data if r["trigger"] == "auto" and r["status"] == "succeeded"]

        wait_for(reloaded, 15, lambda: f"no auto-reload succeeded:\n{server.output}")
        balance = Decimal(api.get("/v1/wallet").json()["balance"])
        assert balance == Decimal("30.00") - used + Decimal("50.00")
        assert api.post("/v1/calls/authorize", json={"subteam_id": subteam}).json()["allowed"]


def test_a_declined_card_over_http_suspends_auto_reload_and_leaves_the_balance(
    server: Server, db_url: str
) -> None:
    with owner_client(server, db_url) as api:
        subteam = api.post("/v1/subteams", json={"name": "Sales"}).json()["id"]
        good = api.post("/v1/payment-methods", json={"token": "pm_card_visa"}).json()["id"]
        bad = api.post(
            "/v1/payment-methods", json={"token": "pm_card_visa_chargeDeclinedLostCard"}
        ).json()["id"]
        api.post("/v1/wallet/credits", json={"amount": "21.00", "payment_method_id": good})
        api.put(
            "/v1/wallet/auto-reload",
            json={
                "enabled": True,
                "threshold": "20.00",
                "reload_amount": "50.00",
                "payment_method_id": bad,
            },
        )
        api.post("/v1/usage", json={"subteam_id": subteam, "amount": "2.00", "reference": "a"})

        def failed() -> Any:
            data = api.get("/v1/reloads").json()["data"]
            return [r for r in data if r["trigger"] == "auto" and r["status"] == "failed"]

        (attempt,) = wait_for(failed, 15, lambda: f"no failed reload:\n{server.output}")
        assert attempt["failure_code"] == "lost_card"
        wallet = api.get("/v1/wallet").json()
        assert wallet["balance"] == "19.00"
        assert wallet["auto_reload"]["status"] == "suspended"


def test_an_empty_wallet_refuses_calls_over_http(server: Server, db_url: str) -> None:
    with owner_client(server, db_url) as api:
        subteam = api.post("/v1/subteams", json={"name": "Sales"}).json()["id"]
        answer = api.post("/v1/calls/authorize", json={"subteam_id": subteam}).json()
        assert answer == {
            "allowed": False,
            "reason": "no_credits",
            "available": "0.00",
            "currency": "USD",
        }


def test_the_demo_shows_an_auto_reload_within_a_minute(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    env = {**os.environ, "REFILL_DATABASE_URL": url}
    subprocess.run([REFILL, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=60)
    srv = Server(url, "--demo", cwd=tmp_path)
    try:
        srv.wait_ready()
        wait_for(
            lambda: "auto reload" in srv.output and "succeeded" in srv.output,
            60,
            lambda: f"no auto-reload in the demo's first minute:\n{srv.output}",
        )
        key = next(
            line.split("owner key:")[1].strip() for line in srv.lines if "owner key:" in line
        )
        wallet = httpx.get(
            f"{srv.base}/v1/wallet", headers={"Authorization": f"Bearer {key}"}, timeout=10
        ).json()
        assert wallet["auto_reload"]["status"] == "active"
        assert wallet["auto_reload"]["threshold"] == "20.00"
    finally:
        srv.stop()
    # SIGTERM is a graceful shutdown (uvicorn re-raises the signal once it is done).
    assert srv.proc.returncode in (0, -signal.SIGTERM), srv.output
    assert "Application shutdown complete" in srv.output
