"""Clients of live calls under load, for the holds concurrency proof
(tests/integration/test_holds_concurrency.py): each loops a bounded number of times,
authorizing a call with a hold and then settling, releasing or abandoning it.

A client never asserts: whatever surprises it (an answer the contract does not allow, an
exception) is written to its log's ``anomalies``, which the test asserts is empty, so the
same code runs on threads and in spawned processes (whose logs come back through a queue).

What a client does with a hold it was given (its ``intent``):

- ``settle``: usage naming the hold, at once; sometimes less than the hold, sometimes more
  (on a limited subteam the part past its limit is recorded uncovered). Sometimes repeated with the
  same reference (the first result must come back), sometimes settled again under another
  reference (refused: a hold settles once), sometimes released afterwards (no change).
- ``release``: released at once (sometimes twice: the second changes nothing).
- ``abandon``: left to expire (a one-second hold the sweepers end).
- ``late``: a one-second hold settled after the client's loop: settled if still active,
  else recorded as plain usage (which the subteam's rules may refuse).
"""

from __future__ import annotations

import multiprocessing
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from refill import services
from refill.bootstrap import build
from refill.config import Settings
from refill.db.database import Database
from refill.errors import InsufficientCredits
from refill.gateway.sandbox import SandboxGateway
from refill.services import holds, settling
from refill.services.spend import SubteamLimitReached, SubteamPaused
from tests.support.doubles import RecordingGateway

SETTLE, RELEASE, ABANDON, LATE = "settle", "release", "abandon", "late"
INTENTS = (SETTLE, RELEASE, ABANDON, LATE)
WEIGHTS = (5, 2, 2, 1)
# Holds meant to be settled or released outlive the run; abandoned ones expire at once.
LONG_HOLD_SECONDS = 600
SHORT_HOLD_SECONDS = 1


@dataclass(frozen=True, slots=True)
class Target:
    """A subteam clients place calls for."""

    agency_id: str
    subteam_id: str
    limited: bool


@dataclass(frozen=True, slots=True)
class Placed:
    hold_id: str
    agency_id: str
    subteam_id: str
    amount: int
    intent: str


@dataclass(frozen=True, slots=True)
class Settled:
    """A usage naming a hold that was recorded (``created``) by its first request."""

    hold_id: str
    agency_id: str
    subteam_id: str
    reference: str
    amount: int
    transfer_id: int
    late: bool


@dataclass
class ClientLog:
    placed: list[Placed] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    settled: list[Settled] = field(default_factory=list)
    above_hold: int = 0  # settles asking for more than the hold
    repeats: int = 0  # repeats answered with the first transfer
    second_settles_refused: int = 0  # a settled hold named again under another reference
    released: list[str] = field(default_factory=list)
    # Late usage of an expired hold that the subteam's rules or the wallet refused:
    # (agency_id, reference, error code).
    late_refused: list[tuple[str, str, str]] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)

    def merge(self, other: ClientLog) -> None:
        self.placed += other.placed
        self.refused.update(other.refused)
        self.settled += other.settled
        self.above_hold += other.above_hold
        self.repeats += other.repeats
        self.second_settles_refused += other.second_settles_refused
        self.released += other.released
        self.late_refused += other.late_refused
        self.anomalies += other.anomalies


def place(
    db: Database, log: ClientLog, target: Target, cost: int, intent: str, seconds: int
) -> Placed | None:
    """Authorize a call with a hold; the hold placed, or None (refused, reason counted)."""
    try:
        auth = services.authorize_call(
            db,
            agency_id=target.agency_id,
            subteam_id=target.subteam_id,
            expected_cost=cost,
            hold=True,
            hold_expires_in_seconds=seconds,
        )
    except Exception as exc:
        log.anomalies.append(f"authorize {target.subteam_id} {cost}: {exc!r}")
        return None
    if not auth.allowed:
        log.refused[auth.reason] += 1
        if auth.hold is not None:
            log.anomalies.append(f"refused ({auth.reason}) with a hold {auth.hold.id}")
        return None
    hold = auth.hold
    if hold is None or hold.amount != cost or hold.status != "active":
        log.anomalies.append(f"allowed with hold {hold!r} for a cost of {cost}")
        return None
    if auth.available < 0:
        log.anomalies.append(f"hold {hold.id} left {auth.available} available")
    placed = Placed(hold.id, target.agency_id, target.subteam_id, cost, intent)
    log.placed.append(placed)
    return placed


def settle(
    db: Database,
    log: ClientLog,
    placed: Placed,
    *,
    amount: int,
    reference: str,
    late: bool = False,
) -> int | None:
    """Usage naming the hold; the transfer's id, or None (refused, logged)."""
    try:
        transfer, created = services.record_usage(
            db,
            agency_id=placed.agency_id,
            subteam_id=placed.subteam_id,
            amount=amount,
            reference=reference,
            hold_id=placed.hold_id,
        )
    except (InsufficientCredits, SubteamLimitReached, SubteamPaused) as exc:
        if late:  # the hold expired: plain usage, which the rules may refuse
            log.late_refused.append((placed.agency_id, reference, exc.code))
        else:
            log.anomalies.append(f"settling active hold {placed.hold_id} refused: {exc!r}")
        return None
    except Exception as exc:
        log.anomalies.append(f"settling hold {placed.hold_id} ({reference}): {exc!r}")
        return None
    if not created:
        log.anomalies.append(f"first settle of {reference} answered as a repeat")
    if transfer.amount + (transfer.uncovered or 0) != amount:
        log.anomalies.append(f"{reference}: asked {amount}, recorded {transfer!r}")
    log.settled.append(
        Settled(
            placed.hold_id,
            placed.agency_id,
            placed.subteam_id,
            reference,
            amount,
            transfer.id,
            late,
        )
    )
    return transfer.id


def repeat_settle(
    db: Database, log: ClientLog, placed: Placed, *, amount: int, reference: str, first: int
) -> None:
    """The same usage again: answered with the first transfer, created=False."""
    try:
        transfer, created = services.record_usage(
            db,
            agency_id=placed.agency_id,
            subteam_id=placed.subteam_id,
            amount=amount,
            reference=reference,
            hold_id=placed.hold_id,
        )
    except Exception as exc:
        log.anomalies.append(f"repeating {reference}: {exc!r}")
        return
    if created or transfer.id != first:
        log.anomalies.append(f"repeat of {reference}: {transfer.id} created={created}, not {first}")
        return
    log.repeats += 1


def settle_again(db: Database, log: ClientLog, placed: Placed, *, reference: str) -> None:
    """A settled hold named by another usage: refused, a hold is settled once."""
    try:
        transfer, _ = services.record_usage(
            db,
            agency_id=placed.agency_id,
            subteam_id=placed.subteam_id,
            amount=placed.amount,
            reference=reference,
            hold_id=placed.hold_id,
        )
    except settling.HoldSettled:
        log.second_settles_refused += 1
        return
    except Exception as exc:
        log.anomalies.append(f"settling {placed.hold_id} again: {exc!r}")
        return
    log.anomalies.append(f"hold {placed.hold_id} settled twice (transfer {transfer.id})")


def release(db: Database, log: ClientLog, placed: Placed, *, expect: str) -> None:
    try:
        hold = holds.release_hold(
            db, agency_id=placed.agency_id, hold_id=placed.hold_id, subteam_id=placed.subteam_id
        )
    except Exception as exc:
        log.anomalies.append(f"releasing {placed.hold_id}: {exc!r}")
        return
    if hold.status != expect:
        log.anomalies.append(f"released {placed.hold_id}: {hold.status}, expected {expect}")
    elif expect == "released" and placed.hold_id not in log.released:
        log.released.append(placed.hold_id)


def run_client(
    db: Database, targets: list[Target], *, name: str, iterations: int, seed: int
) -> ClientLog:
    rng = random.Random(seed)
    log = ClientLog()
    late: list[tuple[Placed, str]] = []
    for i in range(iterations):
        target = rng.choice(targets)
        intent = rng.choices(INTENTS, weights=WEIGHTS)[0]
        cost = rng.randint(10, 300) * 10_000 + rng.randint(0, 9_999)
        seconds = SHORT_HOLD_SECONDS if intent in (ABANDON, LATE) else LONG_HOLD_SECONDS
        placed = place(db, log, target, cost, intent, seconds)
        if placed is None:
            continue
        reference = f"{name}-{i}"
        if intent == SETTLE:
            roll = rng.random()
            if roll < 0.35:
                amount = rng.randint(1, cost)
            elif roll < 0.7:
                amount = cost
            else:
                amount = cost + rng.randint(1, 2 * cost)
                log.above_hold += 1
            first = settle(db, log, placed, amount=amount, reference=reference)
            if first is None:
                continue
            if rng.random() < 0.25:
                repeat_settle(db, log, placed, amount=amount, reference=reference, first=first)
            if rng.random() < 0.1:
                settle_again(db, log, placed, reference=reference + "-again")
            if rng.random() < 0.1:
                release(db, log, placed, expect="settled")
        elif intent == RELEASE:
            release(db, log, placed, expect="released")
            if rng.random() < 0.2:
                release(db, log, placed, expect="released")
        elif intent == LATE:
            late.append((placed, reference))
    for placed, reference in late:
        settle(db, log, placed, amount=placed.amount, reference=reference, late=True)
    return log


def run_clients(
    db: Database, targets: list[Target], *, name: str, clients: int, iterations: int, seed: int
) -> ClientLog:
    """``clients`` threads of ``run_client`` on one service; their logs merged."""
    logs: list[ClientLog] = []
    lock = threading.Lock()

    def one(k: int) -> None:
        try:
            log = run_client(
                db, targets, name=f"{name}t{k}", iterations=iterations, seed=seed * 100 + k
            )
        except BaseException as exc:
            log = ClientLog(anomalies=[f"client {name}t{k} died: {exc!r}"])
        with lock:
            logs.append(log)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    merged = ClientLog()
    for log in logs:
        merged.merge(log)
    return merged


@dataclass
class ProcessResult:
    log: ClientLog
    succeeded_keys: list[str]


def process_main(
    url: str,
    targets: list[Target],
    name: str,
    clients: int,
    iterations: int,
    seed: int,
    out: multiprocessing.Queue[Any],
) -> None:
    """A spawned process: its own service (engine, reload worker and poller), its own
    client threads; its log and the charges its gateway made go back through ``out``."""
    try:
        gateway = RecordingGateway(SandboxGateway())
        service = build(Settings(database_url=url, poll_interval_seconds=0.1), gateway=gateway)
        assert service.worker is not None
        service.worker.start()
        try:
            log = run_clients(
                service.db, targets, name=name, clients=clients, iterations=iterations, seed=seed
            )
        finally:
            service.close()  # graceful: charges in flight record their outcome
        out.put(ProcessResult(log, sorted(gateway.succeeded_keys())))
    except BaseException as exc:
        out.put(ProcessResult(ClientLog(anomalies=[f"process {name} died: {exc!r}"]), []))
