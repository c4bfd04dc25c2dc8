"""Wires the collaborators together, explicitly, once per process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from refill.clock import Clock, SystemClock
from refill.config import Settings
from refill.db.database import Database
from refill.gateway.base import PaymentGateway
from refill.gateway.sandbox import SandboxGateway
from refill.reload import ReloadPolicy
from refill.worker import BackgroundWorker, ReloadProcessor


@dataclass
class Refill:
    settings: Settings
    db: Database
    gateway: PaymentGateway
    policy: ReloadPolicy
    processor: ReloadProcessor
    worker: BackgroundWorker | None

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.db.dispose()


def build(
    settings: Settings,
    *,
    gateway: PaymentGateway | None = None,
    clock: Clock | None = None,
    in_process_worker: bool = True,
) -> Refill:
    """Build the service. With ``in_process_worker`` attempts run right after commit."""
    clock = clock or SystemClock()
    db = Database(settings.database_url, clock=clock)
    gateway = gateway or SandboxGateway(clock)
    policy = settings.reload_policy()
    processor = ReloadProcessor(
        db,
        gateway,
        policy,
        stale_charging_after=timedelta(seconds=settings.stale_charging_seconds),
        stuck_after=timedelta(seconds=settings.stuck_after_seconds),
    )
    worker = None
    if in_process_worker:
        worker = BackgroundWorker(
            processor, threads=settings.reload_threads, poll_interval=settings.poll_interval_seconds
        )
        db.on_new_reload_attempt = worker.submit
    return Refill(settings, db, gateway, policy, processor, worker)
