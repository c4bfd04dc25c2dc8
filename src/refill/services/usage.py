"""Usage and calls, the hot path: a subteam's usage debits the parent wallet exactly once per
reference; a call is authorized only with credits."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from refill import ledger
from refill.db.database import Database, RawTx, Tx, prepared
from refill.errors import (
    InsufficientCredits,
    NotFound,
    ReferenceConflict,
    ValidationFailed,
)
from refill.ledger import DuplicateReference, Transfer, TransferKind
from refill.reload.trigger import trigger_auto_reload
from refill.services.subteams import archived_refusal, get_subteam


def record_usage(
    db: Database,
    *,
    agency_id: str,
    subteam_id: str,
    amount: int,
    reference: str,
    description: str | None = None,
) -> tuple[Transfer, bool]:
    """Debit the parent wallet for a subteam's usage, exactly once per reference.

    Returns the transfer and whether it was created now. A repeat with the same reference
    returns the first transfer (also once the subteam is archived); the same reference
    with another amount or subteam is a ``reference_conflict``. An archived subteam's new
    usage is refused (``subteam_archived``) by the debit's own statement. The debit, the
    transfer and the reload trigger are one transaction: two debits can never start two
    reloads.
    """
    if amount <= 0:
        raise ValidationFailed(
            "amount must be more than zero", code="invalid_amount", field="amount"
        )
    reference = reference.strip()
    if not reference or len(reference) > 255:
        raise ValidationFailed("reference must be 1 to 255 characters", field="reference")

    def work(tx: RawTx) -> Transfer:
        posted = ledger.debit_wallet(
            tx,
            agency_id=agency_id,
            to=ledger.SystemAccount.USAGE_REVENUE,
            amount=amount,
            kind=TransferKind.USAGE,
            reference=reference,
            subteam_id=subteam_id,
            description=description,
        )
        if posted.reload_below is not None and posted.balance < posted.reload_below:
            trigger_auto_reload(
                tx, agency_id=agency_id, available=posted.balance, currency=posted.currency
            )
        return posted.transfer

    try:
        return db.write_raw(work), True
    except (DuplicateReference, InsufficientCredits, IntegrityError) as exc:
        # Rare paths, resolved in a fresh transaction after the first one rolled back.
        def resolve(tx: Tx) -> Transfer | None:
            original = ledger.find_transfer(
                tx, agency_id=agency_id, kind=TransferKind.USAGE, reference=reference
            )
            # Unknown subteam: 404; archived: 403 (the debit moved nothing for either).
            if original is None and get_subteam(tx, agency_id, subteam_id).archived:
                raise archived_refusal(subteam_id)
            return original

        original = db.read(resolve)
        if original is None:
            raise exc
        if original.amount != amount or original.subteam_id != subteam_id:
            raise ReferenceConflict(
                f"reference {reference!r} was already used for a different usage "
                "(another amount or subteam)",
                reference=reference,
            ) from None
        return original, False


@dataclass(frozen=True, slots=True)
class CallAuthorization:
    allowed: bool
    reason: str
    available: int
    currency: str


_AUTHORIZE = prepared(
    "SELECT a.balance, a.currency, s.archived_at FROM subteams s "
    "JOIN accounts a ON a.id = s.wallet_id WHERE s.id = {p} AND s.agency_id = {p}"
)


def authorize_call(db: Database, *, agency_id: str, subteam_id: str) -> CallAuthorization:
    """Can this subteam take a call now? Not when the parent wallet has no credits; never
    while the subteam is archived (``subteam_archived``).

    Asked before every call, so it is one prepared lookup on the hot lane.
    """

    def work(tx: RawTx) -> CallAuthorization:
        row = tx.execute_raw(_AUTHORIZE[tx.dialect], (subteam_id, agency_id))
        if row is None:
            raise NotFound(f"subteam {subteam_id} not found", code="subteam_not_found")
        if row[2] is not None:
            raise archived_refusal(subteam_id)
        balance, currency = int(row[0]), row[1]
        if balance > 0:
            return CallAuthorization(True, "credits_available", balance, currency)
        return CallAuthorization(False, "no_credits", balance, currency)

    return db.read_raw(work)
