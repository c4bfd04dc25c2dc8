"""The notification pool: dispatches events, delivers webhooks and sends e-mail on threads
of its own (a slow receiver never delays a reload), at once after the commit that made the
work and again from a poller that finds whatever a crash or a restart left behind. It also
runs the periodic jobs: card expiry notices, and forgetting events older than 90 days.
"""

from __future__ import annotations

import logging
import smtplib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from datetime import timedelta
from functools import partial

from jinja2 import TemplateError

from refill.db.database import Database
from refill.notify import dispatch, expiry, mail, webhooks
from refill.notify.dispatch import ClaimedDelivery, NewDelivery, NewEmail
from refill.notify.events import NewEvent

log = logging.getLogger("refill.notify")

KEEP_EVENTS = timedelta(days=90)


class NotificationRunner:
    def __init__(
        self,
        db: Database,
        *,
        deliveries: webhooks.DeliveryConfig,
        mailer: mail.Mailer,
        threads: int = 4,
        poll_interval: float = 2.0,
    ) -> None:
        self.db = db
        self.deliveries = deliveries
        self.mailer = mailer
        self.poll_interval = poll_interval
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="refill-notify")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()
        self._poller: threading.Thread | None = None
        self._last_daily = 0.0

    # --- instant path ------------------------------------------------------------------

    def listen(self) -> None:
        """Start each piece of work right after the commit that made it."""
        if self.mailer.smtp is None:
            log.warning(
                "REFILL_SMTP_URL is not set: e-mail stays in the outbox (refill emails list)"
            )
        after_commit = self.db.after_commit
        after_commit.listen(NewEvent, lambda e: self._start(self.dispatch, e.event_id))
        after_commit.listen(NewDelivery, lambda d: self._start(self.deliver, d.delivery_id))
        after_commit.listen(ClaimedDelivery, self._send_claimed)
        after_commit.listen(NewEmail, lambda m: self._start(self.send, m.email_id))

    def _start(self, job: Callable[[str], bool], item: str) -> None:
        self._submit(job, item)

    def _send_claimed(self, made: ClaimedDelivery) -> None:
        claimed = made.claimed
        self._submit(
            lambda _: webhooks.send(self.db, self.deliveries, claimed), claimed.delivery_id
        )

    def _submit(self, job: Callable[[str], bool], item: str) -> Future[bool] | None:
        """Run ``job(item)`` on the pool, unless it is already queued or running here."""
        with self._lock:
            if self._stop.is_set() or item in self._in_flight:
                return None
            self._in_flight.add(item)
        try:
            return self._pool.submit(self._logged, job, item)
        except RuntimeError:  # the pool shut down meanwhile
            self._done(item)
            return None

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until the work started here is done (tests; a graceful stop); False if some
        is still running after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._in_flight:
                    return True
            time.sleep(0.01)
        return False

    def _done(self, item: str) -> None:
        with self._lock:
            self._in_flight.discard(item)

    def _logged(self, job: Callable[[str], bool], item: str) -> bool:
        try:
            return job(item)
        except Exception:
            log.exception("notification work on %s failed; the poller will retry", item)
            return False
        finally:
            self._done(item)

    # --- one piece of work -------------------------------------------------------------

    def dispatch(self, event_id: str) -> bool:
        lease = self.deliveries.lease
        return self.db.write(lambda tx: dispatch.dispatch(tx, event_id, lease))

    def deliver(self, delivery_id: str) -> bool:
        return webhooks.deliver(self.db, self.deliveries, delivery_id)

    def send(self, email_id: str) -> bool:
        """Send one e-mail; without SMTP it stays in the outbox (in development its text
        is logged once, when it is made)."""
        if self.mailer.smtp is None:
            if self.mailer.development:
                self._log_text(email_id)
            return False
        try:
            outgoing = self.db.write(lambda tx: mail.prepare(tx, self.mailer, email_id))
        except TemplateError as exc:  # a bug, not the mail server: counted, so it ends
            log.exception("e-mail %s could not be written", email_id)
            self.db.write(partial(mail.record_failure, email_id=email_id, error=repr(exc)))
            return False
        if outgoing is None:
            return False
        if not outgoing.message.to:
            self.db.write(partial(mail.record_failure, email_id=email_id, error="no one to tell"))
            return False
        try:
            self.mailer.send(outgoing.message)
        except (OSError, smtplib.SMTPException) as exc:
            self.db.write(partial(mail.record_failure, email_id=email_id, error=repr(exc)))
            return False
        self.db.write(partial(mail.record_sent, email_id=email_id))
        return True

    def _log_text(self, email_id: str) -> None:
        outgoing = self.db.read(lambda tx: mail.prepare(tx, self.mailer, email_id))
        if outgoing is not None:
            message = outgoing.message
            log.info(
                "e-mail not sent (no REFILL_SMTP_URL), to %s: %s\n%s",
                ", ".join(message.to) or "nobody",
                message.subject,
                message.text,
            )

    # --- the poller --------------------------------------------------------------------

    def run_due_work(self, *, limit: int = 100, wait: bool = False) -> int:
        """Hand whatever is due (left by a crash, a restart, or waiting for its retry) to
        the pool; with ``wait``, until it is done. How many pieces of work were started."""
        if wait:
            self.drain()  # what the instant path started counts as due work too
        futures: list[Future[bool] | None] = []
        for event_id in self.db.read(partial(dispatch.undispatched, limit=limit)):
            futures.append(self._submit(self.dispatch, event_id))
        if wait:  # dispatching makes deliveries and e-mail due: find them in this pass
            wait_for(f for f in futures if f is not None)
        for delivery_id in self.db.read(partial(webhooks.due_deliveries, limit=limit)):
            futures.append(self._submit(self.deliver, delivery_id))
        if self.mailer.smtp is not None:
            for email_id in self.db.read(partial(mail.due_emails, limit=limit)):
                futures.append(self._submit(self.send, email_id))
        started = [f for f in futures if f is not None]
        if wait:
            wait_for(started)
            self.drain()
        return len(started)

    def run_daily_jobs(self) -> None:
        self.db.write(expiry.notify_expiring_cards)
        self.db.write(partial(expiry.forget_old_events, keep=KEEP_EVENTS))

    def start(self) -> None:
        self.listen()
        self._poller = threading.Thread(target=self._poll, name="refill-notify-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.run_due_work()
                if time.monotonic() - self._last_daily > 3600:
                    self._last_daily = time.monotonic()
                    self.run_daily_jobs()
            except Exception:
                log.exception("notification poller pass failed")

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)
