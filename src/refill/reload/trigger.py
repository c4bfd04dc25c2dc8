"""The trigger rule: should this wallet reload now, for how much, or which rail stops it?

One pure function, ``decide``, of the settings, the available credits, whether an
auto-reload is already active, what the rails have counted, and the time. Everything that
asks the question calls it: the claim of an attempt (``machine.claim_attempt``), and the
explanations and backtests built on it. Its first half, ``wants_reload``, is also written
as SQL (``trigger_auto_reload``), so that the debit that crosses the threshold enqueues the
reload in its own statement; a property test proves the two agree on both engines.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, select

from refill.db.database import SqlTx, Tx, bind_time, prepared
from refill.db.schema import ACTIVE_AUTO_RELOAD, agencies, reload_attempts
from refill.ids import new_id, wallet_id_for
from refill.money import currency_info, format_amount
from refill.reload.policy import ReloadPolicy, local_day, local_month
from refill.reload.settings import AutoReloadSettings
from refill.reload.states import (
    SPENDING_STATUSES,
    DecisionAction,
    Mode,
    Rail,
    SettingsStatus,
    Trigger,
    idempotency_key_for,
)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the trigger rule says for a wallet right now."""

    action: DecisionAction
    amount: int = 0
    rail: Rail | None = None
    until: datetime | None = None
    message: str | None = None


NOTHING = Decision(DecisionAction.NONE)


@dataclass(frozen=True, slots=True)
class RailCounts:
    """What the safety rails have counted, in the agency's own day and month."""

    reloads_today: int
    spent_this_month: int
    day_ends: datetime
    month_ends: datetime


def wants_reload(settings: AutoReloadSettings, available: int, now: datetime) -> bool:
    """Below an active threshold, with a card, and no rail's block holding: the half of the
    rule the hot path evaluates (as SQL) in the debit's own transaction."""
    return (
        settings.status == SettingsStatus.ACTIVE
        and settings.threshold is not None
        and settings.payment_method_id is not None
        and available < settings.threshold
        and not settings.blocked_at(now)
    )


def reload_amount(
    policy: ReloadPolicy, settings: AutoReloadSettings, available: int, currency: str
) -> int | None:
    if settings.mode == Mode.TARGET and settings.target_balance is not None:
        return policy.target_charge(settings.target_balance, available, currency)
    return settings.reload_amount


def decide(
    policy: ReloadPolicy,
    settings: AutoReloadSettings,
    *,
    available: int,
    currency: str,
    active_attempt: bool,
    rails: RailCounts,
    now: datetime,
) -> Decision:
    """The whole rule, pure: nothing, a reload of how much, or blocked by which rail."""
    if active_attempt or not wants_reload(settings, available, now):
        return NOTHING
    amount = reload_amount(policy, settings, available, currency)
    if amount is None:
        return NOTHING
    if rails.reloads_today >= settings.daily_limit:
        return Decision(
            DecisionAction.BLOCKED,
            amount,
            Rail.DAILY_LIMIT,
            rails.day_ends,
            f"{rails.reloads_today} auto-reloads today reached the daily limit of "
            f"{settings.daily_limit}",
        )
    cap = settings.monthly_cap
    if cap is not None and rails.spent_this_month + amount > cap:
        return Decision(
            DecisionAction.BLOCKED,
            amount,
            Rail.MONTHLY_CAP,
            rails.month_ends,
            f"reloading {format_amount(amount, currency)} would pass this month's cap of "
            f"{format_amount(cap, currency)} {currency} "
            f"({format_amount(rails.spent_this_month, currency)} already reloaded)",
        )
    return Decision(DecisionAction.RELOAD, amount)


# --- what the rule reads -----------------------------------------------------------------

_AGENCY_ZONE = select(agencies.c.timezone).where(agencies.c.id == bindparam("agency_id"))
_SPENT_SINCE = select(func.count(), func.coalesce(func.sum(reload_attempts.c.amount), 0)).where(
    reload_attempts.c.wallet_id == bindparam("wallet_id"),
    reload_attempts.c.trigger == Trigger.AUTO,
    reload_attempts.c.status.in_(SPENDING_STATUSES),
    reload_attempts.c.created_at >= bindparam("since"),
    reload_attempts.c.id != bindparam("exclude"),
)


def agency_zone(tx: Tx, agency_id: str) -> ZoneInfo:
    name = tx.conn.execute(_AGENCY_ZONE, {"agency_id": agency_id}).scalar()
    return ZoneInfo(name or "UTC")


_AGENCY_CURRENCY = select(agencies.c.currency).where(agencies.c.id == bindparam("agency_id"))


def agency_currency(tx: Tx, agency_id: str) -> str:
    return str(tx.conn.execute(_AGENCY_CURRENCY, {"agency_id": agency_id}).scalar_one())


def count_rails(tx: Tx, agency_id: str, *, exclude_attempt_id: str | None = None) -> RailCounts:
    """Auto-reloads that spend money today and this month, in the agency's time zone
    (``exclude_attempt_id``: the attempt being decided on)."""
    zone = agency_zone(tx, agency_id)
    day_start, day_end = local_day(tx.now, zone)
    month_start, month_end = local_month(tx.now, zone)
    params = {"wallet_id": wallet_id_for(agency_id), "exclude": exclude_attempt_id or ""}
    today, _ = tx.conn.execute(_SPENT_SINCE, {**params, "since": day_start}).one()
    _, month = tx.conn.execute(_SPENT_SINCE, {**params, "since": month_start}).one()
    return RailCounts(int(today), int(month), day_end, month_end)


# --- the hot path's half, in SQL ---------------------------------------------------------

_ENQUEUE = prepared(
    # Constant SQL: the only piece joined in is the partial index's literal predicate.
    "INSERT INTO reload_attempts (id, agency_id, wallet_id, trigger, status, amount, "  # noqa: S608
    "currency, payment_method_id, idempotency_key, created_at, updated_at) "
    "SELECT {p}, {p}, s.wallet_id, 'auto', 'pending', COALESCE(s.reload_amount, {p}), "
    # The first card that is not skipped (the claim checks the card again).
    "{p}, COALESCE((SELECT c.payment_method_id FROM auto_reload_cards c "
    "WHERE c.wallet_id = s.wallet_id AND c.skipped_at IS NULL ORDER BY c.position LIMIT 1), "
    "s.payment_method_id), {p}, {p}, {p} "
    "FROM auto_reload_settings s "
    "WHERE s.wallet_id = {p} AND s.status = 'active' AND s.payment_method_id IS NOT NULL "
    "AND s.threshold > {p} AND (s.blocked_until IS NULL OR s.blocked_until <= {p}) "
    # The partial unique index decides: a second active auto-reload is never written.
    "ON CONFLICT (wallet_id) WHERE " + ACTIVE_AUTO_RELOAD.text + " DO NOTHING "
    "RETURNING id"
)


@dataclass(frozen=True, slots=True)
class NewReloadAttempt:
    """Announced after the commit that created it: the processor runs it at once."""

    attempt_id: str


def trigger_auto_reload(tx: SqlTx, *, agency_id: str, available: int, currency: str) -> str | None:
    """Enqueue a pending auto-reload when ``wants_reload`` and none is active; its id.

    Called inside the transaction that changed the balance (or the settings), after the
    wallet row is locked: one statement, so the debit that crosses the threshold starts the
    reload in its own commit. Whether and how much to charge is then decided when the
    attempt is claimed, by ``decide``, under the same wallet lock.
    """
    attempt_id = new_id("rld")
    now = bind_time(tx.dialect, tx.now)
    row = tx.execute_raw(
        _ENQUEUE[tx.dialect],
        (
            attempt_id,
            agency_id,
            currency_info(currency).min_reload,  # a placeholder: the claim sets the amount
            currency,
            idempotency_key_for(attempt_id),
            now,
            now,
            wallet_id_for(agency_id),
            available,
            now,
        ),
    )
    if row is None:
        return None
    tx.announce(NewReloadAttempt(attempt_id))
    return attempt_id
