"""The backtest before saving: the wallet's real usage of the last days replayed against
proposed auto-reload settings (``reload.replay``, decided by ``trigger.decide``), beside
the same days replayed with the settings that were really in effect, read from the audit
log's history of settings changes. Nothing is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from refill.db.database import Database, Tx, bind_time, prepared
from refill.db.schema import accounts, audit_log, transfers
from refill.errors import ValidationFailed, refuse_all
from refill.ids import wallet_id_for
from refill.money import parse_amount
from refill.reload import settings as reload_settings
from refill.reload.policy import ReloadPolicy
from refill.reload.replay import Movement, Replay, SettingsFrom, replay
from refill.reload.settings import NO_SETTINGS, AutoReloadSettings, SettingsChange
from refill.reload.states import Mode, SettingsStatus
from refill.reload.trigger import agency_zone

MAX_DAYS = 90
NOTE = (
    "Replays the usage Refill recorded: calls refused at the time were not recorded, so "
    "they are not replayed. Each reload is assumed to succeed at once; credits held by "
    "live calls are not part of the history."
)
# The card a preview charges: any, since replayed charges succeed.
_ANY_CARD = "preview"


@dataclass(frozen=True, slots=True)
class Preview:
    days: int
    start: datetime
    end: datetime
    settings: AutoReloadSettings
    proposed: Replay
    as_was: Replay
    # The wallet's balance at ``start``, where both replays begin.
    opening_balance: int = 0
    note: str = NOTE

    @property
    def from_opening(self) -> bool:
        """The replay starts when the wallet opened: it is younger than ``days``."""
        return self.end - self.start < timedelta(days=self.days)


def check_days(days: int | None) -> int:
    if days is None:
        return 30
    if not 1 <= days <= MAX_DAYS:
        raise ValidationFailed(f"days must be 1 to {MAX_DAYS}", field="days")
    return days


def preview(
    db: Database,
    policy: ReloadPolicy,
    *,
    agency_id: str,
    currency: str,
    change: SettingsChange,
    days: int | None = None,
) -> Preview:
    """Replay the last ``days`` (default 30) against the saved settings with ``change``
    applied (validated as saving them would be: 422 on what could not be saved), as if
    they had been in effect, switched on, from the start."""
    span = check_days(days)

    def work(tx: Tx) -> Preview:
        current = reload_settings.get_settings(tx, agency_id, policy=policy)
        merged = reload_settings.merge_change(current, change)
        # As saving would check them, switched on, with no card needed (replayed charges
        # succeed): bounds, no cascade, and what auto-reload cannot run without.
        off = replace(merged, enabled=False)
        reload_settings.validate_settings(policy, currency, off, None, tx.now, previous=current)
        missing = [
            e
            for e in reload_settings.missing_fields(merged, None)
            if e.extra.get("field") != "payment_method_id"
        ]
        if missing:
            refuse_all(missing)
        proposed = replace(
            merged,
            enabled=True,
            status=SettingsStatus.ACTIVE,
            payment_method_id=merged.payment_method_id or _ANY_CARD,
            blocked_rail=None,
            blocked_until=None,
        )
        end = tx.now
        # Not before the wallet opened: there is nothing to replay before it.
        start = max(end - timedelta(days=span), wallet_opened(tx, agency_id))
        zone = agency_zone(tx, agency_id)
        opening = balance_at(tx, agency_id, start)
        moves = movements(tx, agency_id, start, end)

        def run(timeline: list[SettingsFrom]) -> Replay:
            return replay(
                policy,
                timeline,
                moves,
                start=start,
                end=end,
                opening_balance=opening,
                currency=currency,
                zone=zone,
            )

        history = settings_history(tx, agency_id, start, end, current)
        return Preview(
            span,
            start,
            end,
            proposed,
            run([SettingsFrom(start, proposed)]),
            run(history),
            opening_balance=opening,
        )

    return db.read(work)


def wallet_opened(tx: Tx, agency_id: str) -> datetime:
    opened: datetime = tx.conn.execute(
        select(accounts.c.created_at).where(accounts.c.id == wallet_id_for(agency_id))
    ).scalar_one()
    return opened


def balance_at(tx: Tx, agency_id: str, moment: datetime) -> int:
    """The wallet's balance at ``moment``, what happened then included (its last
    transfer's balance after)."""
    row = tx.conn.execute(
        select(transfers.c.wallet_balance_after)
        .where(transfers.c.agency_id == agency_id, transfers.c.created_at <= moment)
        .order_by(transfers.c.created_at.desc(), transfers.c.id.desc())
        .limit(1)
    ).scalar()
    return int(row or 0)


_MOVEMENTS = prepared(
    "SELECT created_at, CASE WHEN debit_account_id = {p} THEN -amount ELSE amount END, "
    "kind = 'usage' FROM transfers WHERE agency_id = {p} AND created_at > {p} "
    "AND created_at <= {p} AND kind <> 'auto_reload' ORDER BY created_at, id"
)


def movements(tx: Tx, agency_id: str, start: datetime, end: datetime) -> list[Movement]:
    """Usage and the owner's own credits after start through end, in order; the
    auto-reloads that really happened are left out (the replay makes its own). Read on
    the driver's cursor in one fetch: a busy month is 150,000 rows."""
    cursor = tx.conn.connection.cursor()
    try:
        cursor.execute(
            _MOVEMENTS[tx.dialect],
            (
                wallet_id_for(agency_id),
                agency_id,
                bind_time(tx.dialect, start),
                bind_time(tx.dialect, end),
            ),
        )
        rows = cursor.fetchall()
    finally:
        cursor.close()
    if tx.dialect == "sqlite":  # the text SQLAlchemy's DateTime wrote, in UTC
        return [
            Movement(datetime.fromisoformat(at).replace(tzinfo=UTC), int(amount), bool(usage))
            for at, amount, usage in rows
        ]
    return [Movement(at, int(amount), bool(usage)) for at, amount, usage in rows]


_SETTINGS_ACTIONS = ("auto_reload.updated", "auto_reload.suspended")


def settings_history(
    tx: Tx, agency_id: str, start: datetime, end: datetime, current: AutoReloadSettings
) -> list[SettingsFrom]:
    """The settings in effect from ``start`` to ``end``, from the audit log's record of
    each change (its ``after``); before the first change in the window, what that change
    found (its ``before``), or the settings saved now when nothing changed since."""
    rows = tx.conn.execute(
        select(audit_log.c.created_at, audit_log.c.before, audit_log.c.after)
        .where(audit_log.c.agency_id == agency_id, audit_log.c.action.in_(_SETTINGS_ACTIONS))
        .order_by(audit_log.c.created_at, audit_log.c.id)
    ).all()
    opening: AutoReloadSettings | None = None
    timeline: list[SettingsFrom] = []
    for at, before, after in rows:
        if at < start:
            opening = from_snapshot(_decode(after), opening or current)
            continue
        if opening is None:  # the first change since start found what was in effect
            opening = from_snapshot(_decode(before), current) if before else NO_SETTINGS
        if at >= end:
            break
        timeline.append(
            SettingsFrom(
                at, from_snapshot(_decode(after), timeline[-1].settings if timeline else opening)
            )
        )
    return [SettingsFrom(start, opening or current), *timeline]


def _decode(text: str | None) -> dict[str, Any]:
    return dict(json.loads(text)) if text else {}


def from_snapshot(snap: dict[str, Any], base: AutoReloadSettings) -> AutoReloadSettings:
    """Settings from the audit log's snapshot (``settings.snapshot``); a field it lacks
    keeps ``base``'s value."""

    def amount(name: str) -> int | None:
        value = snap.get(name, "absent")
        if value == "absent":
            return getattr(base, name)  # type: ignore[no-any-return]
        return None if value is None else parse_amount(value, field=name)

    return replace(
        base,
        enabled=bool(snap.get("enabled", base.enabled)),
        status=SettingsStatus(snap.get("status", base.status)),
        mode=Mode(snap.get("mode", base.mode)),
        threshold=amount("threshold"),
        reload_amount=amount("reload_amount"),
        target_balance=amount("target_balance"),
        monthly_cap=amount("monthly_cap"),
        payment_method_id=snap.get("payment_method_id", base.payment_method_id),
        daily_limit=int(snap.get("daily_limit", base.daily_limit)),
        blocked_rail=None,
        blocked_until=None,
    )
