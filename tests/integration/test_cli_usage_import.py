"""`refill usage import FILE.jsonl --agency ID` on SQLite and PostgreSQL: every line once,
a rerun records nothing more, refused lines are named by number and code, the wallet and
its auto-reload settings are shown before the question, and a large file goes through in
chunks of 1,000. In process (Typer's runner) for speed; one real subprocess besides."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from refill import ledger_check, services
from refill.bootstrap import Refill, build
from refill.cli import app
from refill.cli import usage as usage_cli
from refill.config import Settings
from refill.db.schema import transfers
from refill.services.usage_batch import (
    BatchOutcome,
    EventResult,
    UsageEvent,
    record_usage_batch,
)
from tests.support.arming import armed_agency
from tests.support.cli import one_line, run


@dataclass
class World:
    refill: Refill
    db_url: str
    agency_id: str
    subteam_id: str
    tmp_path: Path

    def file(self, lines: Sequence[str | dict[str, Any]], name: str = "usage.jsonl") -> Path:
        path = self.tmp_path / name
        path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
        return path

    def usage(self, reference: str, amount: str = "1.00", **more: str) -> dict[str, str]:
        return {"subteam_id": self.subteam_id, "amount": amount, "reference": reference, **more}

    def imports(self, path: Path, *more: str, answer: str | None = None) -> Result:
        return CliRunner().invoke(
            app,
            ["usage", "import", str(path), "--agency", self.agency_id, *more],
            env={"REFILL_DATABASE_URL": self.db_url},
            input=answer,
        )

    def recorded(self) -> int:
        stmt = select(func.count()).where(
            transfers.c.agency_id == self.agency_id, transfers.c.kind == "usage"
        )
        return int(self.refill.db.read(lambda tx: tx.conn.execute(stmt).scalar_one()))

    def balance(self) -> int:
        refill = self.refill
        return services.get_wallet(refill.db, refill.policy, agency_id=self.agency_id).balance


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    """25.00 of credits, auto-reload on below 20.00 (reload 50.00), a visa ending 4242."""
    refill = build(Settings(database_url=db_url), in_process_worker=False)
    armed = armed_agency(refill, "Importer")
    yield World(refill, db_url, armed.agency_id, armed.subteam_id, tmp_path)
    refill.close()


def test_an_import_records_every_line_once_and_a_rerun_records_nothing_more(
    world: World,
) -> None:
    path = world.file([world.usage(f"call-{i}") for i in range(10)])

    first = world.imports(path, "--yes")
    assert first.exit_code == 0, first.output
    assert "10 lines, 10 created, 0 duplicate, 0 refused" in first.stdout
    assert "balance after: 15.00 USD" in first.stdout
    assert "auto-reloads started: 1" in first.stdout  # 15.00 is below the 20.00 threshold
    assert world.recorded() == 10
    assert world.balance() == 15_000_000

    again = world.imports(path, "--yes")
    assert again.exit_code == 0, again.output
    assert "10 lines, 0 created, 10 duplicate, 0 refused" in again.stdout
    assert "auto-reloads started: 0" in again.stdout
    assert world.recorded() == 10
    assert world.balance() == 15_000_000
    check = world.refill.db.read(ledger_check.check_ledger)
    assert check.balanced, check


def test_refused_lines_are_reported_by_number_and_code_and_the_good_ones_recorded(
    world: World,
) -> None:
    path = world.file(
        [
            world.usage("good-1"),  # 1
            '{"subteam_id": "oops"',  # 2: not JSON
            {**world.usage("lost"), "subteam_id": "sub_nobody"},  # 3
            world.usage("bad-amount", amount="1.5e3"),  # 4
            world.usage("naive", occurred_at="2026-12-01T10:00:00"),  # 5: no time zone
            "",  # 6: blank, skipped
            world.usage("good-2", amount="0.25"),  # 7
            {"subteam_id": world.subteam_id, "amount": "1.00"},  # 8: no reference
            "[1, 2]",  # 9: not an object
        ]
    )

    result = world.imports(path, "--yes")

    assert result.exit_code == 1, result.output
    out = result.stdout
    assert "8 lines, 2 created, 0 duplicate, 6 refused" in out
    assert "refused malformed_json: 1 (line 2)" in out
    assert "refused subteam_not_found: 1 (line 3)" in out
    assert "refused invalid_amount: 1 (line 4)" in out
    assert "refused validation_error: 3 (lines 5, 8, 9)" in out
    assert "occurred_at must have a time zone" in out
    assert "Traceback" not in result.output
    assert world.recorded() == 2
    assert world.balance() == 25_000_000 - 1_250_000

    again = world.imports(path, "--yes")  # the good lines are duplicates now, still refusals
    assert again.exit_code == 1, again.output
    assert "8 lines, 0 created, 2 duplicate, 6 refused" in again.stdout
    assert world.recorded() == 2


@pytest.mark.parametrize("answer", ["n\n", "\n", None], ids=["no", "default", "no-input"])
def test_without_yes_the_settings_are_shown_and_no_records_nothing(
    world: World, answer: str | None
) -> None:
    path = world.file([world.usage(f"call-{i}") for i in range(3)])

    result = world.imports(path, answer=answer)

    assert result.exit_code == 1, result.output
    out = result.stdout
    shown = [
        f"agency {world.agency_id} (Importer)",
        "wallet: balance 25.00 USD, available 25.00 USD",
        "auto-reload: on: below 20.00 USD available, reload 50.00 USD",
        "cards: visa •••• 4242",
        "3 lines to import",
    ]
    for text in shown:
        assert text in out, out
    assert max(out.index(text) for text in shown) < out.index("Import them?")
    assert "nothing imported" in one_line(result.stderr)
    assert world.recorded() == 0


def test_answering_yes_imports(world: World) -> None:
    path = world.file([world.usage("call")])
    result = world.imports(path, answer="y\n")
    assert result.exit_code == 0, result.output
    assert "1 line, 1 created" in result.stdout
    assert world.recorded() == 1


def test_a_file_of_2500_lines_goes_through_in_3_chunks(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = world.file([world.usage(f"c{i}", amount="0.001") for i in range(2500)])
    sizes: list[int] = []

    def spy(db: Any, *, agency_id: str, events: Sequence[UsageEvent | EventResult]) -> BatchOutcome:
        sizes.append(len(events))
        return record_usage_batch(db, agency_id=agency_id, events=events)

    monkeypatch.setattr(usage_cli, "record_usage_batch", spy)

    result = world.imports(path, "--yes")

    assert result.exit_code == 0, result.output
    assert sizes == [1000, 1000, 500]
    assert "2500 lines, 2500 created" in result.stdout
    assert "balance after: 22.50 USD" in result.stdout
    assert world.recorded() == 2500


def test_an_unknown_agency_or_an_unreadable_file_is_one_line_without_a_traceback(
    world: World,
) -> None:
    path = world.file([world.usage("call")])

    unknown = CliRunner().invoke(
        app,
        ["usage", "import", str(path), "--agency", "agc_nobody", "--yes"],
        env={"REFILL_DATABASE_URL": world.db_url},
    )
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("error: ")
    assert unknown.stderr.count("\n") == 1
    assert "agc_nobody" in unknown.stderr
    assert "Traceback" not in unknown.output

    missing = world.imports(world.tmp_path / "nope.jsonl", "--yes")
    assert missing.exit_code == 1
    assert missing.stderr.count("\n") == 1
    assert "cannot read" in missing.stderr
    assert "nope.jsonl" in missing.stderr

    directory = world.imports(world.tmp_path, "--yes")
    assert directory.exit_code == 1
    assert "it is a directory" in directory.stderr
    assert world.recorded() == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # a second start-up is slow
def test_the_installed_command_imports_for_a_script(world: World) -> None:
    path = world.file([world.usage("one"), world.usage("two", amount="0.50")])
    result = run(["usage", "import", str(path), "--agency", world.agency_id, "--yes"], world.db_url)
    assert result.returncode == 0, result.stderr
    assert "2 lines, 2 created, 0 duplicate, 0 refused" in result.stdout
    assert world.recorded() == 2


def test_a_line_reads_as_the_body_of_post_v1_usage() -> None:
    line = {
        "subteam_id": "sub_1",
        "amount": "0.25",
        "reference": "r",
        "description": "a call",
        "hold_id": None,
        "occurred_at": "2026-12-01T10:00:00Z",
    }
    event = usage_cli.parse_line(json.dumps(line).encode())
    assert event == UsageEvent(
        "sub_1", 250_000, "r", "a call", None, datetime(2026, 12, 1, 10, tzinfo=UTC)
    )
    for wrong, code in [
        ({**line, "amount": 0.25}, "validation_error"),
        ({**line, "extra": "x"}, "validation_error"),
        ({**line, "occurred_at": "yesterday"}, "validation_error"),
        ({**line, "amount": "-1"}, "invalid_amount"),
    ]:
        refused = usage_cli.parse_line(json.dumps(wrong).encode())
        assert isinstance(refused, EventResult), wrong
        assert refused.code == code, wrong
    unreadable = usage_cli.parse_line(b"\xff\xfe{")
    assert isinstance(unreadable, EventResult)
    assert unreadable.code == "malformed_json"
