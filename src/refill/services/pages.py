"""Lists: keyset pages over time-ordered ids, and the cursors that walk them."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select

from refill.db.database import Database, Tx
from refill.errors import (
    ValidationFailed,
)

MAX_PAGE = 200


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    data: list[T]
    next_cursor: str | None


_ID_CURSOR = re.compile(r"[a-z]{3}_[0-9a-z]{26}")
_INT_CURSOR = re.compile(r"[1-9][0-9]{0,18}")


def _encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None, *, integer_ids: bool) -> str | int | None:
    """The id a cursor stands for, or ``invalid_cursor``: every cursor this API hands out
    decodes to an id of the list's own kind, and nothing else is accepted."""
    if cursor is None:
        return None
    invalid = ValidationFailed(
        "cursor is not valid: pass next_cursor from the previous page as it was",
        code="invalid_cursor",
        field="cursor",
    )
    if not 1 <= len(cursor) <= 64:
        raise invalid
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        value = raw.decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raise invalid from None
    if integer_ids:
        if _INT_CURSOR.fullmatch(value) is None or int(value) > 2**63 - 1:
            raise invalid
        return int(value)
    if _ID_CURSOR.fullmatch(value) is None:
        raise invalid
    return value


def paginate(
    db: Database,
    stmt: Select[Any],
    id_column: ColumnElement[Any],
    to_item: Callable[[Any], T],
    *,
    limit: int,
    cursor: str | None,
    newest_first: bool,
    integer_ids: bool = False,
) -> Page[T]:
    """Keyset pagination on a time-ordered id: stable while rows are being added."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    after = _decode_cursor(cursor, integer_ids=integer_ids)
    if after is not None:
        stmt = stmt.where(id_column < after if newest_first else id_column > after)
    stmt = stmt.order_by(id_column.desc() if newest_first else id_column).limit(limit + 1)

    def work(tx: Tx) -> Page[T]:
        rows = tx.conn.execute(stmt).all()
        page = rows[:limit]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = _encode_cursor(str(page[-1]._mapping[id_column.name]))
        return Page([to_item(r._mapping) for r in page], next_cursor)

    return db.read(work)
