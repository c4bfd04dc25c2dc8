"""Filters of the ledger and the billing history: one parser for what a caller types (the
API's query, the billing page's form), and the SQL conditions both lists and both CSV
exports share.

A date is midnight in the agency's time zone; a date-time without an offset is read in
that zone too; ``to`` is exclusive. An empty value is no filter (an empty form field).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement

from refill.db.database import Database, Tx
from refill.db.schema import reload_attempts, transfers
from refill.errors import ValidationFailed
from refill.ledger import TransferKind
from refill.reload.states import AttemptStatus, Trigger
from refill.services.agencies import load_agency
from refill.services.subteams import get_subteam

E = TypeVar("E", bound=StrEnum)

MAX_MOMENT_LENGTH = 64
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# What ISO 8601 spells a moment with; anything else (NUL, other scripts' digits) is refused
# before the parser sees it.
_MOMENT_CHARACTERS = re.compile(r"[0-9A-Za-z:.,+\- ]+")


@dataclass(frozen=True, slots=True)
class TransferFilter:
    """Transfers that happened in [since, until) (``occurred_at``: usage reported late is
    filed under when it happened), of these kinds (any when empty), by a subteam."""

    since: datetime | None = None
    until: datetime | None = None
    kinds: tuple[TransferKind, ...] = ()
    subteam_id: str | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        c = transfers.c
        found = _window_conditions(c.occurred_at, self.since, self.until)
        if self.kinds:
            found.append(c.kind.in_([kind.value for kind in self.kinds]))
        if self.subteam_id is not None:
            found.append(c.subteam_id == self.subteam_id)
        return found


@dataclass(frozen=True, slots=True)
class ReloadFilter:
    """Reload attempts created in [since, until), of one trigger, in these statuses."""

    since: datetime | None = None
    until: datetime | None = None
    trigger: Trigger | None = None
    statuses: tuple[AttemptStatus, ...] = ()

    def conditions(self) -> list[ColumnElement[bool]]:
        c = reload_attempts.c
        found = _window_conditions(c.created_at, self.since, self.until)
        if self.trigger is not None:
            found.append(c.trigger == self.trigger.value)
        if self.statuses:
            found.append(c.status.in_([status.value for status in self.statuses]))
        return found


def _window_conditions(
    column: ColumnElement[datetime], since: datetime | None, until: datetime | None
) -> list[ColumnElement[bool]]:
    found = []
    if since is not None:
        found.append(column >= since)
    if until is not None:
        found.append(column < until)
    return found


def parse_moment(text: str | None, *, field: str, zone: ZoneInfo) -> datetime | None:
    """``text`` as an aware UTC datetime (None when empty): an ISO 8601 date (its midnight
    in ``zone``) or date-time (in ``zone`` when it has no offset); ``invalid_date`` else."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    invalid = ValidationFailed(
        f"{field} must be an ISO 8601 date or date-time such as 2026-01-31 or "
        f"2026-01-31T09:00:00Z (got {text[:40]!r})",
        code="invalid_date",
        field=field,
    )
    if len(text) > MAX_MOMENT_LENGTH or _MOMENT_CHARACTERS.fullmatch(text) is None:
        raise invalid
    try:
        if _DATE.fullmatch(text):
            moment = datetime.combine(date.fromisoformat(text), time(), tzinfo=zone)
        else:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone)
        # Near year 1 or 9999 the shift to UTC leaves the calendar: OverflowError.
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise invalid from None


def _window(
    zone: ZoneInfo, since: str | None, until: str | None
) -> tuple[datetime | None, datetime | None]:
    start = parse_moment(since, field="from", zone=zone)
    end = parse_moment(until, field="to", zone=zone)
    if start is not None and end is not None and start > end:
        raise ValidationFailed(
            "from must not be after to (from is included, to is not)",
            code="invalid_date",
            field="from",
        )
    return start, end


def _choices(kind: type[E], given: Sequence[str], field: str) -> tuple[E, ...]:
    """The distinct values named (empty ones ignored), or 422 naming the field."""
    allowed = {member.value: member for member in kind}
    chosen: dict[E, None] = {}
    for value in given:
        value = value.strip()
        if not value:
            continue
        if value not in allowed:
            raise ValidationFailed(
                f"{field} must be one of {', '.join(allowed)} (got {value[:40]!r})", field=field
            )
        chosen[allowed[value]] = None
    return tuple(chosen)


def _zone(tx: Tx, agency_id: str) -> ZoneInfo:
    return ZoneInfo(load_agency(tx, agency_id).timezone)


def transfer_filter(
    db: Database,
    *,
    agency_id: str,
    since: str | None = None,
    until: str | None = None,
    kinds: Sequence[str] = (),
    subteam_id: str | None = None,
) -> TransferFilter:
    """The filter of the ledger a caller typed; 422 (``invalid_date``, or naming the
    field), or 404 ``subteam_not_found`` for a subteam that is not the agency's."""
    chosen = _choices(TransferKind, kinds, "kind")
    subteam = subteam_id or None

    def work(tx: Tx) -> TransferFilter:
        start, end = _window(_zone(tx, agency_id), since, until)
        if subteam is not None:
            get_subteam(tx, agency_id, subteam)
        return TransferFilter(start, end, chosen, subteam)

    return db.read(work)


def reload_filter(
    db: Database,
    *,
    agency_id: str,
    since: str | None = None,
    until: str | None = None,
    trigger: str | None = None,
    statuses: Sequence[str] = (),
) -> ReloadFilter:
    """The filter of the billing history a caller typed; 422 (``invalid_date``, or naming
    the field) otherwise."""
    triggers = _choices(Trigger, [trigger or ""], "trigger")
    chosen = _choices(AttemptStatus, statuses, "status")

    def work(tx: Tx) -> ReloadFilter:
        start, end = _window(_zone(tx, agency_id), since, until)
        return ReloadFilter(start, end, triggers[0] if triggers else None, chosen)

    return db.read(work)
