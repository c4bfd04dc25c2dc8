"""Where auto-reload stands, in one word the owner can act on (``AutoReloadState``), with
what they need to act: when the next retry comes, the last failure, the rail and until
when, and the reload that waits for them.

``status`` (off, active, suspended) stays what it was for the clients that read it; the
state is the first of these that applies:

    off → suspended → action_required → blocked → retrying → active
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select

from refill.db.database import Tx
from refill.db.schema import reload_attempts
from refill.ids import wallet_id_for
from refill.reload.attempt import ReloadAttempt, attempt_from_row
from refill.reload.settings import AutoReloadSettings
from refill.reload.states import ACTIVE_STATUSES, AttemptStatus, SettingsStatus, Trigger


class AutoReloadState(StrEnum):
    OFF = "off"  # the owner switched it off (or never on)
    SUSPENDED = "suspended"  # stopped after declines: choose a working card
    ACTION_REQUIRED = "action_required"  # the bank asks the owner to authenticate
    BLOCKED = "blocked"  # a safety rail holds reloads until a time
    RETRYING = "retrying"  # a charge was declined; the next try waits for its time
    ACTIVE = "active"  # all well


@dataclass(frozen=True, slots=True)
class Failure:
    code: str
    message: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Block:
    rail: str
    until: datetime


@dataclass(frozen=True, slots=True)
class Situation:
    state: AutoReloadState
    next_retry_at: datetime | None = None
    last_failure: Failure | None = None  # since the last success
    blocked: Block | None = None
    waiting_reload_id: str | None = None  # the reload to authenticate or retry now


def state_of(
    settings: AutoReloadSettings,
    active: ReloadAttempt | None,
    last_failure: Failure | None,
    now: datetime,
) -> Situation:
    """The pure rule: which state applies, first match wins."""
    blocked = None
    if settings.blocked_rail and settings.blocked_until and settings.blocked_until > now:
        blocked = Block(settings.blocked_rail, settings.blocked_until)
    base = Situation(AutoReloadState.ACTIVE, last_failure=last_failure, blocked=blocked)
    if not settings.enabled or settings.status is SettingsStatus.OFF:
        return replace(base, state=AutoReloadState.OFF)
    if settings.status is SettingsStatus.SUSPENDED:
        return replace(base, state=AutoReloadState.SUSPENDED)
    if active is not None and active.status is AttemptStatus.REQUIRES_ACTION:
        return replace(base, state=AutoReloadState.ACTION_REQUIRED, waiting_reload_id=active.id)
    if blocked is not None:
        return replace(base, state=AutoReloadState.BLOCKED)
    if (
        active is not None
        and active.status is AttemptStatus.PENDING
        and active.retry_number > 0
        and active.not_before is not None
        and active.not_before > now
    ):
        return replace(
            base,
            state=AutoReloadState.RETRYING,
            next_retry_at=active.not_before,
            waiting_reload_id=active.id,
        )
    return base


def situation(tx: Tx, agency_id: str, settings: AutoReloadSettings) -> Situation:
    """The wallet's state, from its one active auto-reload and its latest finished ones."""
    wallet = wallet_id_for(agency_id)
    auto = (reload_attempts.c.wallet_id == wallet) & (reload_attempts.c.trigger == Trigger.AUTO)
    row = tx.conn.execute(
        select(reload_attempts).where(auto, reload_attempts.c.status.in_(ACTIVE_STATUSES))
    ).first()
    active = attempt_from_row(row._mapping) if row is not None else None
    finished = tx.conn.execute(
        select(reload_attempts)
        .where(
            auto,
            reload_attempts.c.status.in_((AttemptStatus.SUCCEEDED, AttemptStatus.FAILED)),
        )
        .order_by(reload_attempts.c.id.desc())
        .limit(1)
    ).first()
    failure = None
    if finished is not None and finished.status == AttemptStatus.FAILED:
        failure = Failure(
            finished.failure_code or "declined", finished.failure_message, finished.updated_at
        )
    return state_of(settings, active, failure, tx.now)
