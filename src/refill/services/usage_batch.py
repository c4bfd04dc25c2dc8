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
from enum import StrEnum

from sqlalchemy.exc import IntegrityError

from refill import ledger
from refill.db.database import Database, RawTx, bind_time, prepared
from refill.errors import InsufficientCredits, NotFound, RefillError
from refill.ids import system_account_id, wallet_id_for
from refill.ledger import DuplicateReference, SystemAccount, WalletRow
from refill.reload.trigger import trigger_auto_reload
from refill.services.subteams import archived_refusal
from refill.services.usage import (
    apply_usage,
    checked_reference,
    reference_conflict,
    same_usage,
)

MAX_EVENTS = 1000
_CHUNK = 400  # rows per statement: far below both engines' limits on parameters


class EventStatus(StrEnum):
    CREATED = "created"
    DUPLICATE = "duplicate"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class UsageEvent:
    subteam_id: str
    amount: int
    reference: str
    description: str | None = None
    hold_id: str | None = None


@dataclass(frozen=True, slots=True)
class EventResult:
    """What became of one event; ``error`` is what the single endpoint would answer."""

    reference: str
    status: EventStatus
    transfer_id: int | None = None
    error: RefillError | None = None

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
    db: Database, *, agency_id: str, events: Sequence[UsageEvent | EventResult]
) -> BatchOutcome:
    """Apply ``events`` in order (an ``EventResult`` given in their place is an event the
    caller refused already, kept in its place)."""
    if len(events) > MAX_EVENTS:
        raise ValueError(f"at most {MAX_EVENTS} events in a batch")
    plan = _Plan.of(events)

    def set_based(tx: RawTx) -> BatchOutcome:
        wallet = _lock(tx, agency_id)
        if wallet.rules or any(e.hold_id for _, e in plan.todo):
            return one_by_one(tx)  # same transaction, nothing written yet
        return _finish(tx, agency_id, _SetBased(tx, agency_id, wallet, plan).run())

    def one_by_one(tx: RawTx) -> BatchOutcome:
        return _finish(tx, agency_id, _one_by_one(tx, agency_id, plan))

    try:
        return db.write_raw(set_based)
    except IntegrityError:
        # A reference taken behind the lock's back (never expected): the careful way.
        return db.write_raw(one_by_one)


@dataclass
class _Plan:
    """The events still to apply, by their place, and the results known beforehand."""

    results: list[EventResult | None]
    todo: list[tuple[int, UsageEvent]]

    @classmethod
    def of(cls, events: Sequence[UsageEvent | EventResult]) -> _Plan:
        results: list[EventResult | None] = []
        todo: list[tuple[int, UsageEvent]] = []
        for i, event in enumerate(events):
            if isinstance(event, EventResult):
                results.append(event)
                continue
            try:
                reference = checked_reference(event.amount, event.reference)
            except RefillError as exc:
                results.append(refused(event.reference, exc))
                continue
            results.append(None)
            if reference != event.reference:  # stripped (replace only then: it is slow)
                event = replace(event, reference=reference)
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


def _placeholders(tx: RawTx, count: int) -> str:
    mark = "?" if tx.dialect == "sqlite" else "%s"
    return ", ".join([mark] * count)


def _recorded(tx: RawTx, agency_id: str, references: list[str]) -> dict[str, tuple[int, int, str]]:
    """Usage already recorded under these references: id, whole cost, subteam."""
    found: dict[str, tuple[int, int, str]] = {}
    for start in range(0, len(references), _CHUNK):
        chunk = references[start : start + _CHUNK]
        rows = tx.fetch_raw(
            "SELECT reference, id, amount + COALESCE(uncovered, 0), subteam_id FROM transfers "  # noqa: S608
            f"WHERE agency_id = {_placeholders(tx, 1)} AND kind = 'usage' "
            f"AND reference IN ({_placeholders(tx, len(chunk))})",
            (agency_id, *chunk),
        )
        found.update({r[0]: (int(r[1]), int(r[2]), r[3]) for r in rows})
    return found


def _duplicate_or_conflict(
    event: UsageEvent, transfer_id: int | None, cost: int, subteam_id: str | None
) -> EventResult:
    if same_usage(cost, subteam_id, event.amount, event.subteam_id):
        return EventResult(event.reference, EventStatus.DUPLICATE, transfer_id)
    return refused(event.reference, reference_conflict(event.reference))


@dataclass
class _SetBased:
    """Every event decided in order in memory, then written with one statement each."""

    tx: RawTx
    agency_id: str
    wallet: _Wallet
    plan: _Plan
    rows: list[tuple[int, UsageEvent, int]] = field(default_factory=list)

    def run(self) -> list[EventResult]:
        todo = self.plan.todo
        recorded = _recorded(self.tx, self.agency_id, sorted({e.reference for _, e in todo}))
        archived = self._subteams(sorted({e.subteam_id for _, e in todo}))
        balance, held = self.wallet.row.balance, self.wallet.row.held
        made: dict[str, tuple[int, UsageEvent]] = {}  # reference → its event, this batch
        later: list[tuple[int, str]] = []  # duplicates of this batch's events: ids to fill
        results = self.plan.results
        for i, event in todo:
            if event.reference in made:
                first = made[event.reference][1]
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
                made[event.reference] = (i, event)
        ids = self._write(balance) if self.rows else {}
        for i, event, _ in self.rows:
            results[i] = EventResult(event.reference, EventStatus.CREATED, ids[event.reference])
        for i, reference in later:
            results[i] = EventResult(reference, EventStatus.DUPLICATE, ids[reference])
        return self.plan.done()

    def _subteams(self, ids: list[str]) -> dict[str, bool]:
        """This agency's subteams among ``ids``: whether each is archived."""
        found: dict[str, bool] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            rows = self.tx.fetch_raw(
                "SELECT id, archived_at IS NOT NULL FROM subteams WHERE agency_id = "  # noqa: S608
                f"{_placeholders(self.tx, 1)} AND id IN ({_placeholders(self.tx, len(chunk))})",
                (self.agency_id, *chunk),
            )
            found.update({r[0]: bool(r[1]) for r in rows})
        return found

    def _write(self, balance: int) -> dict[str, int]:
        tx, before = self.tx, self.wallet.row
        total = before.balance - balance
        row = tx.execute_raw(_DEBIT[tx.dialect], (-total, wallet_id_for(self.agency_id), -total))
        if row is None or int(row[0]) != balance:
            raise AssertionError("the wallet moved under its lock")  # never: we hold it
        wallet = WalletRow.of(row)
        debit = wallet_id_for(self.agency_id)
        credit = system_account_id(SystemAccount.USAGE_REVENUE, wallet.currency)
        now = bind_time(tx.dialect, tx.now)
        ids: dict[str, int] = {}
        for start in range(0, len(self.rows), _CHUNK):
            chunk = self.rows[start : start + _CHUNK]
            values: list[object] = []
            for _, e, after in chunk:
                values += [self.agency_id, debit, credit, e.amount, "usage", e.reference]
                values += [e.subteam_id, e.description, after, now]
            one = f"({_placeholders(tx, 10)})"
            inserted = tx.fetch_raw(
                "INSERT INTO transfers (agency_id, debit_account_id, credit_account_id, amount, "  # noqa: S608
                "kind, reference, subteam_id, description, wallet_balance_after, created_at) "
                f"VALUES {', '.join([one] * len(chunk))} RETURNING reference, id",
                tuple(values),
            )
            ids.update({r[0]: int(r[1]) for r in inserted})
        ledger.after_change(tx, self.agency_id, wallet, before.available)
        return ids


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
                tx, agency_id, e.subteam_id, e.amount, e.reference, e.description, e.hold_id
            )
        except (RefillError, DuplicateReference, IntegrityError) as exc:
            tx.execute_raw(_UNDO, ())
            tx.execute_raw(_RELEASE, ())
            found = tx.execute_raw(_ONE_RECORDED[tx.dialect], (agency_id, e.reference))
            if found is not None:
                plan.results[i] = _duplicate_or_conflict(e, int(found[0]), int(found[1]), found[2])
            elif isinstance(exc, RefillError):
                plan.results[i] = refused(e.reference, exc)
            else:
                raise  # a reference taken and gone again: the transaction is retried
            continue
        tx.execute_raw(_RELEASE, ())
        plan.results[i] = EventResult(e.reference, EventStatus.CREATED, posted.transfer.id)
    return plan.done()


_BALANCE = prepared("SELECT balance, held, currency FROM accounts WHERE id = {p}")


def _finish(tx: RawTx, agency_id: str, results: list[EventResult]) -> BatchOutcome:
    """The trigger, once, under the wallet's lock (already held), and the balance after."""
    row = tx.execute_raw(_BALANCE[tx.dialect], (wallet_id_for(agency_id),))
    if row is None:
        raise NotFound(f"agency {agency_id} has no wallet")
    balance, held, currency = int(row[0]), int(row[1]), str(row[2])
    if any(r.status is EventStatus.CREATED for r in results):
        trigger_auto_reload(tx, agency_id=agency_id, available=balance - held, currency=currency)
    return BatchOutcome(results, balance, balance - held, currency)
