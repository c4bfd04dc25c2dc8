"""An owner's settings change, as one step of the engine: validated, compared with what is
saved (no change, no writes), stored with its audit entry, and the trigger evaluated."""

from __future__ import annotations

from dataclasses import dataclass

from refill import ledger
from refill.cards import get_payment_method
from refill.db.database import Tx
from refill.notify import reloads as notices
from refill.reload import settings as reload_settings
from refill.reload import settings_store
from refill.reload.machine import cancel_waiting_retries
from refill.reload.policy import ReloadPolicy
from refill.reload.settings import AutoReloadSettings, SettingsChange
from refill.reload.trigger import agency_currency, trigger_auto_reload

# What an owner's change can alter; a change that leaves all of them (and the status they
# lead to) as saved is no change at all.
_COMPARED = (
    "enabled",
    "status",
    "threshold",
    "reload_amount",
    "payment_method_id",
    "cards",
    "mode",
    "target_balance",
    "monthly_cap",
    "daily_limit",
)


@dataclass(frozen=True, slots=True)
class SettingsPlan:
    current: AutoReloadSettings
    merged: AutoReloadSettings

    @property
    def unchanged(self) -> bool:
        return all(getattr(self.current, f) == getattr(self.merged, f) for f in _COMPARED)


def plan_settings_change(
    tx: Tx, policy: ReloadPolicy, *, agency_id: str, currency: str, change: SettingsChange
) -> SettingsPlan:
    """The settings ``change`` leads to, validated; writes nothing (InvalidSettings)."""
    current = reload_settings.get_settings(tx, agency_id, policy=policy)
    merged = reload_settings.merge_change(current, change)
    # Every listed card must be a saved card of this agency (404 names the first that is not).
    cards = [get_payment_method(tx, agency_id, pm) for pm in merged.payment_method_ids]
    reload_settings.validate_settings(
        policy,
        currency,
        merged,
        cards[0] if cards else None,
        tx.now,
        previous=current,
        backups=cards[1:],
    )
    return SettingsPlan(current, merged)


def change_settings(
    tx: Tx,
    policy: ReloadPolicy,
    *,
    agency_id: str,
    currency: str,
    change: SettingsChange,
    actor: str,
) -> SettingsPlan:
    """Validate and store the owner's settings; reload at once if already below threshold.

    A change that changes nothing writes nothing. Any other change cancels a waiting retry
    (made under the old settings) and lifts a rail's block, then evaluates the trigger. An
    attempt waiting for 3-D Secure must have been canceled at the gateway before (see
    ``settlement.request_cancel``): it is never canceled here, in the database only.
    """
    available = ledger.lock_wallet(tx, agency_id)
    plan = plan_settings_change(tx, policy, agency_id=agency_id, currency=currency, change=change)
    if plan.unchanged:
        return plan
    cancel_waiting_retries(tx, agency_id)
    before, after = settings_store.save(
        tx, agency_id, actor=actor, before=plan.current, after=plan.merged, currency=currency
    )
    notices.settings_updated(tx, agency_id=agency_id, actor=actor, before=before, after=after)
    trigger_auto_reload(tx, agency_id=agency_id, available=available, currency=currency)
    return plan


def reevaluate_after_block(tx: Tx, agency_id: str) -> str | None:
    """A rail has lifted: clear the block and run the trigger rule again."""
    available = ledger.lock_wallet(tx, agency_id)
    settings = reload_settings.get_settings(tx, agency_id)
    if settings.blocked_until is None or settings.blocked_until > tx.now:
        return None
    settings_store.set_block(tx, agency_id, None, None)
    currency = agency_currency(tx, agency_id)
    return trigger_auto_reload(tx, agency_id=agency_id, available=available, currency=currency)
