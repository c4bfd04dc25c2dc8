"""Receipts, as the owner reads them: one per charge that succeeded (``notify.receipts``
issues them)."""

from __future__ import annotations

from refill.db.database import Database
from refill.notify.receipts import Receipt, receipt_for

__all__ = ["Receipt", "get_receipt"]


def get_receipt(db: Database, *, agency_id: str, reload_id: str) -> Receipt:
    """The receipt of a reload that succeeded; NotFound (``receipt_not_found``) otherwise."""
    return db.read(lambda tx: receipt_for(tx, agency_id, reload_id))
