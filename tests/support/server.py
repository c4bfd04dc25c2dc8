"""A real `refill serve` for end-to-end tests: started on a free loopback port, waited for,
always stopped (SIGTERM, then SIGKILL), its output kept for failure messages; and small
helpers to talk to it with httpx and to create agencies with the real CLI."""

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
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

REFILL = str(Path(sys.executable).parent / "refill")
READY_WITHIN = 60.0  # seconds; a busy 2-core machine starts a server in 5-20 s
RELOAD_WITHIN = 10.0  # seconds for a reload to reach its outcome after it was triggered
DEMO_RELOAD_WITHIN = 60.0  # the demo promises an auto-reload within the first minute


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float, why: Callable[[], str]) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``why()`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(why())
        time.sleep(0.1)


class Server:
    """A `refill serve` subprocess; stdout and stderr are drained on their own threads."""

    def __init__(
        self,
        database_url: str,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.proc = subprocess.Popen(
            [REFILL, "serve", "--host", "127.0.0.1", "--port", str(self.port), *args],
            env={
                **os.environ,
                "REFILL_DATABASE_URL": database_url,
                # The poller runs due retries; keep its wake-ups short for the tests.
                "REFILL_POLL_INTERVAL_SECONDS": "0.2",
                **(env or {}),
            },
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _drain(stream: IO[str], into: list[str]) -> None:
        for line in stream:
            into.append(line)

    @property
    def output(self) -> str:
        """Everything the process printed so far, for failure messages."""
        return f"--- stdout ---\n{''.join(self.stdout)}--- stderr ---\n{''.join(self.stderr)}"

    def wait_ready(self, timeout: float = READY_WITHIN) -> None:
        wait_for(
            self._healthy,
            timeout,
            lambda: f"refill serve did not answer /healthz within {timeout}s:\n{self.output}",
        )

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"refill serve exited with {self.proc.returncode}:\n{self.output}")
        try:
            response = httpx.get(f"{self.base}/healthz", timeout=1)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.json() == {"status": "ok"}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for reader in self._readers:
            reader.join(timeout=5)


@pytest.fixture
def start_server() -> Iterator[Callable[..., Server]]:
    """Start `refill serve` and wait until it is ready; every server is stopped at teardown."""
    started: list[Server] = []

    def start(
        database_url: str,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Server:
        server = Server(database_url, *args, env=env, cwd=cwd)
        started.append(server)
        server.wait_ready()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def create_agency(database_url: str) -> str:
    """`refill agency create --json` against the server's database; returns the owner key."""
    result = subprocess.run(
        [REFILL, "agency", "create", "--name", "E2E Agency", "--json"],
        env={**os.environ, "REFILL_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["api_key"])


def client(server: Server, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.base, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def call(api: httpx.Client, method: str, path: str, expect: int, **kwargs: Any) -> Any:
    """One request whose status must be ``expect``; returns the JSON body (None when empty)."""
    response = api.request(method, path, **kwargs)
    assert response.status_code == expect, (
        f"{method} {path} {kwargs.get('json')!r} -> {response.status_code} {response.text}"
    )
    return response.json() if response.content else None


def auto_reloads(api: httpx.Client) -> list[dict[str, Any]]:
    return [r for r in call(api, "GET", "/v1/reloads", 200)["data"] if r["trigger"] == "auto"]
