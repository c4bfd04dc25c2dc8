"""Signing in to the billing page: the attempt throttle, sessions, and the agency a session
is for.

- Sign-in attempts are counted per e-mail and per client address *before* the password is
  checked (an upsert in the database, so every process sees them and a burst cannot pass
  the limit): past ``MAX_FAILURES`` for one e-mail or ``MAX_PER_ADDRESS`` from one address
  in a ``LOCKOUT`` window, sign-in is refused until the window ends. A success takes only
  itself off the counts.
- A session is a random token in an HttpOnly cookie; the database keeps only its SHA-256,
  the agency it was opened for, and the CSRF token its forms carry. It ends after ``IDLE``
  without use, ``LIFETIME`` after sign-in, or at sign-out.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from sqlalchemy import case, delete, insert, select, update

from refill import audit
from refill.db.database import Database, Tx, dialect_insert
from refill.db.schema import agencies, login_throttle, memberships, portal_sessions, users
from refill.errors import (
    Conflict,
    NotFound,
    TooManyAttempts,
    Unauthenticated,
    ValidationFailed,
)
from refill.roles import MemberRole
from refill.services.members import normalize_email
from refill.services.passwords import (
    DUMMY_HASH,
    check_new_password,
    hash_password,
    hash_slot,
    password_matches,
)

IDLE = timedelta(hours=12)
LIFETIME = timedelta(days=7)
MAX_FAILURES = 5
MAX_PER_ADDRESS = 20
LOCKOUT = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class PortalSession:
    """Who is signed in, for which agency, and the CSRF token of their forms."""

    user_id: str
    email: str
    agency_id: str
    agency_name: str
    role: MemberRole
    csrf_token: str

    @property
    def actor(self) -> str:
        return f"user:{self.user_id}"

    @property
    def can_change(self) -> bool:
        return self.role.can_change


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def count_attempt(tx: Tx, key: str) -> int:
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
    with hash_slot():
        # Counted before the password is checked: a burst of guesses cannot pass the limit.
        counts = db.write(lambda tx: (count_attempt(tx, by_email), count_attempt(tx, by_ip)))
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
        ok = password_matches(found.password_hash if found else DUMMY_HASH, password)
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
        insert_session(tx, token, user_id=found.id, agency_id=agency_id)
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


def insert_session(tx: Tx, token: str, *, user_id: str, agency_id: str) -> None:
    tx.conn.execute(
        insert(portal_sessions).values(
            id=_digest(token),
            user_id=user_id,
            agency_id=agency_id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=tx.now,
            last_seen_at=tx.now,
        )
    )


def end_all_sessions(tx: Tx, user_id: str) -> None:
    """Every session of the user ends now (a new password: whoever had the old one is out)."""
    tx.conn.execute(
        update(portal_sessions)
        .where(portal_sessions.c.user_id == user_id, portal_sessions.c.ended_at.is_(None))
        .values(ended_at=tx.now)
    )


def open_session(tx: Tx, *, user_id: str, agency_id: str) -> str:
    """A new session for a user who proved who they are another way (an invitation they
    accepted with a new password); its token."""
    token = secrets.token_urlsafe(32)
    insert_session(tx, token, user_id=user_id, agency_id=agency_id)
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
            row.user_id, row.email, row.agency_id, row.name, MemberRole(row.role), row.csrf_token
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


def end_other_sessions(tx: Tx, user_id: str, *, keep_token: str) -> int:
    """Every session of the user ends now but the one of ``keep_token``; how many ended."""
    ended = tx.conn.execute(
        update(portal_sessions)
        .where(
            portal_sessions.c.user_id == user_id,
            portal_sessions.c.ended_at.is_(None),
            portal_sessions.c.id != _digest(keep_token),
        )
        .values(ended_at=tx.now)
    ).rowcount
    return int(ended)


def _verify_own_password(
    db: Database, session: PortalSession, password: str, keys: tuple[str, str]
) -> str:
    """The stored hash, once ``password`` matched it; each try counts in the sign-in
    throttle (the same keys as signing in), so this form is no way round its limit."""
    with hash_slot():
        counts = db.write(lambda tx: tuple(count_attempt(tx, key) for key in keys))
        if counts[0] > MAX_FAILURES or counts[1] > MAX_PER_ADDRESS:
            raise TooManyAttempts(
                f"too many password attempts; wait {int(LOCKOUT.total_seconds() // 60)} "
                "minutes and try again",
                retry_after=int(LOCKOUT.total_seconds()),
            )
        stored: str = db.read(
            lambda tx: tx.conn.execute(
                select(users.c.password_hash).where(users.c.id == session.user_id)
            ).scalar_one()
        )
        matches = password_matches(stored, password)
    if not matches:
        raise Unauthenticated(
            "the current password is wrong", code="wrong_password", field="current_password"
        )
    return stored


def change_own_password(
    db: Database,
    session: PortalSession,
    *,
    token: str,
    current: str,
    new: str,
    repeat: str,
    client_ip: str,
) -> int:
    """A signed-in person's new password, once they proved they know the current one.

    Every other session of the user (any agency, any device) ends; the session of
    ``token`` stays. Audited in the session's agency. Returns how many sessions ended.
    """
    check_new_password(new, repeat)  # before anything is counted or written
    keys = _throttle_keys(session.email, client_ip)
    stored = _verify_own_password(db, session, current, keys)
    new_hash = hash_password(new)  # slow: outside the transaction

    def work(tx: Tx) -> int:
        # Compare-and-set: a change that landed since the check wins, this one is refused.
        changed = tx.conn.execute(
            update(users)
            .where(users.c.id == session.user_id, users.c.password_hash == stored)
            .values(password_hash=new_hash)
        ).rowcount
        if changed != 1:
            raise Conflict(
                "the password was changed meanwhile; sign in again with the new one",
                code="password_changed_meanwhile",
            )
        ended = end_other_sessions(tx, session.user_id, keep_token=token)
        # Like a successful sign-in: this try comes off the counts it was added to.
        tx.conn.execute(
            update(login_throttle)
            .where(login_throttle.c.key.in_(keys), login_throttle.c.attempts > 0)
            .values(attempts=login_throttle.c.attempts - 1)
        )
        audit.record(
            tx,
            agency_id=session.agency_id,
            actor=session.actor,
            action="account.password_changed",
            target_id=session.user_id,
            after={"other_sessions_ended": ended},
        )
        return ended

    return db.write(work)
