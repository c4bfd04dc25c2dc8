"""Auto-reload settings: what the owner chose, its validation, and its status.

``status`` is ``off`` (disabled), ``active`` or ``suspended`` (the engine stopped after a
hard decline or too many soft ones; choosing another card or re-enabling resumes it).
Writes to the settings row, each with its audit entry, are in ``settings_store``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select

from refill.cards import PaymentMethod
from refill.db.database import Tx
from refill.db.rows import record
from refill.db.schema import auto_reload_settings
from refill.errors import InvalidAmount, InvalidSettings, refuse_all
from refill.ids import wallet_id_for
from refill.money import currency_info, format_amount, parse_amount, require_whole_minor_units
from refill.reload.card_list import MAX_CARDS as MAX_CARDS  # the page names the limit
from refill.reload.card_list import ReloadCard, check_card_list, read_cards
from refill.reload.policy import MAX_DAILY_LIMIT, ReloadPolicy
from refill.reload.states import Mode, SettingsStatus


@dataclass(frozen=True, slots=True)
class AutoReloadSettings:
    enabled: bool
    threshold: int | None
    reload_amount: int | None
    # The primary card: the first of ``cards`` (None when the list is empty).
    payment_method_id: str | None
    status: SettingsStatus
    suspended_reason: str | None = None
    mode: Mode = Mode.FIXED
    target_balance: int | None = None
    monthly_cap: int | None = None
    daily_limit: int = 10
    blocked_rail: str | None = None
    blocked_until: datetime | None = None
    # Every card in order, the primary first (``auto_reload_cards``).
    cards: tuple[ReloadCard, ...] = ()

    def blocked_at(self, now: datetime) -> bool:
        return self.blocked_until is not None and self.blocked_until > now

    @property
    def card_list(self) -> tuple[ReloadCard, ...]:
        """``cards``; settings built with a primary alone have it as a list of one."""
        if not self.cards and self.payment_method_id is not None:
            return (ReloadCard(self.payment_method_id),)
        return self.cards

    @property
    def payment_method_ids(self) -> tuple[str, ...]:
        return tuple(card.payment_method_id for card in self.card_list)

    @property
    def chargeable(self) -> tuple[str, ...]:
        """The cards a reload tries, in order: every card that is not skipped."""
        return tuple(card.payment_method_id for card in self.card_list if not card.skipped)

    def card_after(self, payment_method_id: str) -> str | None:
        """The next card to try after a decline of ``payment_method_id`` in the same reload:
        the first chargeable card listed after it (None: the reload has tried them all, or
        the card is no longer listed)."""
        ids = self.payment_method_ids
        if payment_method_id not in ids:
            return None
        later = self.card_list[ids.index(payment_method_id) + 1 :]
        return next((c.payment_method_id for c in later if not c.skipped), None)


NO_SETTINGS = AutoReloadSettings(False, None, None, None, SettingsStatus.OFF)

_UNSET: Any = object()
UNSET = _UNSET


@dataclass(frozen=True, slots=True)
class SettingsChange:
    """What the owner sends; a field left ``UNSET`` keeps its saved value."""

    enabled: bool | None = None
    threshold: int | None = _UNSET
    reload_amount: int | None = _UNSET
    payment_method_id: str | None = _UNSET
    # The whole ordered list; ``payment_method_id`` is a shorthand for a list of one.
    payment_method_ids: tuple[str, ...] = _UNSET
    mode: Mode = _UNSET
    target_balance: int | None = _UNSET
    monthly_cap: int | None = _UNSET
    daily_limit: int = _UNSET


AMOUNT_FIELDS = ("threshold", "reload_amount", "target_balance", "monthly_cap")


def change_from_text(given: Mapping[str, Any]) -> SettingsChange:
    """The one parser of an owner's settings, from the API's JSON and the page's form
    alike: amounts as decimal strings (None clears an optional one), the rest as they
    are; a field not in ``given`` keeps its saved value."""
    values: dict[str, Any] = {}
    wrong: list[InvalidAmount] = []
    for name, value in given.items():
        if name in AMOUNT_FIELDS and value is not None:
            try:
                value = parse_amount(value, field=name)
            except InvalidAmount as exc:
                wrong.append(exc)
                continue
        elif name == "mode" and value is not None:
            value = Mode(value)
        elif name == "payment_method_ids":
            value = () if value is None else tuple(value)
        values[name] = value
    if wrong:
        refuse_all(wrong)  # every wrong amount at once
    if "payment_method_id" in values and "payment_method_ids" in values:
        raise InvalidSettings(
            "give payment_method_ids (the ordered list) or payment_method_id (a list of one), "
            "not both",
            field="payment_method_ids",
        )
    return SettingsChange(**values)


_SETTINGS = select(auto_reload_settings).where(
    auto_reload_settings.c.wallet_id == bindparam("wallet_id")
)


def get_settings(
    tx: Tx, agency_id: str, *, policy: ReloadPolicy | None = None
) -> AutoReloadSettings:
    params = {"wallet_id": wallet_id_for(agency_id)}
    row = tx.conn.execute(_SETTINGS, params).one_or_none()
    if row is None:
        defaults = policy or ReloadPolicy()
        return replace(NO_SETTINGS, daily_limit=defaults.default_daily_limit)
    m = row._mapping
    cards = read_cards(tx, params["wallet_id"])
    return record(
        AutoReloadSettings,
        m,
        status=SettingsStatus(m["status"]),
        mode=Mode(m["mode"]),
        cards=cards,
    )


def _check_amount(currency: str, value: int | None, name: str, *, low: int = 1, high: int) -> None:
    """An owner's amount: whole minor units, within ``low``..``high`` of the currency."""
    if value is None:
        return
    if value <= 0 and low > 0:
        raise InvalidSettings(f"{name} must be more than zero", field=name)
    require_whole_minor_units(value, currency, name, error=InvalidSettings)
    if not low <= value <= high:
        raise InvalidSettings(
            f"{name} must be between {format_amount(low, currency)} and "
            f"{format_amount(high, currency)} {currency}",
            field=name,
        )


# Changing any of these re-checks that a reload lifts the wallet above its threshold.
CASCADE_FIELDS = ("threshold", "reload_amount", "target_balance", "mode")


def validate_settings(
    policy: ReloadPolicy,
    currency: str,
    settings: AutoReloadSettings,
    payment_method: PaymentMethod | None,
    now: datetime,
    *,
    previous: AutoReloadSettings | None = None,
    backups: Sequence[PaymentMethod] = (),
) -> None:
    """The rules an owner's settings must meet; raises InvalidSettings naming the field.

    Every number is bounded per currency. Reloads cannot cascade: a fixed reload must be
    more than the threshold and a target above it, so every successful auto-reload lifts
    the wallet above its threshold. That rule is checked when one of ``CASCADE_FIELDS``
    changes from ``previous``, so an owner with older settings can still swap a card.
    """
    bounds = currency_info(currency)
    check_card_list(settings.payment_method_ids)
    if settings.mode not in tuple(Mode):
        raise InvalidSettings("mode must be 'fixed' or 'target'", field="mode")
    if settings.threshold is not None:
        if settings.threshold < 0:
            raise InvalidSettings("threshold must be zero or more", field="threshold")
        _check_amount(currency, settings.threshold, "threshold", low=0, high=bounds.max_threshold)
    _check_amount(
        currency,
        settings.reload_amount,
        "reload_amount",
        low=bounds.min_reload,
        high=bounds.max_reload,
    )
    _check_amount(
        currency,
        settings.target_balance,
        "target_balance",
        high=bounds.max_threshold + bounds.max_reload,
    )
    _check_amount(currency, settings.monthly_cap, "monthly_cap", high=bounds.max_monthly_cap)
    if (
        not isinstance(settings.daily_limit, int)
        or not 1 <= settings.daily_limit <= MAX_DAILY_LIMIT
    ):
        raise InvalidSettings(
            f"daily_limit must be between 1 and {MAX_DAILY_LIMIT} reloads", field="daily_limit"
        )
    changed = previous is None or any(
        getattr(settings, name) != getattr(previous, name) for name in CASCADE_FIELDS
    )
    if changed and settings.threshold is not None:
        _check_no_cascade(currency, settings, settings.threshold)
    if not settings.enabled:
        return
    missing = missing_fields(settings, payment_method)
    if missing:
        refuse_all(missing)  # every missing field at once
    if payment_method is not None and payment_method.is_expired(now):
        raise InvalidSettings(
            f"the {payment_method.brand} card ending {payment_method.last4} expired "
            f"{payment_method.exp_month:02d}/{payment_method.exp_year}; save a new card",
            field="payment_method_id",
        )
    listed_now = previous is None or previous.payment_method_ids != settings.payment_method_ids
    for backup in backups if listed_now else ():
        if backup.is_expired(now):
            raise InvalidSettings(
                f"the backup {backup.brand} card ending {backup.last4} expired "
                f"{backup.exp_month:02d}/{backup.exp_year}; save a new card or leave it out",
                field="payment_method_ids",
            )


def missing_fields(
    settings: AutoReloadSettings, payment_method: PaymentMethod | None
) -> list[InvalidSettings]:
    """What auto-reload cannot run without, each named."""
    return [
        InvalidSettings(message, field=name)
        for name, absent, message in (
            ("threshold", settings.threshold is None, "set a threshold to enable auto-reload"),
            (
                "reload_amount",
                settings.mode == Mode.FIXED and settings.reload_amount is None,
                "set a reload_amount to enable auto-reload",
            ),
            (
                "target_balance",
                settings.mode == Mode.TARGET and settings.target_balance is None,
                "set a target_balance to use target mode",
            ),
            (
                "payment_method_id",
                payment_method is None,
                "choose a saved payment method to enable auto-reload",
            ),
        )
        if absent
    ]


def _check_no_cascade(currency: str, settings: AutoReloadSettings, threshold: int) -> None:
    if settings.mode == Mode.TARGET:
        if settings.target_balance is not None and settings.target_balance <= threshold:
            raise InvalidSettings(
                "target_balance must be above the threshold, or every reload would leave the "
                "wallet still below it",
                field="target_balance",
            )
    elif settings.reload_amount is not None and settings.reload_amount <= threshold:
        raise InvalidSettings(
            f"reload_amount must be more than the threshold "
            f"({format_amount(threshold, currency)} {currency}), or a reload could leave the "
            "wallet below it and start the next one at once",
            field="reload_amount",
        )


def merge_change(current: AutoReloadSettings, change: SettingsChange) -> AutoReloadSettings:
    """The settings after ``change``, with the status it leads to.

    A suspension ends only when the owner re-enables auto-reload or chooses another card;
    any other edit keeps it suspended. Rails and suspension reasons start afresh.
    """

    def pick(new: Any, old: Any) -> Any:
        return old if new is UNSET else new

    enabled = current.enabled if change.enabled is None else change.enabled
    named = named_cards(change)
    # Naming cards clears their skips; so does switching auto-reload on again from off or
    # suspended (the owner asks to try again); `enabled: true` while active changes nothing.
    if named is not None:
        cards = tuple(ReloadCard(pm) for pm in named)
    elif change.enabled is True and current.status is not SettingsStatus.ACTIVE:
        cards = tuple(ReloadCard(card.payment_method_id) for card in current.card_list)
    else:
        cards = current.card_list
    payment_method_id = cards[0].payment_method_id if cards else None
    resumes = change.enabled is True or (named is not None and cards != current.card_list)
    if not enabled:
        status = SettingsStatus.OFF
    elif current.status == SettingsStatus.SUSPENDED and not resumes:
        status = SettingsStatus.SUSPENDED
    else:
        status = SettingsStatus.ACTIVE
    return AutoReloadSettings(
        enabled=enabled,
        threshold=pick(change.threshold, current.threshold),
        reload_amount=pick(change.reload_amount, current.reload_amount),
        payment_method_id=payment_method_id,
        status=status,
        suspended_reason=current.suspended_reason if status == SettingsStatus.SUSPENDED else None,
        mode=pick(change.mode, current.mode),
        target_balance=pick(change.target_balance, current.target_balance),
        monthly_cap=pick(change.monthly_cap, current.monthly_cap),
        daily_limit=pick(change.daily_limit, current.daily_limit),
        blocked_rail=None,
        blocked_until=None,
        cards=cards,
    )


def named_cards(change: SettingsChange) -> tuple[str, ...] | None:
    """The ordered list of cards ``change`` names (None: it keeps the saved list)."""
    ids: Any = change.payment_method_ids
    one: Any = change.payment_method_id
    if ids is not UNSET:
        return tuple(ids)
    if one is not UNSET:
        return () if one is None else (one,)
    return None
