"""The http-usage scenario: a real `refill serve` and a separate load process.

The server runs with ``REFILL_BENCH_ROUTES=1``, which adds a bare route doing the baseline
SQL, so Refill's ``POST /v1/usage`` and the baseline go through the same server, driver
and database. The load process (``python -m refill.bench.http_load``) keeps ``clients``
requests in flight over keep-alive connections to 127.0.0.1 for a bounded time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

from refill.bench.measure import Measurement, merge

MAX_REQUESTS = 5_000_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure_http_usage(
    database_url: str,
    *,
    api_key: str,
    agency_id: str,
    subteam_id: str,
    seconds: float,
    clients: int,
    rounds: int,
    tick: Callable[[], None],
    batch_sizes: tuple[int, ...] = (),
    processes: int = 1,
) -> dict[str, Measurement]:
    """Requests per second of each target, in interleaved rounds on one server: ``refill``
    (POST /v1/usage), ``baseline`` (the bare route) and ``batch-N`` (POST /v1/usage/batch
    with N events; its ops are requests)."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "REFILL_DATABASE_URL": database_url, "REFILL_BENCH_ROUTES": "1"}
    server = subprocess.Popen(  # noqa: S603  our own refill serve
        [
            *(sys.executable, "-m", "refill.cli", "serve", "--host", "127.0.0.1"),
            *("--port", str(port), "--workers", str(processes)),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_ready(base, server)
        targets = ["refill", "baseline", *(f"batch-{n}" for n in batch_sizes)]
        measured: dict[str, list[Measurement]] = {t: [] for t in targets}
        for r in range(rounds):
            for target, into in measured.items():
                into.append(
                    _load(
                        base,
                        target,
                        api_key=api_key,
                        agency_id=agency_id,
                        subteam_id=subteam_id,
                        seconds=seconds / rounds,
                        clients=clients,
                        tag=f"{target}-p{processes}-{r}",
                    )
                )
            tick()
        return {target: merge(parts) for target, parts in measured.items()}
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def _wait_ready(base: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(
                f"bench server exited: {server.stderr.read() if server.stderr else ''}"
            )
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("bench server did not become ready in 30 s")


def _load(base: str, target: str, **kwargs: Any) -> Measurement:
    out = subprocess.run(  # noqa: S603  our own load process
        [
            sys.executable,
            "-m",
            "refill.bench.http_load",
            "--base",
            base,
            "--target",
            target,
            "--options",
            json.dumps(kwargs),
        ],
        capture_output=True,
        text=True,
        timeout=kwargs["seconds"] + 120,
        check=True,
    )
    data = json.loads(out.stdout)
    return Measurement(data["ops"], data["seconds"], data["latencies_ms"], data["errors"])


async def _run_load(base: str, target: str, options: dict[str, Any]) -> dict[str, Any]:
    seconds, clients, tag = options["seconds"], options["clients"], options["tag"]
    size = int(target.split("-")[1]) if target.startswith("batch-") else 0
    if target == "refill" or size:
        path = "/v1/usage/batch" if size else "/v1/usage"
        headers = {"Authorization": f"Bearer {options['api_key']}"}
    else:
        path = "/bench/baseline-usage"
        headers = {}
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=30
    ) as client:

        async def worker(n: int) -> None:
            nonlocal errors
            for i in range(MAX_REQUESTS):
                start = time.perf_counter()
                if start >= stop_at:
                    return
                body: dict[str, Any] = {
                    "subteam_id": options["subteam_id"],
                    "amount": "0.10",
                    "reference": f"{tag}-{n}-{i}",
                }
                if size:
                    events = [{**body, "reference": f"{tag}-{n}-{i}-{k}"} for k in range(size)]
                    body = {"events": events}
                elif target != "refill":
                    body["agency_id"] = options["agency_id"]
                response = await client.post(path, json=body)
                if response.status_code >= 300 or (size and not _all_created(response)):
                    errors += 1
                    continue
                latencies.append((time.perf_counter() - start) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(clients)))
        elapsed = time.perf_counter() - started
    return {"ops": len(latencies), "seconds": elapsed, "latencies_ms": latencies, "errors": errors}


def _all_created(response: httpx.Response) -> bool:
    return all(r["status"] == "created" for r in response.json()["results"])


def main() -> None:
    parser = argparse.ArgumentParser(description="Refill HTTP load process (loopback only).")
    parser.add_argument("--base", required=True)
    parser.add_argument("--target", required=True, help="refill, baseline or batch-N")
    parser.add_argument("--options", required=True)
    args = parser.parse_args()
    if not args.base.startswith(("http://127.0.0.1:", "http://localhost:")):
        parser.error("load goes to loopback only")
    result = asyncio.run(_run_load(args.base, args.target, json.loads(args.options)))
    print(json.dumps(result))  # noqa: T201  the figures, for the parent process


if __name__ == "__main__":
    main()
