"""Wires the collaborators together, explicitly, once per process."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from refill import metrics
from refill.clock import Clock, SystemClock
from refill.config import Settings
from refill.db.database import AfterCommit, Database
from refill.gateway.base import PaymentGateway, WebhookVerifier
from refill.gateway.sandbox import SandboxGateway
from refill.gateway.stripe import StripeGateway
from refill.keyring import Keyring, keyring_from
from refill.notify.mail import Mailer
from refill.notify.netguard import Resolver, Rules, system_resolver
from refill.notify.runner import NotificationRunner
from refill.notify.webhooks import DeliveryConfig
from refill.reload.policy import ReloadPolicy
from refill.reload.trigger import NewReloadAttempt
from refill.services.coalesce import DirectUsage, UsageCoalescer
from refill.worker import BackgroundWorker, ReloadProcessor

log = logging.getLogger("refill")


@dataclass
class Refill:
    settings: Settings
    db: Database
    gateway: PaymentGateway
    policy: ReloadPolicy
    processor: ReloadProcessor
    worker: BackgroundWorker | None
    notifier: NotificationRunner
    keyring: Keyring
    # Records single usage events: applied together per wallet (REFILL_COALESCE_USAGE), or
    # one by one.
    usage: DirectUsage
    # Verifies /v1/webhooks/stripe; None when Stripe is not the gateway.
    webhooks: WebhookVerifier | None = None

    @property
    def url_rules(self) -> Rules:
        """What a webhook endpoint's URL must be (registration and delivery)."""
        config = self.notifier.deliveries
        return Rules(config.resolver, config.allow_private)

    @property
    def mailer(self) -> Mailer:
        return self.notifier.mailer

    def process_new_attempts_inline(self) -> None:
        """Run each new reload attempt in the committing thread, right after its commit
        (tests, and one-shot commands): the instant path without a worker thread."""
        self.db.after_commit.listen(NewReloadAttempt, self.processor.on_new_attempt)

    def start(self) -> None:
        """The background work of this process: reloads and notifications."""
        if self.worker is not None:
            self.worker.start()
            self.notifier.start()

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.notifier.stop()
        self.processor.close()
        self.db.dispose()


def gateway_from_settings(settings: Settings, clock: Clock) -> SandboxGateway | StripeGateway:
    if settings.gateway == "stripe":
        if settings.stripe_api_key is None:  # Settings refuses this; mypy cannot know it
            raise ValueError("REFILL_GATEWAY=stripe needs REFILL_STRIPE_API_KEY")
        secret = settings.stripe_webhook_secret
        if secret is None:
            log.warning(
                "REFILL_STRIPE_WEBHOOK_SECRET is not set: /v1/webhooks/stripe refuses events, "
                "and reloads that need the owner's authentication are not finished by Stripe"
            )
        return StripeGateway(
            settings.stripe_api_key.get_secret_value(),
            publishable_key=settings.stripe_publishable_key,
            webhook_secret=secret.get_secret_value() if secret else None,
            webhook_tolerance_seconds=settings.stripe_webhook_tolerance_seconds,
            api_base=settings.stripe_api_base,
        )
    return SandboxGateway(clock)


def build(
    settings: Settings,
    *,
    gateway: PaymentGateway | None = None,
    webhooks: WebhookVerifier | None = None,
    clock: Clock | None = None,
    in_process_worker: bool = True,
    resolver: Resolver | None = None,
) -> Refill:
    """Build the service. With ``in_process_worker`` attempts run right after commit."""
    clock = clock or SystemClock()
    after_commit = AfterCommit()
    db = Database(settings.database_url, clock=clock, after_commit=after_commit)
    after_commit.listen(metrics.ReloadOutcome, metrics.on_reload_outcome)
    after_commit.listen(metrics.EmailOutcome, metrics.on_email_outcome)
    if gateway is None:
        configured = gateway_from_settings(settings, clock)
        gateway = configured
        if webhooks is None and isinstance(configured, StripeGateway):
            webhooks = configured
    policy = settings.reload_policy()
    processor = ReloadProcessor(
        db,
        gateway,
        policy,
        lease=timedelta(seconds=settings.charge_lease_seconds),
        stuck_after=timedelta(seconds=settings.stuck_after_seconds),
    )
    keyring = keyring_from(
        settings.secret_key.get_secret_value() if settings.secret_key else None,
        settings.secret_key_file,
    )
    notifier = NotificationRunner(
        db,
        deliveries=DeliveryConfig(
            keyring=keyring,
            resolver=resolver or system_resolver,
            allow_private=settings.webhook_allow_private,
            schedule=settings.webhook_retry_schedule_seconds,
            timeout=settings.webhook_timeout_seconds,
        ),
        mailer=Mailer(
            smtp_url=settings.smtp_url.get_secret_value() if settings.smtp_url else None,
            sender=settings.email_from,
            public_url=settings.public_url,
            keyring=keyring,
        ),
        threads=settings.notify_threads,
        poll_interval=settings.poll_interval_seconds,
    )
    worker = None
    if in_process_worker:
        worker = BackgroundWorker(
            processor, threads=settings.reload_threads, poll_interval=settings.poll_interval_seconds
        )
        after_commit.listen(NewReloadAttempt, worker.on_new_attempt)
    coalesce = settings.coalesce_usage
    if coalesce is None:
        coalesce = db.dialect == "postgresql"
    usage = (UsageCoalescer if coalesce else DirectUsage)(db, backfill=settings.backfill_window)
    return Refill(
        settings, db, gateway, policy, processor, worker, notifier, keyring, usage, webhooks
    )
