"""The benchmark cannot rot: a smoke run produces every figure (no speed is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REFILL = str(Path(sys.executable).parent / "refill")
SCENARIOS = {
    "usage-hot",
    "usage-spread",
    "authorize",
    "authorize-hold",
    "settle",
    "reload-latency",
    "http-usage",
    "usage-batch",
    "usage-batch-http",
    "webhooks",
    "history-scale",
}


def test_a_smoke_run_produces_every_figure_of_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            REFILL,
            "bench",
            "--seconds",
            "1",
            "--clients",
            "1",
            "--history-sizes",
            "1000,10000",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["machine"]["cores"] >= 1
    assert report["machine"]["database"].startswith("sqlite")
    assert report["settings"]["clients"] == [1]
    results = report["results"]
    assert {r["scenario"] for r in results} == SCENARIOS
    for r in results:
        assert r["refill"]["ops"] > 0, r
        assert r["refill"]["p50_ms"] > 0, r
        assert r["refill"]["p99_ms"] >= r["refill"]["p50_ms"], r
        assert r["refill"]["errors"] == 0, r
        if r["scenario"] in SCENARIOS - {"reload-latency", "history-scale"}:
            assert r["baseline"]["ops"] > 0, r
            assert r["baseline"]["errors"] == 0, r
            assert r["ratio"] > 0, r
    history = [r for r in results if r["scenario"] == "history-scale"]
    assert [r["refill"]["transfers"] for r in history] == [1000, 10000]
    assert "usage-hot" in result.stdout
    assert "history-scale" in result.stdout
