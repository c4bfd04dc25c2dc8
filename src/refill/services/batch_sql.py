"""The batch's set-based writes as SQL: one statement per engine for all the transfers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from refill.db.database import RawTx, bind_time

if TYPE_CHECKING:
    from refill.services.usage_batch import UsageEvent

CHUNK = 400  # rows per statement: far below both engines' limits on parameters


def placeholders(tx: RawTx, count: int) -> str:
    mark = "?" if tx.dialect == "sqlite" else "%s"
    return ", ".join([mark] * count)


_COLUMNS = (
    "agency_id, debit_account_id, credit_account_id, created_at, amount, kind, reference, "
    "subteam_id, description, wallet_balance_after, occurred_at"
)
# PostgreSQL: one statement of the same text whatever the batch's size (arrays, not a
# thousand placeholders to parse and plan each time).
_INSERT_UNNESTED = (
    f"INSERT INTO transfers ({_COLUMNS}) SELECT %s, %s, %s, %s, a, 'usage', r, s, d, b, "  # noqa: S608
    "COALESCE(o, %s) FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], "
    "%s::bigint[], %s::timestamptz[]) AS u(a, r, s, d, b, o) "
    "ON CONFLICT (agency_id, kind, reference) DO NOTHING RETURNING reference, id"
)


def insert_postgresql(
    tx: RawTx, same: tuple[object, ...], rows: list[tuple[int, UsageEvent, int]]
) -> dict[str, int]:
    events = [e for _, e, _ in rows]
    inserted = tx.fetch_raw(
        _INSERT_UNNESTED,
        (
            *same,
            same[3],
            [e.amount for e in events],
            [e.reference for e in events],
            [e.subteam_id for e in events],
            [e.description for e in events],
            [after for _, _, after in rows],
            [e.occurred_at for e in events],
        ),
    )
    return {r[0]: int(r[1]) for r in inserted}


# SQLite: the writer holds the database's one write lock (BEGIN IMMEDIATE) from before the
# batch is decided, so nobody else can add a transfer meanwhile: the batch numbers its rows
# itself, after the highest id (what SQLite's own rowid choice does, one row at a time), and
# learns from the count of rows written whether any reference was taken, instead of having
# every row handed back by a RETURNING clause.
_LAST_ID = "SELECT max(id) FROM transfers"
_WRITTEN = "SELECT reference FROM transfers WHERE id BETWEEN ? AND ?"


def insert_sqlite(
    tx: RawTx, same: tuple[object, ...], rows: list[tuple[int, UsageEvent, int]]
) -> dict[str, int]:
    last = tx.execute_raw(_LAST_ID, ())
    first = 1 + (int(last[0]) if last and last[0] is not None else 0)
    ids = {e.reference: first + k for k, (_, e, _) in enumerate(rows)}
    now = same[3]
    written = 0
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        values: list[object] = []
        for k, (_, e, after) in enumerate(chunk, start=first + start):
            happened = now if e.occurred_at is None else bind_time(tx.dialect, e.occurred_at)
            values += [k, *same, e.amount, "usage", e.reference, e.subteam_id, e.description]
            values += [after, happened]
        one = f"({placeholders(tx, 12)})"
        written += tx.count_raw(
            f"INSERT INTO transfers (id, {_COLUMNS}) VALUES {', '.join([one] * len(chunk))} "  # noqa: S608
            "ON CONFLICT (agency_id, kind, reference) DO NOTHING",
            tuple(values),
        )
    if written == len(rows):
        return ids
    # Some references were taken (recorded before): the rows that stand say which.
    stand = {r[0] for r in tx.fetch_raw(_WRITTEN, (first, first + len(rows) - 1))}
    return {reference: i for reference, i in ids.items() if reference in stand}
