"""Why didn't it reload? The trigger rule evaluated now for an agency's wallet, from what one
read transaction finds: the settings, the available credits, the active auto-reload, what
the rails have counted and the chosen card. Nothing is written to answer it."""

from __future__ import annotations

from sqlalchemy import bindparam, select

from refill.cards import PaymentMethod
from refill.db.database import Database, Tx
from refill.db.rows import record
from refill.db.schema import accounts, payment_methods, reload_attempts
from refill.errors import NotFound
from refill.ids import wallet_id_for
from refill.reload.attempt import ReloadAttempt, attempt_from_row
from refill.reload.explain import Explanation, explain
from refill.reload.policy import ReloadPolicy
from refill.reload.settings import get_settings
from refill.reload.states import ACTIVE_STATUSES, Trigger
from refill.reload.trigger import count_rails

_WALLET = select(accounts.c.balance, accounts.c.held, accounts.c.currency).where(
    accounts.c.id == bindparam("wallet_id")
)
_ACTIVE_AUTO_RELOAD = select(reload_attempts).where(
    reload_attempts.c.wallet_id == bindparam("wallet_id"),
    reload_attempts.c.trigger == Trigger.AUTO,
    reload_attempts.c.status.in_(ACTIVE_STATUSES),
)
# The card the settings name, removed or not (a removed card is shown as such).
_CARD = select(payment_methods).where(
    payment_methods.c.id == bindparam("pm_id"),
    payment_methods.c.agency_id == bindparam("agency_id"),
)


def explain_auto_reload(db: Database, policy: ReloadPolicy, *, agency_id: str) -> Explanation:
    """``reload.explain.explain`` for this agency's wallet, now."""
    return db.read(lambda tx: explain_in(tx, policy, agency_id))


def explain_in(tx: Tx, policy: ReloadPolicy, agency_id: str) -> Explanation:
    """The same, inside a transaction the caller holds (read only)."""
    wallet_id = wallet_id_for(agency_id)
    wallet = tx.conn.execute(_WALLET, {"wallet_id": wallet_id}).one_or_none()
    if wallet is None:
        raise NotFound(f"agency {agency_id} has no wallet")
    settings = get_settings(tx, agency_id, policy=policy)
    active = _active_auto_reload(tx, wallet_id)
    # The card the next reload would charge: the first that is not skipped.
    first = settings.chargeable[0] if settings.chargeable else settings.payment_method_id
    card, removed = _card(tx, agency_id, first)
    return explain(
        policy,
        settings,
        available=int(wallet.balance) - int(wallet.held),
        currency=wallet.currency,
        active=active,
        # As the claim of the active one would count them: without itself.
        rails=count_rails(tx, agency_id, exclude_attempt_id=active.id if active else None),
        card=card,
        card_removed=removed,
        now=tx.now,
    )


def _active_auto_reload(tx: Tx, wallet_id: str) -> ReloadAttempt | None:
    """The wallet's one active auto-reload (a partial unique index keeps it one)."""
    row = tx.conn.execute(_ACTIVE_AUTO_RELOAD, {"wallet_id": wallet_id}).first()
    return None if row is None else attempt_from_row(row._mapping)


def _card(
    tx: Tx, agency_id: str, payment_method_id: str | None
) -> tuple[PaymentMethod | None, bool]:
    if payment_method_id is None:
        return None, False
    row = tx.conn.execute(_CARD, {"pm_id": payment_method_id, "agency_id": agency_id}).first()
    if row is None:
        return None, False
    return record(PaymentMethod, row._mapping), row.removed_at is not None
