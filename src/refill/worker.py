"""Runs reload attempts: claim, charge, record; and finds the work a crash left behind.

No transaction spans the gateway call: the claim commits (pending → charging), the charge
runs, and the outcome is recorded in a new transaction. A process that dies in between
leaves the attempt ``charging``; the reconciler takes it over after a grace period and asks
the gateway again with the same idempotency key, which answers with the first outcome.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import partial

from refill import reload
from refill.db.database import Database
from refill.gateway.base import ChargeRequest, ChargeResult, ChargeStatus, PaymentGateway
from refill.ids import wallet_id_for
from refill.money import Money, to_minor_units
from refill.reload import ClaimedAttempt, ReloadAttempt, ReloadPolicy

log = logging.getLogger("refill.worker")


class ReloadProcessor:
    def __init__(
        self,
        db: Database,
        gateway: PaymentGateway,
        policy: ReloadPolicy,
        *,
        pending_grace: timedelta = timedelta(seconds=5),
        stale_charging_after: timedelta = timedelta(seconds=60),
        stuck_after: timedelta = timedelta(minutes=30),
    ) -> None:
        self.db = db
        self.gateway = gateway
        self.policy = policy
        # Fresh attempts belong to the instant path; the poller waits this long before
        # treating one as left behind.
        self.pending_grace = pending_grace
        self.stale_charging_after = stale_charging_after
        self.stuck_after = stuck_after
        self._reported_stuck: set[str] = set()

    def process(self, attempt_id: str) -> ReloadAttempt | None:
        """Run one pending attempt to its outcome. None if someone else has it."""
        claimed = self.db.write(lambda tx: reload.claim_attempt(tx, self.policy, attempt_id))
        if claimed is None:
            return None
        return self._charge_and_record(claimed)

    @staticmethod
    def charge_request(claimed: ClaimedAttempt) -> ChargeRequest:
        attempt = claimed.attempt
        return ChargeRequest(
            token=claimed.token,
            amount_minor=to_minor_units(attempt.amount, attempt.currency),
            currency=attempt.currency,
            idempotency_key=attempt.idempotency_key,
            metadata={
                "refill_agency_id": attempt.agency_id,
                "refill_wallet_id": wallet_id_for(attempt.agency_id),
                "refill_reload_id": attempt.id,
                "refill_trigger": attempt.trigger,
            },
            customer=claimed.customer,
        )

    def _charge_and_record(
        self, claimed: ClaimedAttempt, *, reconcile: bool = False
    ) -> ReloadAttempt:
        attempt = claimed.attempt
        request = self.charge_request(claimed)
        try:
            result = None
            if reconcile:
                # The first answer was lost: ask before charging again.
                result = self.gateway.find_charge(request, attempt.gateway_payment_id)
            if result is None:
                result = self.gateway.charge(request)
        except Exception as exc:  # a gateway bug must not strand the attempt half-done
            log.warning("charge for %s raised %s; outcome unknown", attempt.id, type(exc).__name__)
            result = ChargeResult(ChargeStatus.UNKNOWN, failure_message=type(exc).__name__)
        outcome = self.db.write(
            lambda tx: reload.record_charge_outcome(tx, self.policy, attempt.id, result)
        )
        amount = Money(attempt.amount, attempt.currency)
        if outcome.status == "succeeded":
            log.info(
                "%s reload %s succeeded: +%s credited (agency %s)",
                attempt.trigger,
                attempt.id,
                amount,
                attempt.agency_id,
            )
        elif outcome.status == "charging":
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
        return outcome

    def run_due_work(self, *, limit: int = 50) -> int:
        """One pass of the poller and the reconciler. Returns how many attempts it ran."""
        now = self.db.clock.now()
        pending = self.db.read(
            lambda tx: reload.due_pending_attempts(
                tx, created_before=now - self.pending_grace, limit=limit
            )
        )
        done = 0
        for attempt_id in pending:
            if self.process(attempt_id) is not None:
                done += 1
        stale_before = now - self.stale_charging_after
        stale = self.db.read(
            lambda tx: reload.stale_charging_attempts(tx, claimed_before=stale_before, limit=limit)
        )
        for attempt_id in stale:
            claimed = self.db.write(
                partial(
                    reload.reclaim_stale_attempt, attempt_id=attempt_id, stale_before=stale_before
                )
            )
            if claimed is not None:
                log.info("reconciling reload %s left charging", attempt_id)
                self._charge_and_record(claimed, reconcile=True)
                done += 1
        lifted = self.db.read(lambda tx: reload.wallets_with_lifted_blocks(tx, now, limit))
        for agency_id in lifted:
            self.db.write(
                partial(reload.reevaluate_after_block, policy=self.policy, agency_id=agency_id)
            )
        self.report_stuck(now)
        return done

    def report_stuck(self, now: datetime) -> list[ReloadAttempt]:
        """Charges unresolved for longer than ``stuck_after``: logged for an operator once
        each (the poller runs every few seconds), and listed by ``refill reloads stuck``."""
        stuck = self.db.read(
            lambda tx: reload.stuck_attempts(tx, charging_since=now - self.stuck_after)
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
