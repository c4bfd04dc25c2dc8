"""Use cases: one function per thing a caller can do.

Each takes the ``Database`` (the unit of work) and its collaborators explicitly and owns
the transaction boundaries of its use case: one ``db.write`` per step, never a transaction
around a network call. The API and the CLI parse, call one of these, and render.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Generic, Protocol, TypeVar
from zoneinfo import available_timezones

from sqlalchemy import ColumnElement, Select, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from refill import audit, ledger, reload
from refill.db.database import Database, RawTx, Tx, bind_time, prepared
from refill.db.schema import (
    agencies,
    api_keys,
    audit_log,
    auto_reload_settings,
    payment_methods,
    reload_attempts,
    subteams,
    transfers,
)
from refill.errors import (
    Conflict,
    GatewayUnavailable,
    InsufficientCredits,
    NotFound,
    ReferenceConflict,
    Unauthenticated,
    ValidationFailed,
)
from refill.gateway.base import CardSetup, PaymentGateway
from refill.ids import new_id, wallet_id_for
from refill.ledger import DuplicateReference, Transfer, TransferKind
from refill.money import check_currency, format_amount
from refill.reload import (
    AutoReloadSettings,
    PaymentMethod,
    ReloadAttempt,
    ReloadPolicy,
    SettingsChange,
)

# --- agencies, subteams, keys -------------------------------------------------------------

KEY_PREFIX = "rfl_"


@dataclass(frozen=True, slots=True)
class Agency:
    id: str
    name: str
    currency: str
    timezone: str
    created_at: datetime
    # The agency's Customer at Stripe, once it saved a card there.
    stripe_customer_id: str | None = None


@dataclass(frozen=True, slots=True)
class Subteam:
    id: str
    agency_id: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an agency owner, or one subteam of an agency."""

    agency_id: str
    role: str  # owner | subteam
    subteam_id: str | None
    currency: str
    key_id: str

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"

    @property
    def actor(self) -> str:
        """How the audit log names this caller (never the secret)."""
        return f"key:{self.key_id}"


@dataclass(frozen=True, slots=True)
class IssuedKey:
    id: str
    secret: str  # shown once; only its digest is stored


def key_digest(secret: str) -> str:
    # Keys are 32 random bytes: a fast digest is enough, and the lookup is on the hot path.
    return hashlib.sha256(secret.encode()).hexdigest()


def _issue_key(
    tx: Tx, *, agency_id: str, role: str, subteam_id: str | None, name: str | None = None
) -> IssuedKey:
    secret = KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    key_id = new_id("key")
    tx.conn.execute(
        insert(api_keys).values(
            id=key_id,
            agency_id=agency_id,
            subteam_id=subteam_id,
            role=role,
            name=name,
            digest=key_digest(secret),
            created_at=tx.now,
        )
    )
    return IssuedKey(key_id, secret)


def _clean_name(name: str, what: str) -> str:
    name = name.strip()
    if not name:
        raise ValidationFailed(f"{what} name must not be empty", field="name")
    if len(name) > 200:
        raise ValidationFailed(f"{what} name is longer than 200 characters", field="name")
    return name


def create_agency(db: Database, *, name: str, currency: str = "USD") -> tuple[Agency, IssuedKey]:
    name = _clean_name(name, "agency")
    currency = check_currency(currency.upper())

    def work(tx: Tx) -> tuple[Agency, IssuedKey]:
        agency = Agency(new_id("agc"), name, currency, "UTC", tx.now)
        tx.conn.execute(
            insert(agencies).values(
                id=agency.id,
                name=agency.name,
                currency=currency,
                timezone=agency.timezone,
                created_at=tx.now,
            )
        )
        ledger.create_wallet(tx, agency_id=agency.id, currency=currency)
        return agency, _issue_key(tx, agency_id=agency.id, role="owner", subteam_id=None)

    return db.write(work)


def _agency(tx: Tx, agency_id: str) -> Agency:
    row = tx.conn.execute(select(agencies).where(agencies.c.id == agency_id)).one_or_none()
    if row is None:
        raise NotFound(f"agency {agency_id} not found")
    m = row._mapping
    return Agency(
        m["id"], m["name"], m["currency"], m["timezone"], m["created_at"], m["stripe_customer_id"]
    )


def get_agency(db: Database, agency_id: str) -> Agency:
    return db.read(lambda tx: _agency(tx, agency_id))


@cache
def _time_zones() -> frozenset[str]:
    """Real IANA zones only: ``ZoneInfo("America")`` fails in other ways than a bad name."""
    return frozenset(available_timezones())


def set_agency_timezone(db: Database, *, agency_id: str, timezone: str, actor: str) -> Agency:
    """The time zone in which the daily limit and the monthly cap count (IANA name)."""
    if timezone not in _time_zones():
        raise ValidationFailed(
            f"{timezone!r} is not an IANA time zone such as 'Europe/Paris' or 'UTC'",
            code="invalid_timezone",
            field="timezone",
        )

    def work(tx: Tx) -> Agency:
        before = _agency(tx, agency_id)
        tx.conn.execute(
            update(agencies).where(agencies.c.id == agency_id).values(timezone=timezone)
        )
        audit.record(
            tx,
            agency_id=agency_id,
            actor=actor,
            action="agency.timezone_changed",
            target_id=agency_id,
            before={"timezone": before.timezone},
            after={"timezone": timezone},
        )
        return _agency(tx, agency_id)

    return db.write(work)


_KEY_LOOKUP = prepared(
    "SELECT k.id, k.agency_id, k.role, k.subteam_id, a.currency, "
    "CASE WHEN k.last_used_at IS NULL OR k.last_used_at < {p} THEN 1 ELSE 0 END "
    "FROM api_keys k JOIN agencies a ON a.id = k.agency_id "
    "WHERE k.digest = {p} AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > {p})"
)
_KEY_USED = prepared(
    "UPDATE api_keys SET last_used_at = {p} "
    "WHERE id = {p} AND (last_used_at IS NULL OR last_used_at < {p})"
)
# last_used_at is written at most this often per key, so the lookup stays a read.
KEY_USE_RESOLUTION = timedelta(minutes=1)


def authenticate(db: Database, secret: str) -> Principal:
    """The caller behind an API key. On every request, so it is one prepared lookup (and,
    at most once a minute per key, one small write noting its use). A revoked key, or a
    rolled one past its expiry, fails on the next request in every process."""
    if not secret.startswith(KEY_PREFIX):
        raise Unauthenticated("unknown API key")
    digest = key_digest(secret)

    def work(tx: RawTx) -> tuple[Principal, bool]:
        now = bind_time(tx.dialect, tx.now)
        stale = bind_time(tx.dialect, tx.now - KEY_USE_RESOLUTION)
        row = tx.execute_raw(_KEY_LOOKUP[tx.dialect], (stale, digest, now))
        if row is None:
            raise Unauthenticated("unknown, revoked or expired API key")
        key_id, agency_id, role, subteam_id, currency, note_use = row
        return Principal(agency_id, role, subteam_id, currency, key_id), bool(note_use)

    principal, note_use = db.read_raw(work)
    if note_use:

        def used(tx: RawTx) -> None:
            tx.execute_raw(
                _KEY_USED[tx.dialect],
                (
                    bind_time(tx.dialect, tx.now),
                    principal.key_id,
                    bind_time(tx.dialect, tx.now - KEY_USE_RESOLUTION),
                ),
            )

        db.write_raw(used)
    return principal


def create_subteam(db: Database, *, agency_id: str, name: str) -> Subteam:
    name = _clean_name(name, "subteam")

    def work(tx: Tx) -> Subteam:
        subteam = Subteam(new_id("sub"), agency_id, name, tx.now)
        tx.conn.execute(
            insert(subteams).values(
                id=subteam.id,
                agency_id=agency_id,
                wallet_id=wallet_id_for(agency_id),
                name=name,
                created_at=tx.now,
            )
        )
        return subteam

    return db.write(work)


def _subteam_from_row(m: Any) -> Subteam:
    return Subteam(m["id"], m["agency_id"], m["name"], m["created_at"])


def get_subteam(tx: Tx, agency_id: str, subteam_id: str) -> Subteam:
    row = tx.conn.execute(
        select(subteams).where(subteams.c.id == subteam_id, subteams.c.agency_id == agency_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"subteam {subteam_id} not found", code="subteam_not_found")
    return _subteam_from_row(row._mapping)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as its owner sees it: never the secret, which is shown once."""

    id: str
    agency_id: str
    role: str
    subteam_id: str | None
    name: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None

    def active_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


def _key_from_row(m: Any) -> ApiKey:
    return ApiKey(**{f: m[f] for f in ApiKey.__slots__})


def _get_key(tx: Tx, key_id: str, agency_id: str | None = None) -> ApiKey:
    stmt = select(api_keys).where(api_keys.c.id == key_id)
    if agency_id is not None:
        stmt = stmt.where(api_keys.c.agency_id == agency_id)
    row = tx.conn.execute(stmt).one_or_none()
    if row is None:
        raise NotFound(f"key {key_id} not found", code="key_not_found")
    return _key_from_row(row._mapping)


def _key_snapshot(key: ApiKey) -> dict[str, Any]:
    return {"role": key.role, "subteam_id": key.subteam_id, "name": key.name}


MAX_KEY_OVERLAP = timedelta(days=7)


def create_key(
    db: Database,
    *,
    agency_id: str,
    subteam_id: str | None = None,
    name: str | None = None,
    actor: str,
) -> IssuedKey:
    """A new key (shown once): for one subteam, or, without one, an owner key."""
    name = _clean_key_name(name)

    def work(tx: Tx) -> IssuedKey:
        _agency(tx, agency_id)
        if subteam_id is not None:
            get_subteam(tx, agency_id, subteam_id)
        role = "owner" if subteam_id is None else "subteam"
        issued = _issue_key(tx, agency_id=agency_id, role=role, subteam_id=subteam_id, name=name)
        audit.record(
            tx,
            agency_id=agency_id,
            actor=actor,
            action="key.created",
            target_id=issued.id,
            after={"role": role, "subteam_id": subteam_id, "name": name},
        )
        return issued

    return db.write(work)


def _clean_key_name(name: str | None) -> str | None:
    if name is None:
        return None
    name = name.strip()
    if len(name) > 100:
        raise ValidationFailed("a key's name is at most 100 characters", field="name")
    return name or None


def create_owner_key(db: Database, *, agency_id: str) -> IssuedKey:
    """Another owner key for an agency (shown once), e.g. for an operator's tooling."""
    return create_key(db, agency_id=agency_id, actor="cli")


def create_subteam_key(
    db: Database, *, agency_id: str, subteam_id: str, name: str | None = None, actor: str = "cli"
) -> IssuedKey:
    return create_key(db, agency_id=agency_id, subteam_id=subteam_id, name=name, actor=actor)


def list_keys(
    db: Database, *, agency_id: str, limit: int = 50, cursor: str | None = None
) -> Page[ApiKey]:
    stmt = select(api_keys).where(api_keys.c.agency_id == agency_id)
    return _paginate(
        db, stmt, api_keys.c.id, _key_from_row, limit=limit, cursor=cursor, newest_first=True
    )


def key_agency(db: Database, key_id: str) -> str:
    """The agency a key belongs to (for an operator who knows only the key's id)."""
    return db.read(lambda tx: _get_key(tx, key_id)).agency_id


def _other_lasting_owner_keys(tx: Tx, agency_id: str, key_id: str) -> int:
    """Owner keys that would still work tomorrow besides ``key_id``."""
    count = tx.conn.execute(
        select(func.count()).where(
            api_keys.c.agency_id == agency_id,
            api_keys.c.role == "owner",
            api_keys.c.id != key_id,
            api_keys.c.revoked_at.is_(None),
            api_keys.c.expires_at.is_(None),
        )
    ).scalar_one()
    return int(count)


def revoke_key(db: Database, *, agency_id: str, key_id: str, actor: str) -> ApiKey:
    """Revoke a key: refused from the next request on, in every process. The agency's
    lock serializes revocations, so two owner keys cannot revoke each other at once and
    the last owner key stays (``last_owner_key``)."""

    def work(tx: Tx) -> ApiKey:
        ledger.lock_wallet(tx, agency_id)
        key = _get_key(tx, key_id, agency_id)
        if key.revoked_at is not None:
            return key
        if key.role == "owner" and not _other_lasting_owner_keys(tx, agency_id, key_id):
            raise Conflict(
                "this is the agency's last owner key; create another owner key first",
                code="last_owner_key",
            )
        tx.conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=tx.now))
        audit.record(
            tx,
            agency_id=agency_id,
            actor=actor,
            action="key.revoked",
            target_id=key_id,
            before=_key_snapshot(key),
        )
        return _get_key(tx, key_id)

    return db.write(work)


def roll_key(
    db: Database, *, agency_id: str, key_id: str, expires_in: timedelta, actor: str
) -> tuple[IssuedKey, ApiKey]:
    """A new secret for the same role (a new key id, shown once); the old key works on
    for ``expires_in`` (0 to 7 days) so a deployment can switch without downtime."""
    if not timedelta(0) <= expires_in <= MAX_KEY_OVERLAP:
        raise ValidationFailed(
            "expires_in_seconds must be between 0 and 604800 (7 days)",
            field="expires_in_seconds",
        )

    def work(tx: Tx) -> tuple[IssuedKey, ApiKey]:
        ledger.lock_wallet(tx, agency_id)
        old = _get_key(tx, key_id, agency_id)
        if not old.active_at(tx.now):
            raise Conflict(f"key {key_id} is revoked or expired", code="key_inactive")
        issued = _issue_key(
            tx, agency_id=agency_id, role=old.role, subteam_id=old.subteam_id, name=old.name
        )
        expires = tx.now + expires_in
        if old.expires_at is not None:
            expires = min(expires, old.expires_at)
        tx.conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(expires_at=expires))
        audit.record(
            tx,
            agency_id=agency_id,
            actor=actor,
            action="key.rolled",
            target_id=key_id,
            before=_key_snapshot(old),
            after={"new_key_id": issued.id, "old_key_expires_at": expires.isoformat()},
        )
        return issued, _get_key(tx, key_id)

    return db.write(work)


# --- payment methods ----------------------------------------------------------------------


def _card_snapshot(pm: PaymentMethod) -> dict[str, Any]:
    return {
        "id": pm.id,
        "brand": pm.brand,
        "last4": pm.last4,
        "exp": f"{pm.exp_month:02d}/{pm.exp_year}",
    }


def save_payment_method(
    db: Database, gateway: PaymentGateway, *, agency_id: str, token: str, actor: str
) -> tuple[PaymentMethod, bool]:
    """Save a gateway token for the agency. Saving the same token again returns it."""
    # Network calls, outside any transaction.
    customer = gateway_customer(db, gateway, agency_id=agency_id)
    card = gateway.describe_payment_method(agency_id, token, customer)

    def work(tx: Tx) -> tuple[PaymentMethod, bool]:
        row = tx.conn.execute(
            select(payment_methods).where(
                payment_methods.c.agency_id == agency_id,
                payment_methods.c.gateway == gateway.name,
                payment_methods.c.token == card.token,
            )
        ).one_or_none()
        if row is not None and row.removed_at is None:
            return reload.payment_method_from_row(row._mapping), False
        if row is not None:  # saved before, then removed: bring it back
            pm_id = row.id
            tx.conn.execute(
                update(payment_methods)
                .where(payment_methods.c.id == pm_id)
                .values(removed_at=None, exp_month=card.exp_month, exp_year=card.exp_year)
            )
        else:
            pm_id = new_id("pay")
            tx.conn.execute(
                insert(payment_methods).values(
                    id=pm_id,
                    agency_id=agency_id,
                    gateway=gateway.name,
                    token=card.token,
                    brand=card.brand,
                    last4=card.last4,
                    exp_month=card.exp_month,
                    exp_year=card.exp_year,
                    created_at=tx.now,
                )
            )
        saved = reload.get_payment_method(tx, agency_id, pm_id)
        audit.record(
            tx,
            agency_id=agency_id,
            actor=actor,
            action="payment_method.added",
            target_id=pm_id,
            after=_card_snapshot(saved),
        )
        return saved, True

    return db.write(work)


def gateway_customer(db: Database, gateway: PaymentGateway, *, agency_id: str) -> str | None:
    """The agency's customer at the gateway, created the first time it is needed."""
    agency = get_agency(db, agency_id)
    if agency.stripe_customer_id is not None:
        return agency.stripe_customer_id
    created = gateway.create_customer(agency_id, agency.name)  # network: no transaction open
    if created is None:
        return None  # a gateway without customers (the sandbox)

    def store(tx: Tx) -> str | None:
        # Two first cards at once: the gateway made one customer (same idempotency key);
        # whoever stores second keeps what the first stored.
        tx.conn.execute(
            update(agencies)
            .where(agencies.c.id == agency_id, agencies.c.stripe_customer_id.is_(None))
            .values(stripe_customer_id=created)
        )
        return _agency(tx, agency_id).stripe_customer_id

    return db.write(store)


def begin_card_setup(db: Database, gateway: PaymentGateway, *, agency_id: str) -> CardSetup | None:
    """Start adding a card in the browser (Stripe: a SetupIntent for Stripe.js); None for a
    gateway that takes test tokens instead (the sandbox)."""
    customer = gateway_customer(db, gateway, agency_id=agency_id)
    return gateway.begin_card_setup(customer)


def remove_payment_method(
    db: Database,
    *,
    agency_id: str,
    payment_method_id: str,
    actor: str,
    gateway: PaymentGateway | None = None,
) -> None:
    """Remove a card, then detach it at ``gateway`` (None: the gateway already did)."""

    def work(tx: Tx) -> PaymentMethod:
        card = reload.get_payment_method(tx, agency_id, payment_method_id)
        in_use = tx.conn.execute(
            select(auto_reload_settings.c.wallet_id).where(
                auto_reload_settings.c.wallet_id == wallet_id_for(agency_id),
                auto_reload_settings.c.payment_method_id == payment_method_id,
                auto_reload_settings.c.enabled.is_(True),
            )
        ).first()
        if in_use is not None:
            raise Conflict(
                "auto-reload uses this payment method; choose another one or turn auto-reload "
                "off first",
                code="payment_method_in_use",
            )
        tx.conn.execute(
            update(payment_methods)
            .where(payment_methods.c.id == payment_method_id)
            .values(removed_at=tx.now)
        )
        audit.record(
            tx,
            agency_id=agency_id,
            actor=actor,
            action="payment_method.removed",
            target_id=card.id,
            before=_card_snapshot(card),
        )
        return card

    card = db.write(work)
    if gateway is not None and card.gateway == gateway.name:
        gateway.forget_payment_method(card.token)


# --- wallet and auto-reload ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WalletView:
    id: str
    agency_id: str
    currency: str
    balance: int
    auto_reload: AutoReloadSettings
    as_of: datetime


def get_wallet(db: Database, policy: ReloadPolicy, *, agency_id: str) -> WalletView:
    def work(tx: Tx) -> WalletView:
        balance = ledger.wallet_balance(tx, agency_id)
        currency = tx.conn.execute(
            select(agencies.c.currency).where(agencies.c.id == agency_id)
        ).scalar_one()
        return WalletView(
            wallet_id_for(agency_id),
            agency_id,
            currency,
            balance,
            reload.get_settings(tx, agency_id, policy=policy),
            tx.now,
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
        lambda tx: reload.plan_settings_change(
            tx, policy, agency_id=agency_id, currency=currency, change=change
        )
    )
    if not plan.unchanged:
        waiting = db.read(lambda tx: reload.attempts_waiting_for_owner(tx, agency_id))
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
            lambda tx: reload.change_settings(
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
        currency = _agency(tx, agency_id).currency
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
        assert original is not None
        credit = original.credit_account_id == wallet_id_for(agency_id)
        if (original.amount if credit else -original.amount) != amount:
            raise ReferenceConflict(
                f"reference {reference!r} was already used for another adjustment",
                reference=reference,
            ) from None
        return original, False


# --- usage and calls ----------------------------------------------------------------------


def record_usage(
    db: Database,
    policy: ReloadPolicy,
    *,
    agency_id: str,
    subteam_id: str,
    amount: int,
    reference: str,
    description: str | None = None,
) -> tuple[Transfer, bool]:
    """Debit the parent wallet for a subteam's usage, exactly once per reference.

    Returns the transfer and whether it was created now. A repeat with the same reference
    returns the first transfer; the same reference with another amount or subteam is a
    ``reference_conflict``. The debit, the transfer and the reload trigger are one
    transaction: two debits can never start two reloads.
    """
    if amount <= 0:
        raise ValidationFailed(
            "amount must be more than zero", code="invalid_amount", field="amount"
        )
    reference = reference.strip()
    if not reference or len(reference) > 255:
        raise ValidationFailed("reference must be 1 to 255 characters", field="reference")

    def work(tx: RawTx) -> Transfer:
        posted = ledger.debit_wallet(
            tx,
            agency_id=agency_id,
            to=ledger.SystemAccount.USAGE_REVENUE,
            amount=amount,
            kind=TransferKind.USAGE,
            reference=reference,
            subteam_id=subteam_id,
            description=description,
        )
        if posted.reload_below is not None and posted.balance < posted.reload_below:
            reload.trigger_auto_reload(
                tx, policy, agency_id=agency_id, balance=posted.balance, currency=posted.currency
            )
        return posted.transfer

    try:
        return db.write_raw(work), True
    except (DuplicateReference, InsufficientCredits, IntegrityError) as exc:
        # Rare paths, resolved in a fresh transaction after the first one rolled back.
        def resolve(tx: Tx) -> Transfer | None:
            original = ledger.find_transfer(
                tx, agency_id=agency_id, kind=TransferKind.USAGE, reference=reference
            )
            if original is None:
                get_subteam(tx, agency_id, subteam_id)  # unknown subteam: 404
            return original

        original = db.read(resolve)
        if original is None:
            raise exc
        if original.amount != amount or original.subteam_id != subteam_id:
            raise ReferenceConflict(
                f"reference {reference!r} was already used for a different usage "
                "(another amount or subteam)",
                reference=reference,
            ) from None
        return original, False


@dataclass(frozen=True, slots=True)
class CallAuthorization:
    allowed: bool
    reason: str
    available: int
    currency: str


_AUTHORIZE = prepared(
    "SELECT a.balance, a.currency FROM subteams s JOIN accounts a ON a.id = s.wallet_id "
    "WHERE s.id = {p} AND s.agency_id = {p}"
)


def authorize_call(db: Database, *, agency_id: str, subteam_id: str) -> CallAuthorization:
    """Can this subteam take a call now? Not when the parent wallet has no credits.

    Asked before every call, so it is one prepared lookup on the hot lane.
    """

    def work(tx: RawTx) -> CallAuthorization:
        row = tx.execute_raw(_AUTHORIZE[tx.dialect], (subteam_id, agency_id))
        if row is None:
            raise NotFound(f"subteam {subteam_id} not found", code="subteam_not_found")
        balance, currency = int(row[0]), row[1]
        if balance > 0:
            return CallAuthorization(True, "credits_available", balance, currency)
        return CallAuthorization(False, "no_credits", balance, currency)

    return db.read_raw(work)


# --- reloads and manual credits -----------------------------------------------------------


class AttemptProcessor(Protocol):
    """What add_credits needs from the worker: run one attempt to its outcome now."""

    def process(self, attempt_id: str) -> ReloadAttempt | None: ...


def add_credits(
    db: Database,
    processor: AttemptProcessor,
    policy: ReloadPolicy,
    *,
    agency_id: str,
    currency: str,
    amount: int,
    payment_method_id: str,
    request_key: str | None,
) -> tuple[ReloadAttempt, bool]:
    """Charge a saved payment method now and credit the wallet (a manual top-up).

    The charge runs in the request, outside any transaction, so the owner sees the outcome.
    A repeat with the same Idempotency-Key returns the first attempt without charging again
    once the first request has finished (``IdempotencyKeyInUse`` while it runs).
    """
    attempt, created = db.write(
        lambda tx: reload.create_manual_attempt(
            tx,
            policy,
            agency_id=agency_id,
            currency=currency,
            amount=amount,
            payment_method_id=payment_method_id,
            request_key=request_key,
        )
    )
    if created:
        processor.process(attempt.id)
        attempt = db.read(lambda tx: reload.get_attempt(tx, agency_id, attempt.id))
    return attempt, created


def get_reload(db: Database, *, agency_id: str, attempt_id: str) -> ReloadAttempt:
    return db.read(lambda tx: reload.get_attempt(tx, agency_id, attempt_id))


def cancel_reload(
    db: Database,
    gateway: PaymentGateway,
    policy: ReloadPolicy,
    *,
    agency_id: str,
    attempt_id: str,
    reason: str = "canceled_by_owner",
) -> ReloadAttempt:
    """Cancel an attempt that waits (pending, or for the owner's 3-D Secure).

    One waiting at the gateway is canceled there first, outside any transaction: marked
    ``cancel_requested_at`` (still active), the gateway asked, then recorded canceled, or
    succeeded and credited if it was paid meanwhile. When the gateway cannot confirm,
    ``GatewayUnavailable`` (503) and the attempt stays as it was.
    """
    claimed = db.write(
        lambda tx: reload.request_cancel(
            tx, agency_id=agency_id, attempt_id=attempt_id, reason=reason
        )
    )
    if claimed is not None:
        result = gateway.cancel_charge(
            reload.charge_request(claimed), claimed.attempt.gateway_payment_id
        )
        settled = db.write(
            lambda tx: reload.record_cancel_outcome(
                tx, policy, attempt_id=attempt_id, result=result, reason=reason
            )
        )
        if settled is None:
            raise GatewayUnavailable(
                "the payment gateway could not confirm that the payment was canceled; "
                "nothing was changed, try again",
                code="cancel_unconfirmed",
            )
    return db.read(lambda tx: reload.get_attempt(tx, agency_id, attempt_id))


# --- lists --------------------------------------------------------------------------------

MAX_PAGE = 200


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    data: list[T]
    next_cursor: str | None


_ID_CURSOR = re.compile(r"[a-z]{3}_[0-9a-z]{26}")
_INT_CURSOR = re.compile(r"[1-9][0-9]{0,18}")


def _encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None, *, integer_ids: bool) -> str | int | None:
    """The id a cursor stands for, or ``invalid_cursor``: every cursor this API hands out
    decodes to an id of the list's own kind, and nothing else is accepted."""
    if cursor is None:
        return None
    invalid = ValidationFailed(
        "cursor is not valid: pass next_cursor from the previous page as it was",
        code="invalid_cursor",
        field="cursor",
    )
    if not 1 <= len(cursor) <= 64:
        raise invalid
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        value = raw.decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raise invalid from None
    if integer_ids:
        if _INT_CURSOR.fullmatch(value) is None or int(value) > 2**63 - 1:
            raise invalid
        return int(value)
    if _ID_CURSOR.fullmatch(value) is None:
        raise invalid
    return value


def _paginate(
    db: Database,
    stmt: Select[Any],
    id_column: ColumnElement[Any],
    to_item: Callable[[Any], T],
    *,
    limit: int,
    cursor: str | None,
    newest_first: bool,
    integer_ids: bool = False,
) -> Page[T]:
    """Keyset pagination on a time-ordered id: stable while rows are being added."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    after = _decode_cursor(cursor, integer_ids=integer_ids)
    if after is not None:
        stmt = stmt.where(id_column < after if newest_first else id_column > after)
    stmt = stmt.order_by(id_column.desc() if newest_first else id_column).limit(limit + 1)

    def work(tx: Tx) -> Page[T]:
        rows = tx.conn.execute(stmt).all()
        page = rows[:limit]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = _encode_cursor(str(page[-1]._mapping[id_column.name]))
        return Page([to_item(r._mapping) for r in page], next_cursor)

    return db.read(work)


def list_subteams(
    db: Database, *, agency_id: str, limit: int = 50, cursor: str | None = None
) -> Page[Subteam]:
    stmt = select(subteams).where(subteams.c.agency_id == agency_id)
    return _paginate(
        db, stmt, subteams.c.id, _subteam_from_row, limit=limit, cursor=cursor, newest_first=False
    )


def list_payment_methods(
    db: Database, *, agency_id: str, limit: int = 50, cursor: str | None = None
) -> Page[PaymentMethod]:
    stmt = select(payment_methods).where(
        payment_methods.c.agency_id == agency_id, payment_methods.c.removed_at.is_(None)
    )
    return _paginate(
        db,
        stmt,
        payment_methods.c.id,
        reload.payment_method_from_row,
        limit=limit,
        cursor=cursor,
        newest_first=False,
    )


def list_reloads(
    db: Database, *, agency_id: str, limit: int = 50, cursor: str | None = None
) -> Page[ReloadAttempt]:
    stmt = select(reload_attempts).where(reload_attempts.c.agency_id == agency_id)
    return _paginate(
        db,
        stmt,
        reload_attempts.c.id,
        reload.attempt_from_row,
        limit=limit,
        cursor=cursor,
        newest_first=True,
    )


def list_transfers(
    db: Database, *, agency_id: str, limit: int = 50, cursor: str | None = None
) -> Page[Transfer]:
    stmt = select(transfers).where(transfers.c.agency_id == agency_id)
    return _paginate(
        db,
        stmt,
        transfers.c.id,
        ledger.transfer_from_row,
        limit=limit,
        cursor=cursor,
        newest_first=True,
        integer_ids=True,
    )


def list_audit_log(
    db: Database, *, agency_id: str, limit: int = 50, cursor: str | None = None
) -> Page[audit.AuditEntry]:
    stmt = select(audit_log).where(audit_log.c.agency_id == agency_id)
    return _paginate(
        db,
        stmt,
        audit_log.c.id,
        audit.entry_from_row,
        limit=limit,
        cursor=cursor,
        newest_first=True,
    )
