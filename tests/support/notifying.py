"""A service that tells: e-mail to a real SMTP server (``Mailbox``), webhooks delivered on
the notification pool with short retry delays, and reloads processed right after commit."""

from __future__ import annotations

from refill.bootstrap import Refill, build
from refill.clock import Clock
from refill.config import Settings
from refill.gateway.sandbox import SandboxGateway
from refill.notify.netguard import Resolver
from tests.support.doubles import RecordingGateway

# Short waits between webhook retries, so the tests see several tries.
QUICK_RETRIES = (0.2, 0.4, 0.6, 0.8, 1.0)


def notifying_refill(
    db_url: str,
    *,
    smtp_url: str | None,
    clock: Clock | None = None,
    resolver: Resolver | None = None,
    allow_private: bool = True,
    schedule: tuple[float, ...] = QUICK_RETRIES,
    timeout: float = 2.0,
    listen: bool = True,
    public_url: str = "https://billing.example.com",
    poll: bool = False,
) -> Refill:
    settings = Settings(
        database_url=db_url,
        smtp_url=smtp_url,
        public_url=public_url,
        webhook_allow_private=allow_private,
        webhook_retry_schedule_seconds=schedule,
        webhook_timeout_seconds=timeout,
        poll_interval_seconds=0.1,
    )
    gateway = RecordingGateway(SandboxGateway(clock))
    refill = build(
        settings, gateway=gateway, clock=clock, in_process_worker=False, resolver=resolver
    )
    refill.process_new_attempts_inline()
    if poll:
        refill.notifier.start()  # the instant path, and a poller for retries
    elif listen:
        refill.notifier.listen()  # the instant path: work starts right after each commit
    return refill
