"""Invitations: how a person joins an agency's billing page.

Adding a member sends an invitation e-mail with a single-use link that expires after
``VALID_FOR``. A new person sets a password there (and is signed in); someone who already
has an account signs in and accepts. Nobody is attached to an agency without accepting,
and the inviter's page says the same whether the e-mail has an account or not.

The link's token is derived from the server's key and the invitation's id (``keyring``),
so the database keeps no secret; an invitation is single-use by its ``accepted_at``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update

from refill import audit
from refill.db.database import Database, Tx
from refill.db.rows import record
from refill.db.schema import invitations, memberships, users
from refill.errors import Conflict, Forbidden, NotFound, TooManyAttempts, ValidationFailed
from refill.ids import new_id
from refill.keyring import Keyring
from refill.notify.dispatch import add_email
from refill.roles import MemberRole
from refill.services.agencies import load_agency
from refill.services.members import normalize_email
from refill.services.passwords import hash_password
from refill.services.sessions import LOCKOUT, count_attempt, open_session

VALID_FOR = timedelta(days=7)
PURPOSE = "invitation"
# Invitations an agency may send per ``LOCKOUT`` window: enough for a team, not for spam.
MAX_PER_WINDOW = 20
GONE = "This invitation link is not valid any more: ask for a new invitation."


@dataclass(frozen=True, slots=True)
class Invitation:
    id: str
    agency_id: str
    email: str
    role: str
    invited_by: str
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    revoked_at: datetime | None

    def open_at(self, now: datetime) -> bool:
        return self.accepted_at is None and self.revoked_at is None and now < self.expires_at


def _load(tx: Tx, invitation_id: str) -> Invitation | None:
    row = tx.conn.execute(
        select(invitations).where(invitations.c.id == invitation_id)
    ).one_or_none()
    return None if row is None else record(Invitation, row._mapping)


def _member_role(tx: Tx, agency_id: str, email: str) -> str | None:
    return tx.conn.execute(
        select(memberships.c.role)
        .join(users, users.c.id == memberships.c.user_id)
        .where(memberships.c.agency_id == agency_id, users.c.email == email)
    ).scalar()


def invite(
    db: Database,
    *,
    agency_id: str,
    email: str,
    role: str,
    by: MemberRole,
    inviter: str,
    actor: str,
) -> Invitation:
    """Send an invitation (a new one replaces the pending one for the same address)."""
    email = normalize_email(email)
    if role not in tuple(MemberRole):
        raise ValidationFailed("the role must be owner, admin or member", field="role")
    if not by.can_change:
        raise Forbidden("members cannot invite anyone")
    if role == MemberRole.OWNER and by is not MemberRole.OWNER:
        raise Forbidden("only an owner can make another owner", field="role")

    def work(tx: Tx) -> Invitation:
        if count_attempt(tx, f"invite:{agency_id}") > MAX_PER_WINDOW:
            raise TooManyAttempts(
                f"too many invitations at once; wait {int(LOCKOUT.total_seconds() // 60)} "
                "minutes and try again",
                code="too_many_invitations",
                retry_after=int(LOCKOUT.total_seconds()),
            )
        already = _member_role(tx, agency_id, email)
        if already is not None:
            raise Conflict(f"{email} is already {already} of this agency", code="already_member")
        tx.conn.execute(
            update(invitations)
            .where(
                invitations.c.agency_id == agency_id,
                invitations.c.email == email,
                invitations.c.accepted_at.is_(None),
                invitations.c.revoked_at.is_(None),
            )
            .values(revoked_at=tx.now)
        )
        invitation = Invitation(
            new_id("inv"), agency_id, email, role, inviter, tx.now, tx.now + VALID_FOR, None, None
        )
        tx.conn.execute(
            insert(invitations).values(
                id=invitation.id,
                agency_id=agency_id,
                email=email,
                role=role,
                invited_by=inviter[:64],
                created_at=tx.now,
                expires_at=invitation.expires_at,
            )
        )
        add_email(
            tx,
            agency_id=agency_id,
            template="invitation",
            params={
                "invitation_id": invitation.id,
                "role": role,
                "invited_by": inviter,
                "expires_at": invitation.expires_at.isoformat(),
            },
            to=[email],
        )
        audit.record(
            tx,
            agency_id=agency_id,
            actor=actor,
            action="member.invited",
            target_id=invitation.id,
            after={"email": email, "role": role},
        )
        return invitation

    return db.write(work)


def pending_invitations(db: Database, *, agency_id: str) -> list[Invitation]:
    def work(tx: Tx) -> list[Invitation]:
        rows = tx.conn.execute(
            select(invitations)
            .where(
                invitations.c.agency_id == agency_id,
                invitations.c.accepted_at.is_(None),
                invitations.c.revoked_at.is_(None),
                invitations.c.expires_at > tx.now,
            )
            .order_by(invitations.c.created_at.desc())
        ).all()
        return [record(Invitation, r._mapping) for r in rows]

    return db.read(work)


def revoke(db: Database, *, agency_id: str, invitation_id: str, by: MemberRole, actor: str) -> None:
    if not by.can_change:
        raise Forbidden("members cannot change who belongs to the agency")

    def work(tx: Tx) -> None:
        found = _load(tx, invitation_id)
        if found is None or found.agency_id != agency_id or not found.open_at(tx.now):
            raise NotFound("no such pending invitation", code="invitation_not_found")
        tx.conn.execute(
            update(invitations).where(invitations.c.id == invitation_id).values(revoked_at=tx.now)
        )
        audit.record(
            tx,
            agency_id=agency_id,
            actor=actor,
            action="member.invitation_revoked",
            target_id=invitation_id,
            before={"email": found.email, "role": found.role},
        )

    db.write(work)


def _valid(tx: Tx, keyring: Keyring, invitation_id: str, token: str) -> Invitation:
    found = _load(tx, invitation_id)
    if (
        found is None
        or not keyring.token_ok(token, PURPOSE, invitation_id)
        or not found.open_at(tx.now)
    ):
        raise NotFound(GONE, code="invitation_not_valid")
    return found


@dataclass(frozen=True, slots=True)
class InvitationView:
    invitation: Invitation
    agency_name: str
    has_account: bool  # shown only to who holds the link: it came to that address


def view(db: Database, keyring: Keyring, *, invitation_id: str, token: str) -> InvitationView:
    def work(tx: Tx) -> InvitationView:
        found = _valid(tx, keyring, invitation_id, token)
        user = tx.conn.execute(select(users.c.id).where(users.c.email == found.email)).scalar()
        return InvitationView(found, load_agency(tx, found.agency_id).name, user is not None)

    return db.read(work)


def _join(tx: Tx, found: Invitation, user_id: str) -> None:
    """Mark it used (once: a second acceptance finds it used) and add the membership."""
    used = tx.conn.execute(
        update(invitations)
        .where(invitations.c.id == found.id, invitations.c.accepted_at.is_(None))
        .values(accepted_at=tx.now)
    ).rowcount
    if used != 1:
        raise NotFound(GONE, code="invitation_not_valid")
    if _member_role(tx, found.agency_id, found.email) is None:
        tx.conn.execute(
            insert(memberships).values(
                user_id=user_id, agency_id=found.agency_id, role=found.role, created_at=tx.now
            )
        )
    audit.record(
        tx,
        agency_id=found.agency_id,
        actor=f"user:{user_id}",
        action="member.added",
        target_id=user_id,
        after={"email": found.email, "role": found.role, "invited_by": found.invited_by},
    )


def accept_as_new_user(
    db: Database, keyring: Keyring, *, invitation_id: str, token: str, password: str
) -> str:
    """Create the invited person's account with this password and join; a session token."""
    db.read(lambda tx: _valid(tx, keyring, invitation_id, token))
    password_hash = hash_password(password)  # slow, and checks the password's length

    def work(tx: Tx) -> str:
        found = _valid(tx, keyring, invitation_id, token)
        if tx.conn.execute(select(users.c.id).where(users.c.email == found.email)).scalar():
            raise Conflict(
                "this address already has an account: sign in to accept",
                code="account_exists",
            )
        user_id = new_id("usr")
        tx.conn.execute(
            insert(users).values(
                id=user_id, email=found.email, password_hash=password_hash, created_at=tx.now
            )
        )
        _join(tx, found, user_id)
        return open_session(tx, user_id=user_id, agency_id=found.agency_id)

    return db.write(work)


def accept_as_user(
    db: Database, keyring: Keyring, *, invitation_id: str, token: str, user_id: str
) -> str:
    """The signed-in user joins, if the invitation was sent to their address; the agency."""

    def work(tx: Tx) -> str:
        found = _valid(tx, keyring, invitation_id, token)
        email = tx.conn.execute(select(users.c.email).where(users.c.id == user_id)).scalar()
        if email != found.email:
            raise Forbidden(
                "this invitation was sent to another address: sign in as that address",
                code="invitation_for_another",
            )
        _join(tx, found, user_id)
        return found.agency_id

    return db.write(work)
