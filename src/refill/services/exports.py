"""CSV exports of the ledger and the billing history, one writer for the API and the billing
page.

Rows are read in keyset chunks, each in a short transaction of its own, and written out
chunk by chunk: a million transfers cost the memory of one chunk. A text cell that a
spreadsheet would run as a formula is written with a leading quote (OWASP's CSV injection
rule); amounts are numbers and are written as they are, a minus sign included.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Row, Select, select

from refill.db.database import Database, Tx
from refill.db.schema import payment_methods, receipts, reload_attempts, subteams, transfers
from refill.ids import wallet_id_for
from refill.ledger import transfer_from_row
from refill.money import format_amount
from refill.reload.attempt import attempt_from_row
from refill.services.agencies import Agency, load_agency
from refill.services.history_filters import ReloadFilter, TransferFilter

MEDIA_TYPE = "text/csv; charset=utf-8"
CHUNK = 1000
# OWASP: a cell starting with one of these is a formula to Excel, LibreOffice or Sheets.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

TRANSFER_COLUMNS = (
    "id",
    "created_at",
    "created_at_local",
    "occurred_at",
    "kind",
    "amount",
    "currency",
    "balance_after",
    "subteam",
    "reference",
    "description",
)
RELOAD_COLUMNS = (
    "id",
    "created_at",
    "created_at_local",
    "trigger",
    "status",
    "amount",
    "currency",
    "card",
    "failure_code",
    "failure_message",
    "receipt_number",
)


@dataclass(frozen=True, slots=True)
class Export:
    """A CSV file to stream: its name, and its bytes in chunks (the header first)."""

    filename: str
    chunks: Iterator[bytes]

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": MEDIA_TYPE,
            "Content-Disposition": f'attachment; filename="{self.filename}"',
            "Cache-Control": "no-store",
        }


def text_cell(value: str | None) -> str:
    """A cell a spreadsheet shows as text and never runs: a leading quote when it starts
    like a formula."""
    if not value:
        return ""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def csv_text(rows: Iterable[Sequence[str]]) -> str:
    """Rows as CSV (RFC 4180: quoted where needed, CRLF line ends)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def utc_text(moment: datetime) -> str:
    """ISO 8601 in UTC, spelled as the API's JSON spells it (``…Z``)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def export_transfers(
    db: Database, *, agency_id: str, matching: TransferFilter, chunk_size: int = CHUNK
) -> Export:
    """The ledger's transfers that match, newest first, amounts signed from the wallet's
    point of view (a debit is negative)."""
    agency, today = db.read(lambda tx: (load_agency(tx, agency_id), tx.now))
    query = (
        select(transfers, subteams.c.name.label("subteam_name"))
        .outerjoin(subteams, subteams.c.id == transfers.c.subteam_id)
        .where(transfers.c.agency_id == agency_id, *matching.conditions())
    )
    rows = _chunks(db, query, transfers.c.id, chunk_size)
    return Export(
        _filename("transactions", agency, today),
        _csv(TRANSFER_COLUMNS, ([_transfer_cells(agency, row) for row in chunk] for chunk in rows)),
    )


def export_reloads(
    db: Database, *, agency_id: str, matching: ReloadFilter, chunk_size: int = CHUNK
) -> Export:
    """The reload attempts that match, newest first, with their card and receipt."""
    agency, today = db.read(lambda tx: (load_agency(tx, agency_id), tx.now))
    query = (
        select(
            reload_attempts,
            payment_methods.c.brand.label("card_brand"),
            payment_methods.c.last4.label("card_last4"),
            receipts.c.number.label("receipt_number"),
        )
        .outerjoin(payment_methods, payment_methods.c.id == reload_attempts.c.payment_method_id)
        .outerjoin(receipts, receipts.c.attempt_id == reload_attempts.c.id)
        .where(reload_attempts.c.agency_id == agency_id, *matching.conditions())
    )
    rows = _chunks(db, query, reload_attempts.c.id, chunk_size)
    return Export(
        _filename("reloads", agency, today),
        _csv(RELOAD_COLUMNS, ([_reload_cells(agency, row) for row in chunk] for chunk in rows)),
    )


def _transfer_cells(agency: Agency, row: Row[Any]) -> list[str]:
    transfer = transfer_from_row(row._mapping)
    debit = transfer.debit_account_id == wallet_id_for(agency.id)
    currency = agency.currency
    return [
        f"txn_{transfer.id}",
        utc_text(transfer.created_at),
        transfer.created_at.astimezone(ZoneInfo(agency.timezone)).isoformat(),
        utc_text(transfer.happened_at),
        transfer.kind,
        format_amount(-transfer.amount if debit else transfer.amount, currency),
        currency,
        format_amount(transfer.wallet_balance_after, currency),
        text_cell(row.subteam_name),
        text_cell(transfer.reference),
        text_cell(transfer.description),
    ]


def _reload_cells(agency: Agency, row: Row[Any]) -> list[str]:
    attempt = attempt_from_row(row._mapping)
    card = f"{row.card_brand.title()} ending {row.card_last4}" if row.card_brand else ""
    return [
        attempt.id,
        utc_text(attempt.created_at),
        attempt.created_at.astimezone(ZoneInfo(agency.timezone)).isoformat(),
        attempt.trigger.value,
        attempt.status.value,
        format_amount(attempt.amount, attempt.currency),
        attempt.currency,
        text_cell(card),
        text_cell(attempt.failure_code),
        text_cell(attempt.failure_message),
        f"R-{row.receipt_number:06d}" if row.receipt_number is not None else "",
    ]


def _chunks(
    db: Database, query: Select[Any], id_column: ColumnElement[Any], size: int
) -> Iterator[Sequence[Row[Any]]]:
    """The query's rows newest first, ``size`` at a time, each chunk read after the last
    id of the one before (keyset), so no transaction stays open while the client reads."""
    after: Any = None
    while True:
        chunk = query if after is None else query.where(id_column < after)
        rows = _read(db, chunk.order_by(id_column.desc()).limit(size))
        if rows:
            yield rows
        if len(rows) < size:
            return
        after = rows[-1]._mapping[id_column]


def _read(db: Database, query: Select[Any]) -> Sequence[Row[Any]]:
    def work(tx: Tx) -> Sequence[Row[Any]]:
        return tx.conn.execute(query).all()

    return db.read(work)


def _csv(header: Sequence[str], chunks: Iterable[list[list[str]]]) -> Iterator[bytes]:
    yield csv_text([header]).encode()
    for rows in chunks:
        yield csv_text(rows).encode()


def _filename(what: str, agency: Agency, now: datetime) -> str:
    """``refill-<what>-<agency>-<date>.csv``: the agency's name in plain ASCII (its id when
    nothing of the name is left), the date in its time zone."""
    ascii_name = unicodedata.normalize("NFKD", agency.name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:60].strip("-")
    local_date = now.astimezone(ZoneInfo(agency.timezone)).date().isoformat()
    return f"refill-{what}-{slug or agency.id}-{local_date}.csv"
