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


def insert_sqlite(
    tx: RawTx, same: tuple[object, ...], rows: list[tuple[int, UsageEvent, int]]
) -> dict[str, int]:
    ids: dict[str, int] = {}
    now = same[3]
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        values: list[object] = []
        for _, e, after in chunk:
            happened = now if e.occurred_at is None else bind_time(tx.dialect, e.occurred_at)
            values += [*same, e.amount, "usage", e.reference, e.subteam_id, e.description]
            values += [after, happened]
        one = f"({placeholders(tx, 11)})"
        inserted = tx.fetch_raw(
            f"INSERT INTO transfers ({_COLUMNS}) VALUES {', '.join([one] * len(chunk))} "  # noqa: S608
            "ON CONFLICT (agency_id, kind, reference) DO NOTHING RETURNING reference, id",
            tuple(values),
        )
        ids.update({r[0]: int(r[1]) for r in inserted})
    return ids
