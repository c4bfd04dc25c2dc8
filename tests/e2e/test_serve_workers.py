"""`refill serve --workers N`: several server processes on one socket, on PostgreSQL; on
SQLite it is refused before anything is touched. Loopback only, bounded in time."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.server import (
    REFILL,
    RELOAD_WITHIN,
    Server,
    auto_reloads,
    call,
    client,
    create_agency,
    wait_for,
)

THREADS = 8
EACH = 10


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def test_several_server_processes_are_refused_on_sqlite_before_anything_is_touched(
    tmp_path: Path,
) -> None:
    database = tmp_path / "refill.db"
    result = subprocess.run(
        [REFILL, "serve", "--port", "0", "--workers", "2"],
        env={**os.environ, "REFILL_DATABASE_URL": f"sqlite:///{database}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "SQLite serves from one process" in result.stderr
    assert "PostgreSQL" in result.stderr
    assert not database.exists()


def recorded(server: Server) -> float:
    """refill_usage_recorded_total, summed across the server's processes."""
    scrape = httpx.get(f"{server.base}/metrics", timeout=10)
    assert scrape.status_code == 200, scrape.text
    total = 0.0
    for family in text_string_to_metric_families(scrape.text):
        if family.name == "refill_usage_recorded":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_server_processes_share_the_traffic_and_reload_exactly_once(
    start_server: Callable[..., Server], db_url: str
) -> None:
    server = start_server(db_url, "--workers", "2")
    assert len(children_of(server.proc.pid)) >= 2, server.output
    key = create_agency(db_url)
    with client(server, key) as api:
        subteam = call(api, "POST", "/v1/subteams", 201, json={"name": "Sales"})["id"]
        card = call(api, "POST", "/v1/payment-methods", 201, json={"token": "pm_card_visa"})
        call(
            api,
            "POST",
            "/v1/wallet/credits",
            201,
            json={"amount": "30.00", "payment_method_id": card["id"]},
        )
        call(
            api,
            "PUT",
            "/v1/wallet/auto-reload",
            200,
            json={
                "enabled": True,
                "threshold": "20.00",
                "reload_amount": "50.00",
                "payment_method_id": card["id"],
            },
        )
    failures: list[str] = []

    def send(n: int) -> None:
        with client(server, key) as mine:
            for i in range(EACH):
                body = {"subteam_id": subteam, "amount": "0.25", "reference": f"w{n}-{i}"}
                response = mine.post("/v1/usage", json=body)
                if response.status_code != 201:
                    failures.append(f"{response.status_code} {response.text}")

    threads = [threading.Thread(target=send, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    with client(server, key) as api:
        # 30.00 - 80 x 0.25 = 10.00: below 20.00 once, so one reload of 50.00.
        done = wait_for(
            lambda: [r for r in auto_reloads(api) if r["status"] == "succeeded"],
            RELOAD_WITHIN,
            lambda: f"no auto-reload succeeded:\n{server.output}",
        )
        assert len(done) == 1
        assert len(auto_reloads(api)) == 1
        assert call(api, "GET", "/v1/wallet", 200)["balance"] == "60.00"
    assert recorded(server) == THREADS * EACH  # counted in both processes, summed
