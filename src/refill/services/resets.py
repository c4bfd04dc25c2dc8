"""Forgotten passwords: a single-use reset link by e-mail, valid for ``VALID_FOR``.

Asking says the same whether the address has an account or not, and is throttled per
address and per client. Setting the new password ends every session of the user and every
other pending reset. The link's token is derived from the server's key and the reset's id.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, select, update

from refill.db.database import Database, Tx
from refill.db.schema import password_resets, users
from refill.errors import NotFound, TooManyAttempts, ValidationFailed
from refill.ids import new_id
from refill.keyring import Keyring
from refill.notify.dispatch import add_email
from refill.services.members import normalize_email
from refill.services.passwords import hash_password
from refill.services.sessions import LOCKOUT, count_attempt, end_all_sessions

VALID_FOR = timedelta(hours=1)
PURPOSE = "password-reset"
MAX_PER_EMAIL = 3  # per LOCKOUT window
MAX_PER_ADDRESS = 10
GONE = "This reset link is not valid any more: ask for a new one."


def request_reset(db: Database, *, email: str, client_ip: str) -> None:
    """E-mail a reset link if the address has an account; nothing tells whether it does."""
    try:
        email = normalize_email(email)
    except ValidationFailed:
        return

    def work(tx: Tx) -> None:
        by_email = count_attempt(tx, f"reset:{email}")
        by_ip = count_attempt(tx, f"reset-ip:{client_ip[:64]}")
        if by_email > MAX_PER_EMAIL or by_ip > MAX_PER_ADDRESS:
            raise TooManyAttempts(
                f"too many reset requests; wait {int(LOCKOUT.total_seconds() // 60)} minutes "
                "and try again",
                code="too_many_resets",
                retry_after=int(LOCKOUT.total_seconds()),
            )
        user_id = tx.conn.execute(select(users.c.id).where(users.c.email == email)).scalar()
        if user_id is None:
            return
        reset_id = new_id("pwr")
        expires_at = tx.now + VALID_FOR
        tx.conn.execute(
            insert(password_resets).values(
                id=reset_id, user_id=user_id, created_at=tx.now, expires_at=expires_at
            )
        )
        add_email(
            tx,
            agency_id=None,
            template="password_reset",
            params={"reset_id": reset_id, "email": email, "expires_at": expires_at.isoformat()},
            to=[email],
        )

    db.write(work)


def _valid(tx: Tx, keyring: Keyring, reset_id: str, token: str) -> str:
    """The user the reset is for, if the link is right and still open."""
    row = tx.conn.execute(
        select(password_resets).where(password_resets.c.id == reset_id)
    ).one_or_none()
    if (
        row is None
        or not keyring.token_ok(token, PURPOSE, reset_id)
        or row.used_at is not None
        or row.expires_at <= tx.now
    ):
        raise NotFound(GONE, code="reset_not_valid")
    return str(row.user_id)


def check_link(db: Database, keyring: Keyring, *, reset_id: str, token: str) -> None:
    db.read(lambda tx: _valid(tx, keyring, reset_id, token))


def complete_reset(
    db: Database, keyring: Keyring, *, reset_id: str, token: str, password: str
) -> None:
    """Set the new password, use the link, end the user's sessions and other links."""
    check_link(db, keyring, reset_id=reset_id, token=token)
    password_hash = hash_password(password)  # slow, and checks the password's length

    def work(tx: Tx) -> None:
        user_id = _valid(tx, keyring, reset_id, token)
        used = tx.conn.execute(
            update(password_resets)
            .where(password_resets.c.user_id == user_id, password_resets.c.used_at.is_(None))
            .values(used_at=tx.now)
        ).rowcount
        if used < 1:
            raise NotFound(GONE, code="reset_not_valid")
        tx.conn.execute(
            update(users).where(users.c.id == user_id).values(password_hash=password_hash)
        )
        end_all_sessions(tx, user_id)

    db.write(work)


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
        end_all_sessions(tx, user_id)

    db.write(work)
