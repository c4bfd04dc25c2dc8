"""Usage, the hot path: a subteam's usage debits the parent wallet exactly once per
reference (calls are authorized in ``services.holds``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError

from refill import ledger
from refill.db.database import Database, RawTx
from refill.errors import NotFound, ReferenceConflict, RefillError, ValidationFailed
from refill.ledger import DuplicateReference, Posted, Transfer, TransferKind
from refill.reload.trigger import trigger_auto_reload
from refill.services import settling, spend
from refill.services.subteams import archived_refusal

# How late usage may be reported with its ``occurred_at`` (REFILL_USAGE_BACKFILL_DAYS), and
# how far ahead of this server's clock a caller's clock may run.
BACKFILL_WINDOW = timedelta(days=7)
CLOCK_SKEW = timedelta(minutes=1)


def record_usage(
    db: Database,
    *,
    agency_id: str,
    subteam_id: str,
    amount: int,
    reference: str,
    description: str | None = None,
    hold_id: str | None = None,
    occurred_at: datetime | None = None,
    backfill: timedelta = BACKFILL_WINDOW,
) -> tuple[Transfer, bool]:
    """Debit the parent wallet for a subteam's usage, exactly once per reference.

    Returns the transfer and whether it was created now. A repeat with the same reference
    returns the first transfer (also once the subteam is archived or paused); the same
    reference with another amount or subteam is a ``reference_conflict``. The debit, the
    transfer and the reload trigger are one transaction: two debits never start two reloads.
    ``hold_id`` settles the live call that hold was placed for (``settling.settle``). A wallet
    without paused or limited subteams runs two statements (``ledger.post_usage``); else, or
    when that debit could not apply, the checked path runs in the same transaction.
    """
    reference = checked_reference(amount, reference)
    if occurred_at is not None:
        occurred_at = checked_moment(occurred_at, db.clock.now(), backfill)

    def work(tx: RawTx) -> Transfer:
        posted = apply_usage(
            tx, agency_id, subteam_id, amount, reference, description, hold_id, occurred_at
        )
        if posted.below_reload_level:
            trigger_auto_reload(
                tx, agency_id=agency_id, available=posted.available, currency=posted.currency
            )
        return posted.transfer

    try:
        return db.write_raw(work), True
    except (RefillError, DuplicateReference, IntegrityError) as exc:
        if isinstance(exc, ValidationFailed):
            raise
        # A refusal, or the reference taken: a repeat of recorded usage returns it.
        original = db.read(
            lambda tx: ledger.find_transfer(
                tx, agency_id=agency_id, kind=TransferKind.USAGE, reference=reference
            )
        )
        if original is None:
            raise exc from None
        if not same_usage(
            original.amount + (original.uncovered or 0), original.subteam_id, amount, subteam_id
        ):
            raise reference_conflict(reference) from None
        return original, False


def checked_reference(amount: int, reference: str) -> str:
    """What every usage event must be before anything is read: a positive amount and a
    reference of 1 to 255 characters (stripped). 422 otherwise."""
    if amount <= 0:
        raise ValidationFailed(
            "amount must be more than zero", code="invalid_amount", field="amount"
        )
    reference = reference.strip()
    if not reference or len(reference) > 255:
        raise ValidationFailed("reference must be 1 to 255 characters", field="reference")
    return reference


def checked_moment(
    occurred_at: datetime | None, now: datetime, backfill: timedelta
) -> datetime | None:
    """When the usage happened (None: now): with a time zone, not in the future (a minute
    of clock skew is taken as now), within ``backfill``. 422 ``invalid_occurred_at``."""
    if occurred_at is None:
        return None
    if occurred_at.tzinfo is None or occurred_at.utcoffset() is None:
        raise _bad_moment("occurred_at needs a time zone offset, e.g. 2026-12-01T10:00:00Z")
    if occurred_at > now + CLOCK_SKEW:
        raise _bad_moment("occurred_at is in the future")
    if occurred_at < now - backfill:
        raise _bad_moment(
            f"occurred_at is more than {backfill.days} days ago: usage older than that cannot "
            "be reported"
        )
    return min(occurred_at, now).astimezone(UTC)


def _bad_moment(message: str) -> ValidationFailed:
    return ValidationFailed(message, code="invalid_occurred_at", field="occurred_at")


def same_usage(recorded: int, recorded_subteam: str | None, amount: int, subteam_id: str) -> bool:
    """Whether a usage event repeats the recorded one of its reference (its whole cost,
    uncovered part included, and its subteam); else the reference conflicts."""
    return recorded == amount and recorded_subteam == subteam_id


def reference_conflict(reference: str) -> ReferenceConflict:
    return ReferenceConflict(
        f"reference {reference!r} was already used for a different usage "
        "(another amount or subteam)",
        reference=reference,
    )


def apply_usage(
    tx: RawTx,
    agency_id: str,
    subteam_id: str,
    amount: int,
    reference: str,
    description: str | None,
    hold_id: str | None,
    occurred_at: datetime | None = None,
) -> Posted:
    """One usage event in the caller's transaction, the trigger left to the caller: a hold
    settled, else the two-statement debit, else the checked path. Raises its refusal."""
    posted = None
    if hold_id is not None:
        posted = settling.settle(
            tx,
            agency_id=agency_id,
            subteam_id=subteam_id,
            hold_id=hold_id,
            amount=amount,
            reference=reference,
            description=description,
            occurred_at=occurred_at,
        )
    if posted is None:
        posted = ledger.post_usage(
            tx,
            agency_id=agency_id,
            subteam_id=subteam_id,
            amount=amount,
            reference=reference,
            description=description,
            occurred_at=occurred_at,
        )
    if posted is None:
        posted = _checked_usage(
            tx, agency_id, subteam_id, amount, reference, description, occurred_at
        )
    return posted


def _checked_usage(
    tx: RawTx,
    agency_id: str,
    subteam_id: str,
    amount: int,
    reference: str,
    description: str | None,
    occurred_at: datetime | None = None,
) -> Posted:
    """The debit with the subteam's rules applied, under the wallet's lock: unknown (404),
    archived or paused (403), past a spend limit (402 ``subteam_limit_reached``), or not
    enough available credits (402). A refusal raises, and the transaction writes nothing.
    Usage reported late for a day that is over counts against that day's limits."""
    ledger.lock_wallet(tx, agency_id)
    now = spend.read_rules(tx, agency_id, subteam_id)
    if now is None:
        raise NotFound(f"subteam {subteam_id} not found", code="subteam_not_found")
    if now.rules.archived:
        raise archived_refusal(subteam_id)
    if now.rules.paused:
        raise spend.paused_refusal(subteam_id)
    then = spend.past_day(now, occurred_at)
    if then is not None:
        refusal = spend.past_limit_refusal(
            tx,
            agency_id=agency_id,
            subteam_id=subteam_id,
            rules=now.rules,
            then=then,
            amount=amount,
            currency=now.currency,
        )
    else:
        refusal = spend.limit_refusal(
            subteam_id, now.rules, now.period, amount=amount, currency=now.currency
        )
    if refusal is not None:
        raise refusal
    posted = ledger.debit_wallet(
        tx,
        agency_id=agency_id,
        to=ledger.SystemAccount.USAGE_REVENUE,
        amount=amount,
        kind=TransferKind.USAGE,
        reference=reference,
        subteam_id=subteam_id,
        description=description,
        occurred_at=occurred_at,
    )
    if then is not None and now.period is not None:
        spend.record_past_spend(tx, subteam_id, now.period, then, spent=amount)
    else:
        spend.record_spend(tx, subteam_id, now.rules, now.period, spent=amount, held_delta=0)
    return posted
