"""People of an agency and their sign-in: users, memberships with roles, cookie sessions,
CSRF tokens and the sign-in rate limit. No web framework here: the routes call these.

- Passwords are argon2id hashes (argon2-cffi's defaults); an e-mail is stored lower-cased.
- A session is a random token in an HttpOnly cookie; the database keeps only its SHA-256,
  the agency it was opened for, and the CSRF token its forms carry. It ends after
  ``IDLE`` without use, ``LIFETIME`` after sign-in, or at sign-out.
- Sign-in attempts are counted per e-mail and per client address *before* the password is
  checked (an upsert in the database, so every process sees them and a burst cannot pass
  the limit): past ``MAX_FAILURES`` for one e-mail or ``MAX_PER_ADDRESS`` from one address
  in a ``LOCKOUT`` window, sign-in is refused until the window ends. A success takes only
  itself off the counts.
- A password hash costs 64 MiB and tens of milliseconds: at most ``HASH_SLOTS`` run at
  once in a process; a request that finds none free within ``HASH_WAIT`` is told to come
  back (429 with ``Retry-After``). An unknown e-mail is checked against a dummy hash, so it
  costs the same as a known one, inside the same bound.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import case, delete, func, insert, select, update

from refill import audit
from refill.db.database import Database, Tx, dialect_insert
from refill.db.schema import agencies, login_throttle, memberships, portal_sessions, users
from refill.errors import (
    Conflict,
    Forbidden,
    NotFound,
    RefillError,
    Unauthenticated,
    ValidationFailed,
)
from refill.ids import new_id

Role = Literal["owner", "admin", "member"]
ROLES: tuple[Role, ...] = ("owner", "admin", "member")
MIN_PASSWORD_LENGTH = 12
IDLE = timedelta(hours=12)
LIFETIME = timedelta(days=7)
MAX_FAILURES = 5
MAX_PER_ADDRESS = 20
LOCKOUT = timedelta(minutes=15)
HASH_SLOTS = 2
HASH_WAIT = 3.0  # seconds a sign-in waits for a free hashing slot

_hasher = PasswordHasher()
# Verified against when the e-mail is unknown, so both answers take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
_hash_slots = threading.BoundedSemaphore(HASH_SLOTS)


class TooManyAttempts(RefillError):
    code = "too_many_attempts"
    status = 429
    title = "Too many attempts"


@contextmanager
def _hash_slot(wait: float = HASH_WAIT) -> Iterator[None]:
    """One of the few password hashes this process runs at once, or 429."""
    if not _hash_slots.acquire(timeout=wait):
        raise TooManyAttempts(
            "the server is busy checking other sign-ins; try again in a few seconds",
            code="sign_in_busy",
            retry_after=2,
        )
    try:
        yield
    finally:
        _hash_slots.release()


def hash_password(password: str) -> str:
    with _hash_slot(wait=30.0):
        return _hasher.hash(check_password(password))


def _password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class Member:
    user_id: str
    email: str
    role: Role


@dataclass(frozen=True, slots=True)
class PortalSession:
    """Who is signed in, for which agency, and the CSRF token of their forms."""

    user_id: str
    email: str
    agency_id: str
    agency_name: str
    role: Role
    csrf_token: str

    @property
    def actor(self) -> str:
        return f"user:{self.user_id}"

    @property
    def can_change(self) -> bool:
        return self.role in ("owner", "admin")


def normalize_email(email: str) -> str:
    cleaned = email.strip().lower()
    local, _, domain = cleaned.partition("@")
    if not local or "." not in domain or len(cleaned) > 254 or any(c.isspace() for c in cleaned):
        raise ValidationFailed("enter an e-mail address such as owner@example.com", field="email")
    return cleaned


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(
            f"the password must have at least {MIN_PASSWORD_LENGTH} characters", field="password"
        )
    if len(password) > 1024:
        raise ValidationFailed(
            "the password is too long (1024 characters at most)", field="password"
        )
    return password


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- users and memberships ----------------------------------------------------------------


def add_member(
    db: Database,
    *,
    agency_id: str,
    email: str,
    role: Role,
    password: str | None,
    actor: str,
    attach_existing: bool = False,
) -> Member | None:
    """Give a person a role in the agency.

    From the billing page (``attach_existing=False``) only a new person is added, with the
    password given: an e-mail that already has an account is never attached to the agency
    without its owner's consent, and the caller cannot tell the two apart (both cost a
    password hash and both return None). An operator (``attach_existing=True``: the CLI,
    the demo) may give an existing user a role; a new e-mail still needs a password.
    """
    email = normalize_email(email)
    if role not in ROLES:
        raise ValidationFailed("the role must be owner, admin or member", field="role")
    if password is None and not attach_existing:
        raise ValidationFailed("set a password for the new member", field="password")
    existing = db.read(
        lambda tx: tx.conn.execute(select(users.c.id).where(users.c.email == email)).scalar()
    )
    password_hash = None
    if password is not None:
        password_hash = hash_password(password)  # slow: outside the transaction
    elif existing is None:
        raise ValidationFailed("a new user needs a password", field="password")
    if existing is not None and not attach_existing:
        return None

    def work(tx: Tx) -> Member | None:
        user_id = tx.conn.execute(select(users.c.id).where(users.c.email == email)).scalar()
        if user_id is not None and not attach_existing:
            return None  # created meanwhile: the same rule
        if user_id is None:
            if password_hash is None:
                raise Conflict("that user was removed meanwhile; try again")
            user_id = new_id("usr")
            tx.conn.execute(
                insert(users).values(
                    id=user_id, email=email, password_hash=password_hash, created_at=tx.now
                )
            )
        already = tx.conn.execute(
            select(memberships.c.role).where(
                memberships.c.user_id == user_id, memberships.c.agency_id == agency_id
            )
        ).scalar()
        if already is not None:
            raise Conflict(f"{email} is already {already} of this agency", code="already_member")
        tx.conn.execute(
            insert(memberships).values(
                user_id=user_id, agency_id=agency_id, role=role, created_at=tx.now
            )
        )
        audit.record(
            tx,
            agency_id=agency_id,
            actor=actor,
            action="member.added",
            target_id=user_id,
            after={"email": email, "role": role},
        )
        return Member(user_id, email, role)

    return db.write(work)


def set_password(db: Database, *, email: str, password: str) -> None:
    """Give an existing user a new password and end their sessions."""
    email = normalize_email(email)
    password_hash = hash_password(password)

    def work(tx: Tx) -> None:
        user_id = tx.conn.execute(select(users.c.id).where(users.c.email == email)).scalar()
        if user_id is None:
            raise NotFound(f"no user {email}", code="user_not_found")
        tx.conn.execute(
            update(users).where(users.c.id == user_id).values(password_hash=password_hash)
        )
        tx.conn.execute(
            update(portal_sessions)
            .where(portal_sessions.c.user_id == user_id, portal_sessions.c.ended_at.is_(None))
            .values(ended_at=tx.now)
        )

    db.write(work)


def list_members(db: Database, *, agency_id: str) -> list[Member]:
    def work(tx: Tx) -> list[Member]:
        rows = tx.conn.execute(
            select(users.c.id, users.c.email, memberships.c.role)
            .join(memberships, memberships.c.user_id == users.c.id)
            .where(memberships.c.agency_id == agency_id)
            .order_by(users.c.email)
        ).all()
        return [Member(row.id, row.email, row.role) for row in rows]

    return db.read(work)


def remove_member(db: Database, session: PortalSession, *, user_id: str) -> None:
    """Owners remove anyone but the last owner; admins remove admins and members."""
    if not session.can_change:
        raise Forbidden("members cannot change who belongs to the agency")

    def work(tx: Tx) -> None:
        role = tx.conn.execute(
            select(memberships.c.role).where(
                memberships.c.user_id == user_id, memberships.c.agency_id == session.agency_id
            )
        ).scalar()
        if role is None:
            raise NotFound("no such member in this agency", code="member_not_found")
        if role == "owner":
            if session.role != "owner":
                raise Forbidden("only an owner can remove an owner", code="owner_protected")
            owners = tx.conn.execute(
                select(func.count()).where(
                    memberships.c.agency_id == session.agency_id, memberships.c.role == "owner"
                )
            ).scalar_one()
            if owners <= 1:
                raise Conflict("the agency's last owner cannot be removed", code="last_owner")
        tx.conn.execute(
            delete(memberships).where(
                memberships.c.user_id == user_id, memberships.c.agency_id == session.agency_id
            )
        )
        # Their open sessions for this agency end now.
        tx.conn.execute(
            update(portal_sessions)
            .where(
                portal_sessions.c.user_id == user_id,
                portal_sessions.c.agency_id == session.agency_id,
                portal_sessions.c.ended_at.is_(None),
            )
            .values(ended_at=tx.now)
        )
        audit.record(
            tx,
            agency_id=session.agency_id,
            actor=session.actor,
            action="member.removed",
            target_id=user_id,
            before={"role": role},
        )

    db.write(work)


# --- sessions -----------------------------------------------------------------------------


def _count_attempt(tx: Tx, key: str) -> int:
    """One more attempt for ``key`` in its window (a new window once the old one ended);
    the count, read and written in one statement under the row's lock."""
    expired = tx.now - LOCKOUT
    stale = login_throttle.c.window_start <= expired
    stmt = (
        dialect_insert(tx)(login_throttle)
        .values(key=key, window_start=tx.now, attempts=1)
        .on_conflict_do_update(
            index_elements=["key"],
            set_={
                "attempts": case((stale, 1), else_=login_throttle.c.attempts + 1),
                "window_start": case((stale, tx.now), else_=login_throttle.c.window_start),
            },
        )
        .returning(login_throttle.c.attempts)
    )
    return int(tx.conn.execute(stmt).scalar_one())


def _throttle_keys(email: str, client_ip: str) -> tuple[str, str]:
    return f"email:{email}", f"ip:{client_ip[:64]}"


def sign_in(db: Database, *, email: str, password: str, client_ip: str) -> str:
    """A new session token for the user's (first) agency; raises ``Unauthenticated`` with
    one message for every wrong answer, or ``TooManyAttempts``."""
    try:
        email = normalize_email(email)
    except ValidationFailed:
        email = email.strip().lower()[:254]
    by_email, by_ip = _throttle_keys(email, client_ip)
    with _hash_slot():
        # Counted before the password is checked: a burst of guesses cannot pass the limit.
        counts = db.write(lambda tx: (_count_attempt(tx, by_email), _count_attempt(tx, by_ip)))
        if counts[0] > MAX_FAILURES or counts[1] > MAX_PER_ADDRESS:
            raise TooManyAttempts(
                f"too many sign-in attempts; wait {int(LOCKOUT.total_seconds() // 60)} minutes "
                "and try again",
                retry_after=int(LOCKOUT.total_seconds()),
            )
        found = db.read(
            lambda tx: tx.conn.execute(
                select(users.c.id, users.c.password_hash).where(users.c.email == email)
            ).one_or_none()
        )
        ok = _password_matches(found.password_hash if found else _DUMMY_HASH, password)
    agency_id = None
    if ok and found is not None:
        agency_id = db.read(
            lambda tx: tx.conn.execute(
                select(memberships.c.agency_id)
                .where(memberships.c.user_id == found.id)
                .order_by(memberships.c.created_at)
                .limit(1)
            ).scalar()
        )
    if found is None or not ok or agency_id is None:
        raise Unauthenticated("the e-mail or the password is wrong", code="sign_in_failed")
    token = secrets.token_urlsafe(32)

    def open_session(tx: Tx) -> None:
        tx.conn.execute(
            insert(portal_sessions).values(
                id=_digest(token),
                user_id=found.id,
                agency_id=agency_id,
                csrf_token=secrets.token_urlsafe(32),
                created_at=tx.now,
                last_seen_at=tx.now,
            )
        )
        # A success takes itself off both counts; the failures of the window still count,
        # so a burst of guesses with the right password among them checks at most
        # MAX_FAILURES of them, whatever the order.
        tx.conn.execute(
            update(login_throttle)
            .where(login_throttle.c.key.in_((by_email, by_ip)), login_throttle.c.attempts > 0)
            .values(attempts=login_throttle.c.attempts - 1)
        )
        # Old windows count for nothing: the table holds one window at most.
        tx.conn.execute(
            delete(login_throttle).where(login_throttle.c.window_start <= tx.now - LOCKOUT)
        )

    db.write(open_session)
    return token


def session_for(db: Database, token: str | None) -> PortalSession | None:
    """The live session of a cookie token (and note that it was used), or None.

    A read transaction: the page polls every few seconds, and a write (ending an expired
    session, or noting its use at most once a minute) happens only when there is one.
    """
    if not token or len(token) > 128:
        return None
    digest = _digest(token)

    # What to write after the read, if anything: "end" (expired) or "touch" (seen again).
    def look(tx: Tx) -> tuple[PortalSession | None, Literal["end", "touch"] | None]:
        row = tx.conn.execute(
            select(
                portal_sessions.c.user_id,
                portal_sessions.c.agency_id,
                portal_sessions.c.csrf_token,
                portal_sessions.c.created_at,
                portal_sessions.c.last_seen_at,
                users.c.email,
                agencies.c.name,
                memberships.c.role,
            )
            .join(users, users.c.id == portal_sessions.c.user_id)
            .join(agencies, agencies.c.id == portal_sessions.c.agency_id)
            .join(
                memberships,
                (memberships.c.user_id == portal_sessions.c.user_id)
                & (memberships.c.agency_id == portal_sessions.c.agency_id),
            )
            .where(portal_sessions.c.id == digest, portal_sessions.c.ended_at.is_(None))
        ).one_or_none()
        if row is None:
            return None, None
        if tx.now - row.last_seen_at > IDLE or tx.now - row.created_at > LIFETIME:
            return None, "end"
        session = PortalSession(
            row.user_id, row.email, row.agency_id, row.name, row.role, row.csrf_token
        )
        return session, "touch" if tx.now - row.last_seen_at > timedelta(minutes=1) else None

    session, then = db.read(look)
    if then is not None:
        column = "ended_at" if then == "end" else "last_seen_at"
        db.write(
            lambda tx: tx.conn.execute(
                update(portal_sessions)
                .where(portal_sessions.c.id == digest, portal_sessions.c.ended_at.is_(None))
                .values({column: tx.now})
            )
        )
    return session


def agencies_of(db: Database, *, user_id: str) -> list[tuple[str, str]]:
    """The (id, name) of every agency the user belongs to, by name."""

    def work(tx: Tx) -> list[tuple[str, str]]:
        rows = tx.conn.execute(
            select(agencies.c.id, agencies.c.name)
            .join(memberships, memberships.c.agency_id == agencies.c.id)
            .where(memberships.c.user_id == user_id)
            .order_by(agencies.c.name, agencies.c.id)
        ).all()
        return [(row.id, row.name) for row in rows]

    return db.read(work)


def switch_agency(db: Database, token: str, *, agency_id: str) -> None:
    """Point the session at another agency of the same user; any other agency is refused
    with ``NotFound`` (whether it exists or not) and the session stays where it was."""
    digest = _digest(token)

    def work(tx: Tx) -> None:
        user_id = tx.conn.execute(
            select(portal_sessions.c.user_id).where(
                portal_sessions.c.id == digest, portal_sessions.c.ended_at.is_(None)
            )
        ).scalar()
        member = (
            user_id is not None
            and tx.conn.execute(
                select(memberships.c.role).where(
                    memberships.c.user_id == user_id, memberships.c.agency_id == agency_id
                )
            ).scalar()
        )
        if not member:
            raise NotFound("you are not a member of that agency", code="agency_not_found")
        tx.conn.execute(
            update(portal_sessions)
            .where(portal_sessions.c.id == digest)
            .values(agency_id=agency_id, last_seen_at=tx.now)
        )

    db.write(work)


def sign_out(db: Database, token: str) -> None:
    db.write(
        lambda tx: tx.conn.execute(
            update(portal_sessions)
            .where(portal_sessions.c.id == _digest(token), portal_sessions.c.ended_at.is_(None))
            .values(ended_at=tx.now)
        )
    )


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and secrets.compare_digest(expected.encode(), (given or "").encode())
