"""Usage in batches: up to 1,000 events in one transaction, the durable write paid once.

Each event means exactly what a single ``POST /v1/usage`` means: the same idempotency by
reference, the same refusals, the same subteam rules. Events apply in order, each on its
own: a refused one writes nothing and blocks nothing after it. The reload trigger is
evaluated once, under the wallet's lock, after the last event.

Two ways to apply them, with the same answers (a property test holds them to the single
path, on both engines):

- **set-based**, for a wallet without paused or limited subteams and events that settle no
  hold (what the hot path's two statements cover one by one): the wallet locked, the
  references and subteams read in one statement each, every event decided in order in
  memory, then one UPDATE of the balance and one multi-row INSERT of the transfers;
- **one by one**, otherwise: each event through the single path's own code
  (``usage.apply_usage``) inside a savepoint, rolled back to it when refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy.exc import IntegrityError

from refill import ledger
from refill.db.database import Database, RawTx, bind_time, prepared
from refill.errors import InsufficientCredits, NotFound, RefillError
from refill.ids import system_account_id, wallet_id_for
from refill.ledger import DuplicateReference, SystemAccount, Transfer, TransferKind, WalletRow
from refill.reload.trigger import trigger_auto_reload
from refill.services.batch_sql import CHUNK, insert_postgresql, insert_sqlite, placeholders
from refill.services.subteams import archived_refusal
from refill.services.usage import (
    BACKFILL_WINDOW,
    apply_usage,
    checked_moment,
    checked_reference,
    reference_conflict,
    same_usage,
)

MAX_EVENTS = 1000


class EventStatus(StrEnum):
    CREATED = "created"
    DUPLICATE = "duplicate"
    REFUSED = "refused"


# Not frozen: a frozen dataclass's __init__ costs three times as much, per event of a
# 1,000-event batch (the benchmark's target is a ratio of events per second).
@dataclass(slots=True)
class UsageEvent:
    subteam_id: str
    amount: int
    reference: str
    description: str | None = None
    hold_id: str | None = None
    # When the call happened, if not now (backfill): within the backfill window.
    occurred_at: datetime | None = None


@dataclass(slots=True)
class EventResult:
    """What became of one event; ``error`` is what the single endpoint would answer."""

    reference: str
    status: EventStatus
    transfer_id: int | None = None
    error: RefillError | None = None
    # created: the transfer written (a duplicate names its original by id only).
    transfer: Transfer | None = None

    @property
    def code(self) -> str | None:
        return None if self.error is None else self.error.code


def refused(reference: str, error: RefillError) -> EventResult:
    return EventResult(reference, EventStatus.REFUSED, error=error)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    results: list[EventResult]
    balance: int
    available: int
    currency: str


def record_usage_batch(
    db: Database,
    *,
    agency_id: str,
    events: Sequence[UsageEvent | EventResult],
    backfill: timedelta = BACKFILL_WINDOW,
    with_transfers: bool = False,
) -> BatchOutcome:
    """Apply ``events`` in order (an ``EventResult`` given in their place is an event the
    caller refused already, kept in its place). ``with_transfers``: each created event's
    result carries its whole transfer (else its id)."""
    if len(events) > MAX_EVENTS:
        raise ValueError(f"at most {MAX_EVENTS} events in a batch")
    plan = _Plan.of(events, db.clock.now(), backfill)
    recorded: dict[str, tuple[int, int, str]] = {}  # references found taken, learnt so far

    def set_based(tx: RawTx) -> BatchOutcome:
        wallet = _lock(tx, agency_id)
        if wallet.rules or any(e.hold_id for _, e in plan.todo):
            return one_by_one(tx)  # same transaction, nothing written yet
        for reference in [r for r in recorded if recorded[r][0] < 0]:
            recorded[reference] = _recorded_one(tx, agency_id, reference)
        applied = _SetBased(tx, agency_id, wallet, plan, with_transfers, recorded)
        results = applied.run()
        if applied.after is None:
            return _finish(tx, agency_id, results)
        return _finish_known(tx, agency_id, results, applied.after)

    def one_by_one(tx: RawTx) -> BatchOutcome:
        return _finish(tx, agency_id, _one_by_one(tx, agency_id, plan))

    for _ in range(len(plan.todo) + 1):  # each try learns at least one taken reference
        try:
            return db.write_raw(set_based)
        except _Taken as taken:  # rolled back: looked up by itself in the next try
            recorded.update({reference: (-1, 0, "") for reference in taken.references})
        except IntegrityError:
            break  # taken behind the lock's back (never expected): the careful way
    return db.write_raw(one_by_one)


class _Taken(Exception):
    """References the optimistic insert found recorded before: the transaction is undone
    and tried again knowing them (the usual batch has none)."""

    def __init__(self, references: list[str]) -> None:
        super().__init__(f"{len(references)} references recorded before")
        self.references = references


def _recorded(tx: RawTx, agency_id: str, reference: str) -> tuple[int, int, str] | None:
    """The usage recorded under ``reference``: its transfer id, whole cost and subteam."""
    found = tx.execute_raw(_ONE_RECORDED[tx.dialect], (agency_id, reference))
    return None if found is None else (int(found[0]), int(found[1]), found[2])


def _recorded_one(tx: RawTx, agency_id: str, reference: str) -> tuple[int, int, str]:
    found = _recorded(tx, agency_id, reference)
    if found is None:  # recorded a moment ago and gone: only a concurrent writer could
        raise IntegrityError("usage batch", None, Exception(reference))
    return found


@dataclass
class _Plan:
    """The events still to apply, by their place, and the results known beforehand."""

    results: list[EventResult | None]
    todo: list[tuple[int, UsageEvent]]

    @classmethod
    def of(
        cls, events: Sequence[UsageEvent | EventResult], now: datetime, backfill: timedelta
    ) -> _Plan:
        results: list[EventResult | None] = []
        todo: list[tuple[int, UsageEvent]] = []
        for i, event in enumerate(events):
            if isinstance(event, EventResult):
                results.append(event)
                continue
            try:
                reference = checked_reference(event.amount, event.reference)
                occurred_at = event.occurred_at
                if occurred_at is not None:  # the usual event has none: no call
                    occurred_at = checked_moment(occurred_at, now, backfill)
            except RefillError as exc:
                results.append(refused(event.reference, exc))
                continue
            results.append(None)
            if reference != event.reference or occurred_at != event.occurred_at:
                event = replace(event, reference=reference, occurred_at=occurred_at)
            todo.append((i, event))
        return cls(results, todo)

    def done(self) -> list[EventResult]:
        done = [r for r in self.results if r is not None]
        if len(done) != len(self.results):
            raise RuntimeError("an event of the batch was left without a result")
        return done


@dataclass(frozen=True, slots=True)
class _Wallet:
    row: WalletRow
    rules: bool


_LOCK = {
    dialect: sql + (" FOR UPDATE" if dialect == "postgresql" else "")
    for dialect, sql in prepared(
        "SELECT balance, held, currency, reload_below, alert_below, call_floor, subteam_rules "
        "FROM accounts WHERE id = {p}"
    ).items()
}


def _lock(tx: RawTx, agency_id: str) -> _Wallet:
    row = tx.execute_raw(_LOCK[tx.dialect], (wallet_id_for(agency_id),))
    if row is None:
        raise NotFound(f"agency {agency_id} has no wallet")
    tx.read_clock()  # the lock may have been waited for
    return _Wallet(WalletRow.of(row[:6]), bool(row[6]))


def _duplicate_or_conflict(
    event: UsageEvent, transfer_id: int | None, cost: int, subteam_id: str | None
) -> EventResult:
    if same_usage(cost, subteam_id, event.amount, event.subteam_id):
        return EventResult(event.reference, EventStatus.DUPLICATE, transfer_id)
    return refused(event.reference, reference_conflict(event.reference))


@dataclass
class _SetBased:
    """Every event decided in order in memory, then written with one statement each.

    Optimistic about references recorded before (a batch of new usage is the common case):
    the transfers are inserted ``ON CONFLICT DO NOTHING``; a reference found taken undoes
    the transaction, is looked up by itself (one index probe each), and the batch is
    decided again knowing it. No pre-read of the whole batch's references: with a young
    agency's statistics PostgreSQL plans that read as a scan of all its usage."""

    tx: RawTx
    agency_id: str
    wallet: _Wallet
    plan: _Plan
    with_transfers: bool
    recorded: dict[str, tuple[int, int, str]]
    rows: list[tuple[int, UsageEvent, int]] = field(default_factory=list)
    after: WalletRow | None = None  # the wallet after the debit, when there was one

    def run(self) -> list[EventResult]:
        todo = self.plan.todo
        archived = self._subteams(sorted({e.subteam_id for _, e in todo}))
        later, balance = self._decide(archived, self.recorded)
        ids = self._insert(balance) if self.rows else {}
        taken = [e.reference for _, e, _ in self.rows if e.reference not in ids]
        if taken:
            raise _Taken(taken)
        if self.rows:
            self._after_change()
        results = self.plan.results
        # As the single path: a refused repeat of usage recorded before is a repeat (a
        # reference this batch writes later was not recorded yet when it was refused).
        this_batch = {e.reference for _, e, _ in self.rows}
        for i, event in self.plan.todo:
            answer = results[i]
            if answer is None or event.reference in this_batch:
                continue
            if answer.code in _REFUSALS_BEFORE_LOOKUP:
                found = _recorded(self.tx, self.agency_id, event.reference)
                if found is not None:
                    results[i] = _duplicate_or_conflict(event, *found)
        for i, event, after in self.rows:
            made = (
                self._transfer(ids[event.reference], event, after) if self.with_transfers else None
            )
            results[i] = EventResult(
                event.reference, EventStatus.CREATED, ids[event.reference], None, made
            )
        for i, reference in later:
            results[i] = EventResult(reference, EventStatus.DUPLICATE, ids[reference])
        return self.plan.done()

    def _decide(
        self, archived: dict[str, bool], recorded: dict[str, tuple[int, int, str]]
    ) -> tuple[list[tuple[int, str]], int]:
        """Each event's answer in order, the rows to write, and the balance after them."""
        balance, held = self.wallet.row.balance, self.wallet.row.held
        made: dict[str, UsageEvent] = {}  # reference → its event, this batch
        later: list[tuple[int, str]] = []  # duplicates of this batch's events: ids to fill
        results = self.plan.results
        self.rows = []
        for i, event in self.plan.todo:
            if event.reference in made:
                first = made[event.reference]
                answer = _duplicate_or_conflict(event, None, first.amount, first.subteam_id)
                if answer.status is EventStatus.DUPLICATE:
                    later.append((i, event.reference))
                results[i] = answer
            elif event.reference in recorded:
                results[i] = _duplicate_or_conflict(event, *recorded[event.reference])
            elif event.subteam_id not in archived:
                results[i] = refused(event.reference, _unknown(event.subteam_id))
            elif archived[event.subteam_id]:
                results[i] = refused(event.reference, archived_refusal(event.subteam_id))
            elif balance - event.amount < held:
                results[i] = refused(event.reference, _insufficient(balance - held))
            else:
                balance -= event.amount
                self.rows.append((i, event, balance))
                made[event.reference] = event
        return later, balance

    def _transfer(self, transfer_id: int, event: UsageEvent, after: int) -> Transfer:
        currency = self.wallet.row.currency
        return Transfer(
            id=transfer_id,
            agency_id=self.agency_id,
            debit_account_id=wallet_id_for(self.agency_id),
            credit_account_id=system_account_id(SystemAccount.USAGE_REVENUE, currency),
            amount=event.amount,
            kind=TransferKind.USAGE.value,
            reference=event.reference,
            subteam_id=event.subteam_id,
            description=event.description,
            metadata=None,
            wallet_balance_after=after,
            created_at=self.tx.now,
            occurred_at=event.occurred_at or self.tx.now,
        )

    def _subteams(self, ids: list[str]) -> dict[str, bool]:
        """This agency's subteams among ``ids``: whether each is archived."""
        found: dict[str, bool] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            rows = self.tx.fetch_raw(
                "SELECT id, archived_at IS NOT NULL FROM subteams WHERE agency_id = "  # noqa: S608
                f"{placeholders(self.tx, 1)} AND id IN ({placeholders(self.tx, len(chunk))})",
                (self.agency_id, *chunk),
            )
            found.update({r[0]: bool(r[1]) for r in rows})
        return found

    def _insert(self, balance: int) -> dict[str, int]:
        """The debit and the transfers; the ids of those written (a taken reference is not)."""
        tx, before = self.tx, self.wallet.row
        total = before.balance - balance
        row = tx.execute_raw(_DEBIT[tx.dialect], (-total, wallet_id_for(self.agency_id), -total))
        if row is None or int(row[0]) != balance:
            raise RuntimeError("the wallet moved under its lock")  # never: we hold it
        self.after = WalletRow.of(row)
        debit = wallet_id_for(self.agency_id)
        credit = system_account_id(SystemAccount.USAGE_REVENUE, self.after.currency)
        now = bind_time(tx.dialect, tx.now)
        write = insert_postgresql if tx.dialect == "postgresql" else insert_sqlite
        return write(tx, (self.agency_id, debit, credit, now), self.rows)

    def _after_change(self) -> None:
        """The balance's crossings, once the rows stand (debits only go down, so the first
        balance and the last cross what the events one by one would)."""
        if self.after is not None:
            ledger.after_change(self.tx, self.agency_id, self.after, self.wallet.row.available)


# Refusals the single path answers only after finding no usage under the reference.
_REFUSALS_BEFORE_LOOKUP = frozenset(
    {"subteam_not_found", "subteam_archived", "insufficient_credits"}
)
_DEBIT = prepared(
    "UPDATE accounts SET balance = balance + {p} WHERE id = {p} AND balance + {p} >= held "
    "RETURNING balance, held, currency, reload_below, alert_below, call_floor"
)


def _unknown(subteam_id: str) -> NotFound:
    return NotFound(f"subteam {subteam_id} not found", code="subteam_not_found")


def _insufficient(available: int) -> InsufficientCredits:
    return InsufficientCredits(
        "the wallet does not have enough available credits for this", available=available
    )


_SAVEPOINT = "SAVEPOINT usage_event"
_RELEASE = "RELEASE SAVEPOINT usage_event"
_UNDO = "ROLLBACK TO SAVEPOINT usage_event"
_ONE_RECORDED = prepared(
    "SELECT id, amount + COALESCE(uncovered, 0), subteam_id FROM transfers "
    "WHERE agency_id = {p} AND kind = 'usage' AND reference = {p}"
)


def _one_by_one(tx: RawTx, agency_id: str, plan: _Plan) -> list[EventResult]:
    """Each event through the single path's code, in a savepoint of its own."""
    for i, e in plan.todo:
        tx.execute_raw(_SAVEPOINT, ())
        try:
            posted = apply_usage(
                tx,
                agency_id,
                e.subteam_id,
                e.amount,
                e.reference,
                e.description,
                e.hold_id,
                e.occurred_at,
            )
        except (RefillError, DuplicateReference, IntegrityError) as exc:
            tx.execute_raw(_UNDO, ())
            tx.execute_raw(_RELEASE, ())
            found = _recorded(tx, agency_id, e.reference)
            if found is not None:
                plan.results[i] = _duplicate_or_conflict(e, *found)
            elif isinstance(exc, RefillError):
                plan.results[i] = refused(e.reference, exc)
            else:
                raise  # a reference taken and gone again: the transaction is retried
            continue
        tx.execute_raw(_RELEASE, ())
        plan.results[i] = EventResult(
            e.reference, EventStatus.CREATED, posted.transfer.id, None, posted.transfer
        )
    return plan.done()


_BALANCE = prepared("SELECT balance, held, currency FROM accounts WHERE id = {p}")


def _finish_known(
    tx: RawTx, agency_id: str, results: list[EventResult], after: WalletRow
) -> BatchOutcome:
    """As ``_finish``, from the wallet the debit returned: the trigger only below its level."""
    if after.reload_below is not None and after.available < after.reload_below:
        trigger_auto_reload(
            tx, agency_id=agency_id, available=after.available, currency=after.currency
        )
    return BatchOutcome(results, after.balance, after.available, after.currency)


def _finish(tx: RawTx, agency_id: str, results: list[EventResult]) -> BatchOutcome:
    """The trigger, once, under the wallet's lock (already held), and the balance after."""
    row = tx.execute_raw(_BALANCE[tx.dialect], (wallet_id_for(agency_id),))
    if row is None:
        raise NotFound(f"agency {agency_id} has no wallet")
    balance, held, currency = int(row[0]), int(row[1]), str(row[2])
    if any(r.status is EventStatus.CREATED for r in results):
        trigger_auto_reload(tx, agency_id=agency_id, available=balance - held, currency=currency)
    return BatchOutcome(results, balance, balance - held, currency)
