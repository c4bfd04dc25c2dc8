"""Runs reload attempts: claim, charge, record; and finds the work a crash left behind.

No transaction spans the gateway call: the claim commits (pending → charging), the charge
runs, and the outcome is recorded in a new transaction. The claimer holds a lease on the
attempt, renewed every few seconds by a thread of its own while the call runs. A process
that dies in between leaves the attempt ``charging`` with a lease that runs out; the
reconciler then takes it over, asks the gateway what became of the charge, and sends it
again under the same idempotency key (which answers with the first outcome) only while the
gateway still remembers that key.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial

from refill import alerts
from refill.db.database import Database, Tx
from refill.gateway.base import ChargeResult, ChargeStatus, PaymentGateway
from refill.money import Money
from refill.reload import chain, changes, machine, queries
from refill.reload.attempt import ClaimedAttempt, ReloadAttempt, charge_request, claimed, must_load
from refill.reload.policy import ReloadPolicy
from refill.reload.states import AttemptStatus
from refill.reload.trigger import NewReloadAttempt
from refill.services.holds import expire_due_holds

log = logging.getLogger("refill.worker")


# Stripe remembers an idempotency key for 24 hours: a charge is re-sent under its key only
# within this much of its first sending, when the gateway cannot say what became of it.
RESEND_WINDOW = timedelta(hours=23)
# A reload waiting for 3-D Secure is looked up at the gateway once it has waited this long,
# and again as often: the owner may have authenticated elsewhere and no webhook come.
WAITING_CHECK_EVERY = timedelta(minutes=5)


class LeaseKeeper:
    """Renews the leases of this process's charges in flight, on a thread of its own, so a
    gateway call that blocks (Stripe: up to 3 tries of 30 s) never lets its lease lapse
    while the process lives; once it dies, the leases run out within ``lease``."""

    def __init__(self, db: Database, lease: timedelta) -> None:
        self.db = db
        self.lease = lease
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def holding(self, attempt_id: str) -> Iterator[None]:
        with self._lock:
            self._held.add(attempt_id)
            if self._thread is None and self.lease > timedelta(0):
                self._thread = threading.Thread(
                    target=self._renew_loop, name="refill-lease", daemon=True
                )
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._held.discard(attempt_id)

    def _renew_loop(self) -> None:
        every = self.lease.total_seconds() / 5
        while not self._stop.wait(every):
            with self._lock:
                held = sorted(self._held)
            if not held:
                continue
            try:
                self.db.write(partial(machine.renew_leases, attempt_ids=held, lease=self.lease))
            except Exception:
                log.exception("renewing the leases of %d charges failed", len(held))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


class ReloadProcessor:
    def __init__(
        self,
        db: Database,
        gateway: PaymentGateway,
        policy: ReloadPolicy,
        *,
        pending_grace: timedelta = timedelta(seconds=5),
        lease: timedelta = machine.DEFAULT_LEASE,
        stuck_after: timedelta = timedelta(minutes=30),
    ) -> None:
        self.db = db
        self.gateway = gateway
        self.policy = policy
        # Fresh attempts belong to the instant path; the poller waits this long before
        # treating one as left behind.
        self.pending_grace = pending_grace
        self.leases = LeaseKeeper(db, lease)
        self.stuck_after = stuck_after
        self._reported_stuck: set[str] = set()
        self._waiting_checked: dict[str, datetime] = {}

    @property
    def lease(self) -> timedelta:
        """How long this processor's claims hold without renewal."""
        return self.leases.lease

    @lease.setter
    def lease(self, value: timedelta) -> None:
        self.leases.lease = value

    def close(self) -> None:
        self.leases.stop()

    def on_new_attempt(self, announced: NewReloadAttempt) -> None:
        """Instant processing, in the committing thread (tests; the CLI's own commands)."""
        self.process(announced.attempt_id)

    def process(self, attempt_id: str) -> ReloadAttempt | None:
        """Run one pending attempt to its outcome. None if someone else has it."""
        claimed = self.db.write(
            lambda tx: machine.claim_attempt(tx, self.policy, attempt_id, lease=self.lease)
        )
        if claimed is None:
            return None
        return self._charge_and_record(claimed)

    charge_request = staticmethod(charge_request)

    def refresh_waiting(self, attempt_id: str) -> ReloadAttempt:
        """Ask the gateway what became of a reload waiting for 3-D Secure and record it now
        (the owner came back from authenticating, or it has waited long): the webhook
        secret is optional, so a webhook alone could leave a payment uncredited."""
        waiting = self.db.read(lambda tx: claimed(tx, must_load(tx, attempt_id)))
        attempt = waiting.attempt
        if attempt.status is not AttemptStatus.REQUIRES_ACTION:
            return attempt
        found = self.gateway.find_charge(self.charge_request(waiting), attempt.gateway_payment_id)
        if found is None or found.status in (ChargeStatus.REQUIRES_ACTION, ChargeStatus.UNKNOWN):
            return attempt
        outcome = self.db.write(
            lambda tx: machine.record_charge_outcome(tx, self.policy, attempt_id, found)
        )
        self._log_outcome(attempt, outcome)
        return outcome

    def _refresh_long_waiting(self, now: datetime, limit: int) -> None:
        waiting = self.db.read(
            lambda tx: queries.waiting_for_authentication(
                tx, updated_before=now - WAITING_CHECK_EVERY, limit=limit
            )
        )
        checked = self._waiting_checked
        self._waiting_checked = {k: v for k, v in checked.items() if k in waiting}
        for attempt_id in waiting:
            last = checked.get(attempt_id)
            if last is not None and now - last < WAITING_CHECK_EVERY:
                continue
            self._waiting_checked[attempt_id] = now
            try:
                self.refresh_waiting(attempt_id)
            except Exception:
                log.exception("looking up reload %s, waiting for 3-D Secure, failed", attempt_id)

    def _ask_gateway(self, claimed: ClaimedAttempt, *, reconcile: bool) -> ChargeResult:
        attempt = claimed.attempt
        request = self.charge_request(claimed)
        if reconcile:
            # The claimer died: ask before charging again.
            found = self.gateway.find_charge(request, attempt.gateway_payment_id)
            if found is not None and found.status is not ChargeStatus.UNKNOWN:
                return found
            if found is not None and not self._may_resend(attempt):
                # The gateway cannot be asked, and may have forgotten the key: a re-send
                # could charge twice. A person must look.
                self.db.write(partial(self._alert_unresolvable, attempt=attempt))
                return found
            # No record at the gateway, or it cannot be asked while it still knows the
            # key: sending the same request again answers with the first outcome.
        return self.gateway.charge(request)

    def _may_resend(self, attempt: ReloadAttempt) -> bool:
        sent = attempt.first_sent_at or attempt.created_at
        return self.db.clock.now() - sent < RESEND_WINDOW

    @staticmethod
    def _alert_unresolvable(tx: Tx, attempt: ReloadAttempt) -> None:
        sent = attempt.first_sent_at or attempt.created_at
        alerts.raise_alert(
            tx,
            kind="charge_unresolvable",
            subject=attempt.id,
            agency_id=attempt.agency_id,
            message=f"reload {attempt.id} ({Money(attempt.amount, attempt.currency)}) was "
            f"first sent to the gateway at {sent:%Y-%m-%d %H:%M} UTC and the gateway "
            "cannot be asked what became of it; it is not sent "
            "again (its idempotency key may be forgotten). Look for the payment with metadata "
            f"refill_reload_id={attempt.id}, then `refill reloads settle {attempt.id} --paid` "
            "or `--not-paid`.",
        )

    def _charge_and_record(
        self, claimed: ClaimedAttempt, *, reconcile: bool = False
    ) -> ReloadAttempt:
        attempt = claimed.attempt
        with self.leases.holding(attempt.id):
            try:
                result = self._ask_gateway(claimed, reconcile=reconcile)
            except Exception as exc:  # a gateway bug must not strand the attempt half-done
                log.warning(
                    "charge for %s raised %s; outcome unknown", attempt.id, type(exc).__name__
                )
                result = ChargeResult(ChargeStatus.UNKNOWN, failure_message=type(exc).__name__)
            if result.status is ChargeStatus.REQUIRES_ACTION and attempt.is_auto:
                result = self._backup_instead(claimed, result)
            outcome = self.db.write(
                lambda tx: machine.record_charge_outcome(tx, self.policy, attempt.id, result)
            )
        self._log_outcome(attempt, outcome)
        return outcome

    def _backup_instead(self, claimed: ClaimedAttempt, result: ChargeResult) -> ChargeResult:
        """The bank asks for the owner's authentication, which an auto-reload cannot give
        while the owner is away: with a backup card listed, the payment is canceled at the
        gateway and, once the cancel is confirmed, recorded as a soft decline, so the chain
        charges the backup. Paid meanwhile: the payment stands. No confirmation: it waits
        for the owner as it would without a backup (never two payments that could both
        succeed)."""
        if not self.db.read(lambda tx: chain.backup_waits(tx, claimed.attempt)):
            return result
        canceled = self.gateway.cancel_charge(self.charge_request(claimed), result.payment_id)
        if canceled.status is ChargeStatus.SUCCEEDED:
            return canceled
        if canceled.status is not ChargeStatus.CANCELED:
            return result
        return ChargeResult(
            ChargeStatus.DECLINED,
            result.payment_id,
            failure_code=chain.AUTHENTICATION_SKIPPED,
            failure_message="The bank asked for the owner's authentication (3-D Secure); "
            "the payment was canceled and the next card charged instead.",
        )

    @staticmethod
    def _log_outcome(attempt: ReloadAttempt, outcome: ReloadAttempt) -> None:
        amount = Money(attempt.amount, attempt.currency)
        if outcome.status is AttemptStatus.SUCCEEDED:
            log.info(
                "%s reload %s succeeded: +%s credited (agency %s)",
                attempt.trigger,
                attempt.id,
                amount,
                attempt.agency_id,
            )
        elif outcome.status is AttemptStatus.CHARGING:
            log.warning(
                "%s reload %s: gateway outcome unknown, will reconcile", attempt.trigger, attempt.id
            )
        else:
            log.warning(
                "%s reload %s %s: %s (%s) for %s (agency %s)",
                attempt.trigger,
                attempt.id,
                outcome.status,
                outcome.failure_code,
                outcome.failure_message,
                amount,
                attempt.agency_id,
            )

    def run_due_work(self, *, limit: int = 50) -> int:
        """One pass of the poller and the reconciler. Returns how many attempts it ran."""
        now = self.db.clock.now()
        pending = self.db.read(
            lambda tx: queries.due_pending_attempts(
                tx, created_before=now - self.pending_grace, limit=limit
            )
        )
        done = 0
        for attempt_id in pending:
            if self.process(attempt_id) is not None:
                done += 1
        stale = self.db.read(lambda tx: queries.stale_charging_attempts(tx, limit=limit))
        for attempt_id in stale:
            claimed = self.db.write(
                partial(machine.reclaim_stale_attempt, attempt_id=attempt_id, lease=self.lease)
            )
            if claimed is not None:
                log.info("reconciling reload %s: its claimer's lease ran out", attempt_id)
                self._charge_and_record(claimed, reconcile=True)
                done += 1
        lifted = self.db.read(lambda tx: queries.wallets_with_lifted_blocks(tx, now, limit))
        for agency_id in lifted:
            self.db.write(partial(changes.reevaluate_after_block, agency_id=agency_id))
        self._refresh_long_waiting(now, limit)
        # Live calls' holds past their time give their credits back.
        expire_due_holds(self.db, limit=limit)
        self.report_stuck(now)
        return done

    def report_stuck(self, now: datetime) -> list[ReloadAttempt]:
        """Charges unresolved for longer than ``stuck_after``: logged for an operator once
        each (the poller runs every few seconds), and listed by ``refill reloads stuck``."""
        stuck = self.db.read(
            lambda tx: queries.stuck_attempts(tx, charging_since=now - self.stuck_after)
        )
        for attempt in stuck:
            if attempt.id in self._reported_stuck:
                continue
            log.error(
                "reload %s (agency %s, %s) has been charging since %s: the gateway has not "
                "given an outcome; check it at the gateway",
                attempt.id,
                attempt.agency_id,
                Money(attempt.amount, attempt.currency),
                attempt.created_at.isoformat(),
            )
        self._reported_stuck = {attempt.id for attempt in stuck}
        return stuck


class BackgroundWorker:
    """Instant processing after commit plus a poller, on threads of this process."""

    def __init__(
        self, processor: ReloadProcessor, *, threads: int = 4, poll_interval: float = 2.0
    ) -> None:
        self.processor = processor
        self.poll_interval = poll_interval
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="refill-reload")
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def on_new_attempt(self, announced: NewReloadAttempt) -> None:
        """Instant processing: right after the commit that created it, on a worker thread."""
        self.submit(announced.attempt_id)

    def submit(self, attempt_id: str) -> None:
        if self._stop.is_set():
            return  # shutting down: the poller of the next run picks it up
        self._executor.submit(self._process_logged, attempt_id)

    def _process_logged(self, attempt_id: str) -> None:
        try:
            self.processor.process(attempt_id)
        except Exception:
            log.exception("processing reload %s failed; the poller will retry", attempt_id)

    def start(self, *, poll: bool = True) -> None:
        if poll:
            self._poller = threading.Thread(
                target=self._poll_loop, name="refill-poller", daemon=True
            )
            self._poller.start()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.processor.run_due_work()
            except Exception:
                log.exception("poller pass failed")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking work and let charges in flight finish recording their outcome."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout)
        self._executor.shutdown(wait=True, cancel_futures=True)
