"""Usage, for operators: `refill usage import FILE.jsonl --agency AGC_ID`.

Backfills usage from a file of JSON lines, each the body of ``POST /v1/usage`` (with an
optional ``occurred_at``), in batches of up to 1,000 lines, one transaction each. Resumable:
a line whose reference is already recorded (same amount, same subteam) is a duplicate, so a
rerun of the same file after a crash records everything exactly once. A line that cannot be
read is refused, with its number and why, and sent nowhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from refill import services
from refill.bootstrap import Refill
from refill.cli.common import FAILED, console, fail, open_service
from refill.db.database import Tx
from refill.db.schema import reload_attempts
from refill.errors import RefillError, ValidationFailed
from refill.money import Money, parse_amount
from refill.reload.settings import AutoReloadSettings
from refill.reload.states import Mode, SettingsStatus, Trigger
from refill.services.usage_batch import (
    MAX_EVENTS,
    BatchOutcome,
    EventResult,
    EventStatus,
    UsageEvent,
    record_usage_batch,
    refused,
)

usage_app = typer.Typer(help="Usage, for operators.", no_args_is_help=True)

FIRST_LINES = 5  # line numbers shown for each refusal code
_REQUIRED = ("subteam_id", "amount", "reference")
_OPTIONAL = ("description", "hold_id", "occurred_at")
# As POST /v1/usage bounds them.
_MAX_LENGTH = {"subteam_id": 40, "amount": 40, "reference": 255, "description": 500}
_MAX_LENGTH |= {"hold_id": 40, "occurred_at": 64}

Numbered = tuple[int, UsageEvent | EventResult]  # a line's number and what it became


@usage_app.command("import")
def import_usage(
    file: Annotated[
        Path, typer.Argument(metavar="FILE.jsonl", help="JSON lines, each a POST /v1/usage body.")
    ],
    agency: Annotated[str, typer.Option(help="The agency's id (agc_…).")],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (for scripts).")
    ] = False,
) -> None:
    """Record usage from FILE.jsonl, up to 1,000 lines per transaction. Each line is a JSON
    object like the body of POST /v1/usage: {"subteam_id", "amount", "reference",
    "description"?, "hold_id"?, "occurred_at"?}. Rerunning the same file skips the lines
    already recorded. Shows the wallet and its auto-reload settings (an import can charge
    the owner's card) and asks first, unless --yes.

    Exit status:
    0 every line recorded (or recorded before);
    1 some lines refused, the question answered no, or an error;
    2 the database cannot be used.
    """
    check_readable(file)
    refill = open_service()
    try:
        lines = preview(refill, agency, file)
        if not yes and not confirmed():
            raise fail("nothing imported: not confirmed")
        summary = run_import(refill, agency, file, lines)
    finally:
        refill.close()
    summary.print()
    if summary.refused:
        raise typer.Exit(code=FAILED)


def check_readable(file: Path) -> None:
    try:
        with file.open("rb"):
            pass
    except IsADirectoryError:
        raise fail(f"cannot read {file}: it is a directory") from None
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror or exc}") from None


def count_lines(file: Path) -> int:
    """The lines to import (blank lines aside): a cheap pass, a line at a time."""
    try:
        with file.open("rb") as stream:
            return sum(1 for raw in stream if raw.strip())
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror or exc}") from None


def confirmed() -> bool:
    try:
        return typer.confirm("Import them?", default=False)
    except typer.Abort:  # no answer (end of input, Ctrl-C): no
        typer.echo("")
        return False


# What is shown before the question.


def preview(refill: Refill, agency_id: str, file: Path) -> int:
    """Show the wallet, its auto-reload settings and the number of lines; the lines."""
    try:
        agency = services.get_agency(refill.db, agency_id)
        wallet = services.get_wallet(refill.db, refill.policy, agency_id=agency_id)
        cards = [
            services.get_saved_card(refill.db, agency_id=agency_id, payment_method_id=card_id)
            for card_id in wallet.auto_reload.payment_method_ids
        ]
    except RefillError as exc:
        raise fail(exc.message) from None
    lines = count_lines(file)
    currency, settings = wallet.currency, wallet.auto_reload
    typer.echo(f"agency {agency.id} ({agency.name})")
    typer.echo(
        f"wallet: balance {Money(wallet.balance, currency)}, "
        f"available {Money(wallet.available, currency)}"
    )
    typer.echo(f"auto-reload: {auto_reload_words(settings, currency)}")
    if cards:
        typer.echo("cards: " + ", ".join(f"{c.brand} •••• {c.last4}" for c in cards))
    else:
        typer.echo("cards: none")
    if settings.status == SettingsStatus.ACTIVE:
        typer.echo("an import that takes the wallet below the threshold charges the card")
    typer.echo(f"file: {file}, {lines} line{'s' if lines != 1 else ''} to import")
    return lines


def auto_reload_words(settings: AutoReloadSettings, currency: str) -> str:
    """``on: below 20.00 USD available, reload 50.00 USD``, ``off``, ``suspended (why): …``."""
    if settings.status == SettingsStatus.OFF:
        return "off"
    words = "on" if settings.status == SettingsStatus.ACTIVE else "suspended"
    if settings.status == SettingsStatus.SUSPENDED and settings.suspended_reason:
        words += f" ({settings.suspended_reason})"
    rule = []
    if settings.threshold is not None:
        rule.append(f"below {Money(settings.threshold, currency)} available")
    if settings.mode == Mode.TARGET and settings.target_balance is not None:
        rule.append(f"bring back up to {Money(settings.target_balance, currency)}")
    elif settings.reload_amount is not None:
        rule.append(f"reload {Money(settings.reload_amount, currency)}")
    if settings.monthly_cap is not None:
        rule.append(f"at most {Money(settings.monthly_cap, currency)} a month")
    return f"{words}: {', '.join(rule)}" if rule else words


# Reading the file.


def read_chunks(file: Path, size: int = MAX_EVENTS) -> Iterator[list[Numbered]]:
    """The file's lines, parsed, in chunks of up to ``size`` (blank lines skipped)."""
    chunk: list[Numbered] = []
    with file.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            if not raw.strip():
                continue
            chunk.append((number, parse_line(raw)))
            if len(chunk) == size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def parse_line(raw: bytes) -> UsageEvent | EventResult:
    """One line as a usage event, or refused (with a placeholder reference) when it is
    not one."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, a 5000-digit number
        error = ValidationFailed("the line is not valid JSON", code="malformed_json")
        return refused("(unreadable)", error)
    reference = data.get("reference") if isinstance(data, dict) else None
    try:
        return to_event(data)
    except RefillError as exc:
        return refused(reference if isinstance(reference, str) else "(unreadable)", exc)


def to_event(data: object) -> UsageEvent:
    if not isinstance(data, dict):
        raise ValidationFailed("the line is not a JSON object")
    for name in data:
        if name not in _REQUIRED and name not in _OPTIONAL:
            raise ValidationFailed(f"unknown field {name!r}", field=name)
    for name in _REQUIRED:
        if name not in data:
            raise ValidationFailed(f"{name} is required", field=name)
    for name, value in data.items():
        if value is None and name in _OPTIONAL:
            continue
        if not isinstance(value, str):
            raise ValidationFailed(f"{name} must be a string", field=name)
        if "\x00" in value:
            raise ValidationFailed(f"{name} must not contain a NUL character", field=name)
        if len(value) > _MAX_LENGTH[name]:
            raise ValidationFailed(f"{name} is longer than {_MAX_LENGTH[name]}", field=name)
    return UsageEvent(
        subteam_id=data["subteam_id"],
        amount=parse_amount(data["amount"]),
        reference=data["reference"],
        description=data.get("description"),
        hold_id=data.get("hold_id"),
        occurred_at=parse_time(data.get("occurred_at")),
    )


def parse_time(text: str | None) -> datetime | None:
    """ISO 8601 with a time zone (``2026-12-01T10:00:00Z``); a time without one is refused:
    which day it was depends on it."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationFailed(
            f"occurred_at must be an ISO 8601 time such as 2026-12-01T10:00:00Z (got {text!r})",
            field="occurred_at",
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValidationFailed(
            f"occurred_at must have a time zone, e.g. Z or +02:00 (got {text!r})",
            field="occurred_at",
        )
    return moment


# Importing, and the summary.


@dataclass
class Summary:
    file: Path
    created: int = 0
    duplicate: int = 0
    refused: int = 0
    # code → (how many, the first line numbers, the first message)
    refusals: dict[str, tuple[int, list[int], str]] = field(default_factory=dict)
    balance: Money | None = None
    reloads: int | None = None

    def add(self, numbers: list[int], outcome: BatchOutcome) -> None:
        for number, result in zip(numbers, outcome.results, strict=True):
            if result.status is EventStatus.CREATED:
                self.created += 1
            elif result.status is EventStatus.DUPLICATE:
                self.duplicate += 1
            else:
                self.refused += 1
                code = result.code or "refused"
                count, first, message = self.refusals.get(code, (0, [], ""))
                if len(first) < FIRST_LINES:
                    first.append(number)
                message = message or (result.error.message if result.error else "")
                self.refusals[code] = (count + 1, first, message)
        self.balance = Money(outcome.balance, outcome.currency)

    @property
    def lines(self) -> int:
        return self.created + self.duplicate + self.refused

    def print(self) -> None:
        typer.echo(
            f"imported {self.file}: {self.lines} line{'s' if self.lines != 1 else ''}, "
            f"{self.created} created, {self.duplicate} duplicate, {self.refused} refused"
        )
        for code, (count, first, message) in sorted(self.refusals.items()):
            where = ", ".join(map(str, first)) + (", …" if count > len(first) else "")
            line_word = "line" if count == 1 else "lines"
            typer.echo(f"  refused {code}: {count} ({line_word} {where}): {message}")
        if self.balance is not None:
            typer.echo(f"balance after: {self.balance}")
        if self.reloads is not None:
            typer.echo(f"auto-reloads started: {self.reloads}")


def run_import(refill: Refill, agency_id: str, file: Path, lines: int) -> Summary:
    """Every chunk in its own transaction, under a progress bar."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    summary = Summary(file)
    before = auto_reloads(refill, agency_id)
    last = 0  # the last line recorded, for a message when the import stops
    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("import", total=lines)
        try:
            for chunk in read_chunks(file):
                outcome = record_usage_batch(
                    refill.db, agency_id=agency_id, events=[event for _, event in chunk]
                )
                summary.add([number for number, _ in chunk], outcome)
                last = chunk[-1][0]
                progress.advance(task, len(chunk))
        except (RefillError, DBAPIError, OSError, KeyboardInterrupt) as exc:
            progress.stop()
            why = stopped_by(exc)
            done = f"the lines up to {last} are done" if last else "nothing was recorded"
            raise fail(
                f"the import stopped ({why}); {done}: run the same command again to finish "
                "(what is recorded is skipped)"
            ) from None
    after = auto_reloads(refill, agency_id)
    summary.reloads = None if before is None or after is None else after - before
    return summary


def stopped_by(exc: BaseException) -> str:
    """Why an import stopped, in one line."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, RefillError):
        return exc.message
    text = str(exc.orig if isinstance(exc, DBAPIError) else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def auto_reloads(refill: Refill, agency_id: str) -> int | None:
    """How many auto-reloads the agency has had (to tell how many the import started)."""

    def count(tx: Tx) -> int:
        stmt = select(func.count()).where(
            reload_attempts.c.agency_id == agency_id, reload_attempts.c.trigger == Trigger.AUTO
        )
        return int(tx.conn.execute(stmt).scalar_one())

    try:
        return refill.db.read(count)
    except DBAPIError:
        return None
