"""API keys: who is calling (the owner, or one subteam), and the keys' lifecycle:
created, listed, revoked, rolled."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update

from refill import audit, ledger
from refill.db.database import Database, RawTx, Tx, bind_time, prepared
from refill.db.rows import record
from refill.db.schema import (
    agencies,
    api_keys,
)
from refill.errors import (
    Conflict,
    NotFound,
    Unauthenticated,
    ValidationFailed,
)
from refill.ids import new_id
from refill.roles import KeyRole
from refill.services.pages import Page, paginate
from refill.services.subteams import archived_refusal, get_subteam

KEY_PREFIX = "rfl_"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an agency owner, or one subteam of an agency."""

    agency_id: str
    role: KeyRole
    subteam_id: str | None
    currency: str
    key_id: str

    @property
    def is_owner(self) -> bool:
        return self.role is KeyRole.OWNER

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


def issue_key(
    tx: Tx, *, agency_id: str, role: KeyRole, subteam_id: str | None, name: str | None = None
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
        return Principal(agency_id, KeyRole(role), subteam_id, currency, key_id), bool(note_use)

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


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as its owner sees it: never the secret, which is shown once."""

    id: str
    agency_id: str
    role: KeyRole
    subteam_id: str | None
    name: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None

    def active_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


def _key_from_row(m: Any) -> ApiKey:
    return record(ApiKey, m, role=KeyRole(m["role"]))


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
        if tx.conn.execute(select(agencies.c.id).where(agencies.c.id == agency_id)).first() is None:
            raise NotFound(f"agency {agency_id} not found")
        if subteam_id is not None:
            # The agency's lock: a subteam being archived gets no new key past its revocation.
            ledger.lock_wallet(tx, agency_id)
            if get_subteam(tx, agency_id, subteam_id).archived:
                raise archived_refusal(subteam_id)
        role = KeyRole.OWNER if subteam_id is None else KeyRole.SUBTEAM
        issued = issue_key(tx, agency_id=agency_id, role=role, subteam_id=subteam_id, name=name)
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
    return paginate(
        db, stmt, api_keys.c.id, _key_from_row, limit=limit, cursor=cursor, newest_first=True
    )


def read_key(db: Database, *, agency_id: str, key_id: str) -> ApiKey:
    return db.read(lambda tx: _get_key(tx, key_id, agency_id))


def key_agency(db: Database, key_id: str) -> str:
    """The agency a key belongs to (for an operator who knows only the key's id)."""
    return db.read(lambda tx: _get_key(tx, key_id)).agency_id


def _other_lasting_owner_keys(tx: Tx, agency_id: str, key_id: str) -> int:
    """Owner keys that would still work tomorrow besides ``key_id``."""
    count = tx.conn.execute(
        select(func.count()).where(
            api_keys.c.agency_id == agency_id,
            api_keys.c.role == KeyRole.OWNER,
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
        if key.role is KeyRole.OWNER and not _other_lasting_owner_keys(tx, agency_id, key_id):
            raise Conflict(
                "this is the agency's last owner key; create another owner key first",
                code="last_owner_key",
            )
        _revoke(tx, key, actor)
        return _get_key(tx, key_id)

    return db.write(work)


def _revoke(tx: Tx, key: ApiKey, actor: str, reason: str | None = None) -> None:
    tx.conn.execute(update(api_keys).where(api_keys.c.id == key.id).values(revoked_at=tx.now))
    audit.record(
        tx,
        agency_id=key.agency_id,
        actor=actor,
        action="key.revoked",
        target_id=key.id,
        before=_key_snapshot(key),
        after=None if reason is None else {"reason": reason},
    )


def revoke_subteam_keys(tx: Tx, *, agency_id: str, subteam_id: str, actor: str) -> list[str]:
    """Revoke a subteam's working keys (it is being archived), each audited; the ids.
    The caller holds the agency's lock."""
    rows = tx.conn.execute(
        select(api_keys)
        .where(
            api_keys.c.agency_id == agency_id,
            api_keys.c.subteam_id == subteam_id,
            api_keys.c.revoked_at.is_(None),
        )
        .order_by(api_keys.c.id)
    ).all()
    working = [k for k in map(_key_from_row, (r._mapping for r in rows)) if k.active_at(tx.now)]
    for key in working:
        _revoke(tx, key, actor, reason="subteam_archived")
    return [key.id for key in working]


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
        issued = issue_key(
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
