"""The wallet: its balance and auto-reload settings, and the credits an operator grants or
adjusts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from refill import audit, ledger
from refill.db.database import Database, Tx
from refill.db.schema import accounts, transfers
from refill.errors import (
    Conflict,
    NotFound,
    ReferenceConflict,
    ValidationFailed,
)
from refill.gateway.base import PaymentGateway
from refill.ids import new_id, wallet_id_for
from refill.ledger import DuplicateReference, Transfer, TransferKind
from refill.money import format_amount
from refill.reload import changes
from refill.reload import queries as reload_queries
from refill.reload import settings as reload_settings
from refill.reload.policy import ReloadPolicy
from refill.reload.settings import AutoReloadSettings, SettingsChange
from refill.reload.situation import Situation, situation
from refill.services.agencies import load_agency
from refill.services.history_filters import TransferFilter
from refill.services.pages import Page, paginate
from refill.services.reloads import cancel_reload


@dataclass(frozen=True, slots=True)
class WalletView:
    id: str
    agency_id: str
    currency: str
    balance: int
    held: int
    auto_reload: AutoReloadSettings
    as_of: datetime
    situation: Situation
    # Calls are authorized while available credits are above this (min_call_balance).
    call_floor: int = 0

    @property
    def available(self) -> int:
        """What calls and usage can spend: the balance less what live calls hold."""
        return self.balance - self.held

    @property
    def takes_calls(self) -> bool:
        return self.available > self.call_floor


def get_wallet(db: Database, policy: ReloadPolicy, *, agency_id: str) -> WalletView:
    def work(tx: Tx) -> WalletView:
        row = tx.conn.execute(
            select(
                accounts.c.balance, accounts.c.held, accounts.c.currency, accounts.c.call_floor
            ).where(accounts.c.id == wallet_id_for(agency_id))
        ).one_or_none()
        if row is None:
            raise NotFound(f"agency {agency_id} has no wallet")
        settings = reload_settings.get_settings(tx, agency_id, policy=policy)
        return WalletView(
            wallet_id_for(agency_id),
            agency_id,
            row.currency,
            int(row.balance),
            int(row.held),
            settings,
            tx.now,
            situation(tx, agency_id, settings),
            int(row.call_floor),
        )

    return db.read(work)


def update_auto_reload(
    db: Database,
    gateway: PaymentGateway,
    policy: ReloadPolicy,
    *,
    agency_id: str,
    currency: str,
    change: SettingsChange,
    actor: str,
) -> WalletView:
    """Save the owner's settings. Invalid ones change nothing (422); so do settings equal
    to the saved ones (no cancel, no new attempt, no audit entry). A reload waiting for
    3-D Secure was made under the old settings: it is canceled at the gateway first
    (503 when the gateway cannot confirm, and then nothing is saved)."""
    plan = db.read(
        lambda tx: changes.plan_settings_change(
            tx, policy, agency_id=agency_id, currency=currency, change=change
        )
    )
    if not plan.unchanged:
        waiting = db.read(lambda tx: reload_queries.attempts_waiting_for_owner(tx, agency_id))
        for attempt_id in waiting:
            cancel_reload(
                db,
                gateway,
                policy,
                agency_id=agency_id,
                attempt_id=attempt_id,
                reason="settings_changed",
            )
        db.write(
            lambda tx: changes.change_settings(
                tx, policy, agency_id=agency_id, currency=currency, change=change, actor=actor
            )
        )
    return get_wallet(db, policy, agency_id=agency_id)


def grant_credits(
    db: Database, *, agency_id: str, amount: int, reference: str, description: str | None = None
) -> Transfer:
    """Credits the operator gives (a welcome bonus, goodwill): from the granted-credits
    account, exactly once per reference, no card involved."""

    def work(tx: Tx) -> Transfer:
        return ledger.credit_wallet(
            tx,
            agency_id=agency_id,
            source=ledger.SystemAccount.GRANTED_CREDITS,
            amount=amount,
            kind=TransferKind.GRANT,
            reference=reference,
            description=description,
        ).transfer

    return db.write(work)


def adjust_wallet(
    db: Database,
    *,
    agency_id: str,
    amount: int,
    reason: str,
    reference: str | None,
    actor: str,
) -> tuple[Transfer, bool]:
    """An operator's correction: ``amount`` (positive or negative) through the ledger's
    adjustment kind, never below zero, audited with the reason; exactly once per
    ``reference`` (a repeat returns the first transfer and False)."""
    reason = reason.strip()
    if amount == 0:
        raise ValidationFailed("the adjustment must not be zero", field="amount")
    if not reason:
        raise ValidationFailed("say why (--reason)", field="reason")
    reference = (reference or "").strip() or new_id("adj")

    def work(tx: Tx) -> Transfer:
        currency = load_agency(tx, agency_id).currency
        if amount > 0:
            posted = ledger.credit_wallet(
                tx,
                agency_id=agency_id,
                source=ledger.SystemAccount.MANUAL_FUNDING,
                amount=amount,
                kind=TransferKind.ADJUSTMENT,
                reference=reference,
                description=reason[:500],
            )
        else:
            posted = ledger.debit_wallet(
                tx,
                agency_id=agency_id,
                to=ledger.SystemAccount.MANUAL_FUNDING,
                amount=-amount,
                kind=TransferKind.ADJUSTMENT,
                reference=reference,
                description=reason[:500],
            )
        audit.record(
            tx,
            agency_id=agency_id,
            actor=actor,
            action="wallet.adjusted",
            target_id=wallet_id_for(agency_id),
            after={
                "amount": format_amount(amount, currency),
                "reason": reason,
                "reference": reference,
                "balance_after": format_amount(posted.balance, currency),
            },
        )
        return posted.transfer

    try:
        return db.write(work), True
    except DuplicateReference:
        original = db.read(
            lambda tx: ledger.find_transfer(
                tx, agency_id=agency_id, kind=TransferKind.ADJUSTMENT, reference=reference
            )
        )
        if original is None:  # the reference's transaction rolled back meanwhile
            raise Conflict("an adjustment with this reference is in flight; try again") from None
        credit = original.credit_account_id == wallet_id_for(agency_id)
        if (original.amount if credit else -original.amount) != amount:
            raise ReferenceConflict(
                f"reference {reference!r} was already used for another adjustment",
                reference=reference,
            ) from None
        return original, False


def list_transfers(
    db: Database,
    *,
    agency_id: str,
    limit: int = 50,
    cursor: str | None = None,
    matching: TransferFilter | None = None,
) -> Page[Transfer]:
    """Newest first; a cursor continues the list of the filter it came from (pass the same
    filter again with it)."""
    conditions = matching.conditions() if matching is not None else []
    stmt = select(transfers).where(transfers.c.agency_id == agency_id, *conditions)
    return paginate(
        db,
        stmt,
        transfers.c.id,
        ledger.transfer_from_row,
        limit=limit,
        cursor=cursor,
        newest_first=True,
        integer_ids=True,
    )
