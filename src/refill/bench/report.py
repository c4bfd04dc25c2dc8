"""The benchmark's results as a table and as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def describe(report: dict[str, Any]) -> list[list[str]]:
    """Rows for the summary table."""
    rows = []
    for r in report["results"]:
        mine = r["refill"]
        base = r["baseline"]
        if r["scenario"] == "history-scale":
            figure = f"{mine['transfers']:,} transfers: p50 {mine['p50_ms']:.2f} ms"
            baseline = "-"
        elif r["scenario"] == "reload-latency":
            figure = f"p50 {mine['p50_ms']:.1f} ms, p99 {mine['p99_ms']:.1f} ms"
            baseline = "-"
        elif r["scenario"] == "webhooks":
            figure = (
                f"{mine['ops_per_s']:,.0f} deliveries/s, lag p50 {mine['p50_ms']:.1f}, "
                f"p99 {mine['p99_ms']:.1f} ms"
            )
            baseline = f"{base['ops_per_s']:,.0f} POSTs/s"
        elif r["scenario"] in ("authorize", "authorize-hold", "settle"):
            figure = (
                f"{mine['ops_per_s']:,.0f}/s, p50 {mine['p50_ms']:.3f}, p99 {mine['p99_ms']:.3f} ms"
            )
            baseline = f"{base['ops_per_s']:,.0f}/s, p99 {base['p99_ms']:.3f} ms"
        else:
            figure = f"{mine['ops_per_s']:,.0f}/s"
            baseline = f"{base['ops_per_s']:,.0f}/s" if base else "-"
        met = {True: "yes", False: "NO", None: ""}[r["met"]]
        rows.append(
            [
                r["scenario"],
                "" if r["clients"] is None else str(r["clients"]),
                figure,
                baseline,
                "" if r["ratio"] is None else f"{r['ratio']:.2f}",
                r["target"],
                met,
            ]
        )
    return rows


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
