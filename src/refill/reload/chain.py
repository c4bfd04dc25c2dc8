"""What follows a declined auto-reload: the next card, a retry of the whole chain later, or
a suspension. Backup cards, in the settings' order.

A reload tries each card that is not skipped once, one after the other: the next card is
charged only after a definitive decline of the one before (never after an unknown outcome,
which leaves the attempt ``charging`` for the reconciler). Each charge is an attempt of its
own, with its own idempotency key, linked to the one before (``previous_attempt_id``); the
attempt that follows is written in the transaction that records the decline, so a crash
between two charges leaves either the decline unrecorded (the reconciler asks the gateway)
or the next attempt pending (the poller runs it), and the wallet's one active auto-reload
stays one. A hard decline skips its card in later reloads. When every card of a reload has
declined, the soft-decline schedule retries the chain from its first card, and auto-reload
is suspended once the schedule is spent or every card is skipped.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy import insert

from refill.db.database import Tx
from refill.db.schema import reload_attempts
from refill.ids import new_id, wallet_id_for
from refill.notify import reloads as notices
from refill.reload import card_list, settings_store
from refill.reload import settings as reload_settings
from refill.reload.attempt import ReloadAttempt
from refill.reload.policy import DeclineClass, ReloadPolicy
from refill.reload.settings import AutoReloadSettings
from refill.reload.states import AttemptStatus, Trigger, idempotency_key_for
from refill.reload.trigger import NewReloadAttempt, agency_currency

# What an auto-reload records when the bank asked for the owner's authentication (3-D
# Secure) and a backup card was charged instead, once the gateway confirmed the first
# payment canceled. Soft: the card works when the owner is there to authenticate.
AUTHENTICATION_SKIPPED = "authentication_required"


def card_to_charge(settings: AutoReloadSettings, attempt: ReloadAttempt) -> str | None:
    """The card an auto-reload charges at its claim: its own while it is listed and not
    skipped, else the first card that is (None: there is none)."""
    chargeable = settings.chargeable
    if attempt.payment_method_id in chargeable:
        return attempt.payment_method_id
    return chargeable[0] if chargeable else None


def next_card(settings: AutoReloadSettings, declined_card: str) -> str | None:
    """The card to charge now, in the same reload, after ``declined_card`` declined. A card
    no longer listed (the owner changed the list during the charge) hands over to the new
    list's first card."""
    if declined_card not in settings.payment_method_ids:
        return settings.chargeable[0] if settings.chargeable else None
    return settings.card_after(declined_card)


def backup_waits(tx: Tx, attempt: ReloadAttempt) -> bool:
    """Whether a declined ``attempt`` would hand over to another card at once."""
    settings = reload_settings.get_settings(tx, attempt.agency_id)
    return attempt.is_auto and next_card(settings, attempt.payment_method_id) is not None


def after_auto_decline(
    tx: Tx,
    policy: ReloadPolicy,
    attempt: ReloadAttempt,
    *,
    code: str,
    decline_class: DeclineClass,
    message: str | None,
) -> None:
    """The declined auto-reload ``attempt`` (already recorded failed): tell the owner, and
    charge the next card, schedule the chain's retry, or suspend auto-reload."""
    if decline_class is DeclineClass.HARD:
        card_list.skip_card(tx, attempt.agency_id, attempt.payment_method_id, code)
    settings = reload_settings.get_settings(tx, attempt.agency_id)
    backup = next_card(settings, attempt.payment_method_id)
    delay = None
    if backup is None and settings.chargeable:
        delay = policy.retry_delay(attempt.retry_number)
    notices.failed(
        tx,
        attempt,
        decline_code=code,
        decline_class=decline_class.value,
        message=message,
        will_retry_at=None if delay is None else tx.now + delay,
        next_card=backup,
    )
    if backup is not None:
        _follow(tx, attempt, backup, retry_number=attempt.retry_number, not_before=None)
        return
    several = len(settings.card_list) > 1
    if not settings.chargeable:
        reason = (
            f"every card was declined and will not work again (last: {code}); update a card "
            "or choose another"
            if several
            else f"the card was declined ({code}) and will not work again; choose another card"
        )
        settings_store.suspend(tx, attempt.agency_id, attempt.currency, reason)
        return
    if delay is None:
        tries = attempt.retry_number + 1
        reason = (
            f"every card was declined, {tries} times in a row (last: {code})"
            if several
            else f"the card was declined {tries} times in a row (last: {code})"
        )
        settings_store.suspend(tx, attempt.agency_id, attempt.currency, reason)
        return
    _follow(
        tx,
        attempt,
        settings.chargeable[0],
        retry_number=attempt.retry_number + 1,
        not_before=tx.now + delay,
    )


def _follow(
    tx: Tx,
    attempt: ReloadAttempt,
    card: str,
    *,
    retry_number: int,
    not_before: datetime | None,
) -> str:
    """The attempt after ``attempt``: on ``card``, now (a backup) or at ``not_before`` (the
    chain's retry). The claim decides the amount again under the wallet's lock."""
    follower = new_id("rld")
    tx.conn.execute(
        insert(reload_attempts).values(
            id=follower,
            agency_id=attempt.agency_id,
            wallet_id=wallet_id_for(attempt.agency_id),
            trigger=Trigger.AUTO,
            status=AttemptStatus.PENDING,
            amount=attempt.amount,
            currency=attempt.currency,
            payment_method_id=card,
            idempotency_key=idempotency_key_for(follower),
            not_before=not_before,
            previous_attempt_id=attempt.id,
            retry_number=retry_number,
            created_at=tx.now,
            updated_at=tx.now,
        )
    )
    if not_before is None:
        tx.announce(NewReloadAttempt(follower))  # charged right after this commit
    return follower


def drop_card(
    tx: Tx, agency_id: str, current: AutoReloadSettings, payment_method_id: str, *, actor: str
) -> AutoReloadSettings | None:
    """Take a removed card out of the ``current`` list (the next card becomes the primary),
    audited; the settings after, or None when the card was not listed."""
    if payment_method_id not in current.payment_method_ids:
        return None
    cards = tuple(c for c in current.card_list if c.payment_method_id != payment_method_id)
    after = replace(
        current, cards=cards, payment_method_id=cards[0].payment_method_id if cards else None
    )
    settings_store.save(
        tx,
        agency_id,
        actor=actor,
        before=current,
        after=after,
        currency=agency_currency(tx, agency_id),
    )
    return after
