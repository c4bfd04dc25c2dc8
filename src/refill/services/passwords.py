"""Passwords: argon2id hashes (argon2-cffi's parameters), and a bound on how many are
computed at once.

A hash costs 64 MiB and tens of milliseconds: at most ``HASH_SLOTS`` run at once in a
process; a sign-in that finds none free within ``HASH_WAIT`` is told to come back (429 with
``Retry-After``). An unknown e-mail is checked against a dummy hash, so it costs the same
as a known one, inside the same bound.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from refill.errors import (
    TooManyAttempts,
    ValidationFailed,
)

MIN_PASSWORD_LENGTH = 12
HASH_SLOTS = 2
HASH_WAIT = 3.0  # seconds a sign-in waits for a free hashing slot

_hasher = PasswordHasher()
# Verified against when the e-mail is unknown, so both answers take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
_hash_slots = threading.BoundedSemaphore(HASH_SLOTS)


@contextmanager
def hash_slot(wait: float = HASH_WAIT) -> Iterator[None]:
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


def use_hasher(hasher: PasswordHasher) -> None:
    """Hash new passwords with these parameters from now on, in this process. Only the
    in-process tests call it (argon2-cffi's cheapest profile); a server keeps the defaults,
    and a hash always verifies with the parameters written in it."""
    global _hasher
    _hasher = hasher


def hash_password(password: str) -> str:
    with hash_slot(wait=30.0):
        return _hasher.hash(check_password(password))


def password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# Verified against when the e-mail is unknown, so both answers take the same time.
DUMMY_HASH = _DUMMY_HASH


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


def check_new_password(password: str, repeat: str) -> str:
    """A password a signed-in person chooses for themselves: the rules of every other
    password, and typed the same twice (a typo would lock them out)."""
    try:
        check_password(password)
    except ValidationFailed as exc:
        raise ValidationFailed(exc.message, field="new_password") from None
    if not secrets.compare_digest(password.encode(), repeat.encode()):
        raise ValidationFailed(
            "the two new passwords differ: type the same one twice", field="repeat_password"
        )
    return password
