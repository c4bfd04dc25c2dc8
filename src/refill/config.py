"""Settings from the environment (REFILL_*), validated once at start-up."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from refill.notify.webhooks import DEFAULT_SCHEDULE
from refill.reload.policy import ReloadPolicy


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REFILL_", extra="ignore")

    database_url: str = "sqlite:///refill.db"
    # sandbox: built-in test cards, no network. stripe: real cards through Stripe.
    gateway: Literal["sandbox", "stripe"] = "sandbox"
    # Stripe's secret key (sk_live_… / sk_test_…); required with REFILL_GATEWAY=stripe.
    stripe_api_key: SecretStr | None = None
    # The endpoint secret (whsec_…) that signs webhooks to /v1/webhooks/stripe.
    stripe_webhook_secret: SecretStr | None = None
    # pk_… for Stripe.js on the billing page (adding a card with a SetupIntent).
    stripe_publishable_key: str | None = None
    # Another API address: only for tests and emulators (localstripe).
    stripe_api_base: str | None = None
    # Where the billing page loads Stripe.js from (the CSP follows it); tests point it at
    # the emulator's mock of Stripe.js.
    stripe_js_url: str = "https://js.stripe.com/v3/"
    stripe_webhook_tolerance_seconds: int = 300
    # How often the poller looks for attempts left behind by a crash.
    poll_interval_seconds: float = 2.0
    # A claim on a charge in flight, renewed every fifth of it while the claimer lives; once
    # it runs out the claimer is taken for dead and the reconciler takes the charge over.
    charge_lease_seconds: float = 10.0
    # A charge still unresolved this long after it started is reported to the operator.
    stuck_after_seconds: float = 1800.0
    reload_threads: int = 4
    # Waits before each retry of a soft decline, in seconds; their number is the limit.
    retry_delays_seconds: tuple[float, ...] = (3600.0, 21600.0, 86400.0)
    do_not_honor_is_hard: bool = True
    default_daily_limit: int = 10
    # Adds the benchmark's bare baseline route (`refill bench` only; never in production).
    bench_routes: bool = False
    # Request bodies larger than this are refused (413) before they are read.
    max_body_bytes: int = 1024 * 1024
    # ... except a usage batch (POST /v1/usage/batch, up to 1,000 events).
    max_batch_body_bytes: int = 8 * 1024 * 1024
    # Concurrent single usage events for one wallet are applied together (group commit).
    # None: on PostgreSQL, where a commit waits for the disk; off on SQLite, whose commits
    # are cheap and whose one writer gains nothing from waiting in Python instead.
    coalesce_usage: bool | None = None
    # How late usage may be reported with its occurred_at, in days.
    usage_backfill_days: int = Field(default=7, ge=0, le=90)

    @property
    def backfill_window(self) -> timedelta:
        return timedelta(days=self.usage_backfill_days)

    # The server's key: webhook secrets and link tokens are derived from it (keyring.py).
    secret_key: SecretStr | None = None
    secret_key_file: Path = Path("refill.secret")
    # E-mail: smtp://[user:pass@]host:port, smtps://…, ?starttls=true. None: not sent.
    smtp_url: SecretStr | None = None
    email_from: str = "Refill <billing@refill.localhost>"
    # Where people reach the billing page: links in e-mail start here.
    public_url: str = "http://127.0.0.1:8000"
    # Outbound webhooks: private addresses are refused unless this is set (tests, dev).
    webhook_allow_private: bool = False
    webhook_retry_schedule_seconds: tuple[float, ...] = DEFAULT_SCHEDULE
    webhook_timeout_seconds: float = 10.0
    notify_threads: int = 4
    # GET /metrics answers loopback clients, and others with `Authorization: Bearer <this>`.
    metrics_token: SecretStr | None = None
    # json: every log line one JSON object (time, level, logger, message, request_id).
    log_format: Literal["text", "json"] = "text"

    @model_validator(mode="after")
    def _gateway_configured(self) -> Settings:
        if self.gateway == "stripe" and not (
            self.stripe_api_key and self.stripe_api_key.get_secret_value().strip()
        ):
            raise ValueError(
                "REFILL_GATEWAY=stripe needs REFILL_STRIPE_API_KEY (Stripe's secret key, "
                "sk_live_… or sk_test_…)"
            )
        return self

    @field_validator("charge_lease_seconds")
    @classmethod
    def _lease(cls, value: float) -> float:
        if not 0.5 <= value <= 300.0:
            raise ValueError("must be between 0.5 and 300 seconds")
        return value

    def reload_policy(self) -> ReloadPolicy:
        return ReloadPolicy(
            retry_delays=tuple(timedelta(seconds=s) for s in self.retry_delays_seconds),
            do_not_honor_is_hard=self.do_not_honor_is_hard,
            default_daily_limit=self.default_daily_limit,
        )
