"""Group commit for the shared wallet: concurrent single usage events for one wallet are
applied together, in one transaction, each with exactly the answer it would have had alone.

A parent wallet every subteam draws from is one hot row: each usage transaction holds its
lock until it commits, so the wallet runs at one commit per event however many clients
send. Here the first request for a wallet leads: it takes what is queued for that wallet
(itself, and up to ``MAX_GROUP`` events that arrived while the previous group ran) and
applies them with the batch's per-event isolation (``usage_batch``), then hands the lead
to the first request that arrived meanwhile. Nobody waits for a timer: a lone request is
applied at once, on the single path's own two statements; a group forms only while a
transaction is already running, which is when waiting was unavoidable anyway.

Each request is answered after the commit that recorded it, with its own result: created
(201), duplicate (200, the first transfer), or the refusal the single endpoint raises. A
crash before the commit answers no one, so no acknowledged event is lost. Per process: N
server processes coalesce N groups at a time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from refill import ledger
from refill.db.database import Database
from refill.ledger import Transfer, TransferKind
from refill.services.usage import BACKFILL_WINDOW, checked_moment, checked_reference, record_usage
from refill.services.usage_batch import EventResult, EventStatus, UsageEvent, record_usage_batch

MAX_GROUP = 100


@dataclass(eq=False)
class _Request:
    event: UsageEvent
    woken: threading.Event | None = None  # made only for a request that has to wait
    lead: bool = False  # woken to lead the next group
    answer: tuple[Transfer, bool] | None = None
    error: BaseException | None = None


@dataclass(eq=False)
class _Wallet:
    lock: threading.Lock = field(default_factory=threading.Lock)
    queue: list[_Request] = field(default_factory=list)
    busy: bool = False  # a group of this wallet is being applied


class DirectUsage:
    """The single path with the same ``record`` as the coalescer (coalescing off)."""

    def __init__(self, db: Database, *, backfill: timedelta = BACKFILL_WINDOW) -> None:
        self.db = db
        self.backfill = backfill

    def record(
        self,
        *,
        agency_id: str,
        subteam_id: str,
        amount: int,
        reference: str,
        description: str | None = None,
        hold_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> tuple[Transfer, bool]:
        return record_usage(
            self.db,
            agency_id=agency_id,
            subteam_id=subteam_id,
            amount=amount,
            reference=reference,
            description=description,
            hold_id=hold_id,
            occurred_at=occurred_at,
            backfill=self.backfill,
        )


class UsageCoalescer(DirectUsage):
    def __init__(self, db: Database, *, backfill: timedelta = BACKFILL_WINDOW) -> None:
        super().__init__(db, backfill=backfill)
        self._wallets: dict[str, _Wallet] = {}
        self._lock = threading.Lock()
        self.groups = 0  # groups of more than one event applied (for the benchmark's notes)

    def record(
        self,
        *,
        agency_id: str,
        subteam_id: str,
        amount: int,
        reference: str,
        description: str | None = None,
        hold_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> tuple[Transfer, bool]:
        """What ``usage.record_usage`` answers, applied with whatever else is queued for
        the wallet: the transfer and whether it was created now, or the refusal raised."""
        reference = checked_reference(amount, reference)  # 422s before anything is queued
        occurred_at = checked_moment(occurred_at, self.db.clock.now(), self.backfill)
        me = _Request(UsageEvent(subteam_id, amount, reference, description, hold_id, occurred_at))
        wallet = self._wallet(agency_id)
        with wallet.lock:
            wallet.queue.append(me)
            leads = not wallet.busy
            wallet.busy = True
            if not leads:
                me.woken = threading.Event()
        if me.woken is not None:
            me.woken.wait()
        if leads or me.lead:
            self._lead(agency_id, wallet)
        if me.error is not None:
            raise me.error
        if me.answer is None:
            raise RuntimeError("a coalesced usage event was left without an answer")
        return me.answer

    def _wallet(self, agency_id: str) -> _Wallet:
        wallet = self._wallets.get(agency_id)
        if wallet is None:
            with self._lock:
                wallet = self._wallets.setdefault(agency_id, _Wallet())
        return wallet

    def _lead(self, agency_id: str, wallet: _Wallet) -> None:
        """Apply the queued group (the leader first in it), answer each, pass the lead on."""
        with wallet.lock:
            group = wallet.queue[:MAX_GROUP]
            del wallet.queue[:MAX_GROUP]
        try:
            if len(group) == 1:
                self._alone(agency_id, group[0])
            else:
                self._together(agency_id, group)
        except BaseException as exc:  # the database failed them all: each request says so
            for request in group:
                if request.answer is None and request.error is None:
                    request.error = exc
        finally:
            with wallet.lock:
                successor = wallet.queue[0] if wallet.queue else None
                if successor is not None:
                    successor.lead = True
                else:
                    wallet.busy = False
            for request in group:
                if request.woken is not None:
                    request.woken.set()
            if successor is not None and successor.woken is not None:
                successor.woken.set()

    def _alone(self, agency_id: str, request: _Request) -> None:
        """One event: the single path's own two statements, no batch machinery."""
        e = request.event
        try:
            request.answer = DirectUsage.record(
                self,
                agency_id=agency_id,
                subteam_id=e.subteam_id,
                amount=e.amount,
                reference=e.reference,
                description=e.description,
                hold_id=e.hold_id,
                occurred_at=e.occurred_at,
            )
        except Exception as exc:
            request.error = exc

    def _together(self, agency_id: str, group: list[_Request]) -> None:
        outcome = record_usage_batch(
            self.db,
            agency_id=agency_id,
            events=[r.event for r in group],
            backfill=self.backfill,
            with_transfers=True,
        )
        self.groups += 1
        for request, result in zip(group, outcome.results, strict=True):
            self._answer(agency_id, request, result)

    def _answer(self, agency_id: str, request: _Request, result: EventResult) -> None:
        if result.status is EventStatus.REFUSED:
            request.error = result.error
        elif result.status is EventStatus.CREATED and result.transfer is not None:
            request.answer = (result.transfer, True)
        else:  # a duplicate: the first transfer, as the single path returns it
            original = self.db.read(
                lambda tx: ledger.find_transfer(
                    tx, agency_id=agency_id, kind=TransferKind.USAGE, reference=result.reference
                )
            )
            if original is None:
                raise RuntimeError(f"usage {result.reference!r} is a duplicate of nothing")
            request.answer = (original, False)
