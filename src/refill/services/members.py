"""The people of an agency: users (one per e-mail), their memberships with a role, and
what owners and admins may change about them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select, update

from refill import audit
from refill.db.database import Database, Tx
from refill.db.schema import agencies, api_keys, memberships, portal_sessions, users
from refill.errors import (
    Conflict,
    Forbidden,
    NotFound,
    RefillError,
    ValidationFailed,
)
from refill.ids import new_id
from refill.roles import MemberRole
from refill.services.passwords import hash_password


@dataclass(frozen=True, slots=True)
class Member:
    user_id: str
    email: str
    role: MemberRole


def normalize_email(email: str) -> str:
    cleaned = email.strip().lower()
    local, _, domain = cleaned.partition("@")
    if not local or "." not in domain or len(cleaned) > 254 or any(c.isspace() for c in cleaned):
        raise ValidationFailed("enter an e-mail address such as owner@example.com", field="email")
    return cleaned


def add_member(
    db: Database,
    *,
    agency_id: str,
    email: str,
    role: MemberRole,
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
    if role not in tuple(MemberRole):
        raise ValidationFailed("the role must be owner, admin or member", field="role")
    role = MemberRole(role)
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


def list_members(db: Database, *, agency_id: str) -> list[Member]:
    def work(tx: Tx) -> list[Member]:
        rows = tx.conn.execute(
            select(users.c.id, users.c.email, memberships.c.role)
            .join(memberships, memberships.c.user_id == users.c.id)
            .where(memberships.c.agency_id == agency_id)
            .order_by(users.c.email)
        ).all()
        return [Member(row.id, row.email, MemberRole(row.role)) for row in rows]

    return db.read(work)


def remove_member(
    db: Database, *, agency_id: str, user_id: str, by: MemberRole, actor: str
) -> None:
    """Owners remove anyone but the last owner; admins remove admins and members."""
    if not by.can_change:
        raise Forbidden("members cannot change who belongs to the agency")

    def work(tx: Tx) -> None:
        role = tx.conn.execute(
            select(memberships.c.role).where(
                memberships.c.user_id == user_id, memberships.c.agency_id == agency_id
            )
        ).scalar()
        if role is None:
            raise NotFound("no such member in this agency", code="member_not_found")
        if role == MemberRole.OWNER:
            if by is not MemberRole.OWNER:
                raise Forbidden("only an owner can remove an owner", code="owner_protected")
            owners = tx.conn.execute(
                select(func.count()).where(
                    memberships.c.agency_id == agency_id, memberships.c.role == MemberRole.OWNER
                )
            ).scalar_one()
            if owners <= 1:
                raise Conflict("the agency's last owner cannot be removed", code="last_owner")
        tx.conn.execute(
            delete(memberships).where(
                memberships.c.user_id == user_id, memberships.c.agency_id == agency_id
            )
        )
        # Their open sessions for this agency end now.
        tx.conn.execute(
            update(portal_sessions)
            .where(
                portal_sessions.c.user_id == user_id,
                portal_sessions.c.agency_id == agency_id,
                portal_sessions.c.ended_at.is_(None),
            )
            .values(ended_at=tx.now)
        )
        audit.record(
            tx,
            agency_id=agency_id,
            actor=actor,
            action="member.removed",
            target_id=user_id,
            before={"role": role},
        )

    db.write(work)


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


@dataclass(frozen=True, slots=True)
class Recipient:
    """An owner or admin, who gets billing e-mail, and what they chose to get."""

    user_id: str
    email: str
    role: MemberRole
    receipt_emails: bool
    low_balance_emails: bool


def billing_recipients(db: Database, *, agency_id: str) -> list[Recipient]:
    def work(tx: Tx) -> list[Recipient]:
        rows = tx.conn.execute(
            select(
                users.c.id,
                users.c.email,
                memberships.c.role,
                memberships.c.receipt_emails,
                memberships.c.low_balance_emails,
            )
            .join(memberships, memberships.c.user_id == users.c.id)
            .where(
                memberships.c.agency_id == agency_id,
                memberships.c.role.in_((MemberRole.OWNER, MemberRole.ADMIN)),
            )
            .order_by(users.c.email)
        ).all()
        return [
            Recipient(r.id, r.email, MemberRole(r.role), r.receipt_emails, r.low_balance_emails)
            for r in rows
        ]

    return db.read(work)


def set_email_choices(
    db: Database, *, agency_id: str, user_id: str, receipts: bool, low_balance: bool
) -> None:
    """A person's own choice of the e-mails they may turn off (failures, suspension and
    the rest always go out)."""

    def work(tx: Tx) -> None:
        changed = tx.conn.execute(
            update(memberships)
            .where(memberships.c.agency_id == agency_id, memberships.c.user_id == user_id)
            .values(receipt_emails=receipts, low_balance_emails=low_balance)
        ).rowcount
        if changed != 1:
            raise NotFound("no such member in this agency", code="member_not_found")

    db.write(work)


def role_refusal(
    *, by: MemberRole, own: bool, current: MemberRole, new: MemberRole, owners: int
) -> RefillError | None:
    """Why someone whose role is ``by`` may not turn ``current`` into ``new`` (``own``: it
    is their own role), or None. The one rule behind the page's choices and the change."""
    if not by.can_change:
        return Forbidden("members cannot change roles", code="read_only")
    if own and by is not MemberRole.OWNER:
        return Forbidden("only an owner can change their own role", code="own_role")
    if by is not MemberRole.OWNER and MemberRole.OWNER in (current, new):
        return Forbidden(
            "only an owner can make an owner or change an owner's role", code="owner_protected"
        )
    if current is MemberRole.OWNER and new is not MemberRole.OWNER and owners <= 1:
        return Conflict("an agency needs at least one owner", code="last_owner")
    return None


def assignable_roles(
    member: Member, *, by: MemberRole, by_user_id: str, owners: int
) -> tuple[MemberRole, ...]:
    """The roles ``by`` may give ``member`` instead of theirs (empty: none)."""
    return tuple(
        role
        for role in MemberRole
        if role is not member.role
        and role_refusal(
            by=by,
            own=member.user_id == by_user_id,
            current=member.role,
            new=role,
            owners=owners,
        )
        is None
    )


def change_role(
    db: Database, *, agency_id: str, user_id: str, role: str, by_user_id: str, actor: str
) -> Member:
    """Give a member another role, as ``role_refusal`` allows; audited before -> after.

    The role of the one who asks is read in the transaction, and the agency's row is
    locked first, so two owners demoting each other at once cannot leave none.
    """
    if role not in tuple(MemberRole):
        raise ValidationFailed("the role must be owner, admin or member", field="role")
    new = MemberRole(role)

    def role_of(tx: Tx, who: str) -> MemberRole | None:
        found = tx.conn.execute(
            select(memberships.c.role).where(
                memberships.c.user_id == who, memberships.c.agency_id == agency_id
            )
        ).scalar()
        return None if found is None else MemberRole(found)

    def work(tx: Tx) -> Member:
        tx.conn.execute(select(agencies.c.id).where(agencies.c.id == agency_id).with_for_update())
        by = role_of(tx, by_user_id)
        if by is None:
            raise Forbidden("you are not a member of this agency", code="not_a_member")
        current = role_of(tx, user_id)
        email = tx.conn.execute(select(users.c.email).where(users.c.id == user_id)).scalar()
        if current is None or email is None:
            raise NotFound("no such member in this agency", code="member_not_found")
        if current is new:
            return Member(user_id, email, new)  # nothing changes, nothing is written
        owners = tx.conn.execute(
            select(func.count()).where(
                memberships.c.agency_id == agency_id, memberships.c.role == MemberRole.OWNER
            )
        ).scalar_one()
        refusal = role_refusal(
            by=by, own=user_id == by_user_id, current=current, new=new, owners=owners
        )
        if refusal is not None:
            raise refusal
        tx.conn.execute(
            update(memberships)
            .where(memberships.c.user_id == user_id, memberships.c.agency_id == agency_id)
            .values(role=new)
        )
        audit.record(
            tx,
            agency_id=agency_id,
            actor=actor,
            action="member.role_changed",
            target_id=user_id,
            before={"role": current},
            after={"role": new},
        )
        return Member(user_id, email, new)

    return db.write(work)


def names_in_audit_log(db: Database, *, agency_id: str, ids: Iterable[str]) -> dict[str, str]:
    """How the audit log names the people and API keys it mentions by id: a user's e-mail,
    a key's name (keys of this agency only; unnamed keys are left out)."""
    wanted = set(ids)
    user_ids = [i for i in wanted if i.startswith("usr_")]
    key_ids = [i for i in wanted if i.startswith("key_")]

    def work(tx: Tx) -> dict[str, str]:
        names: dict[str, str] = {}
        if user_ids:
            rows = tx.conn.execute(
                select(users.c.id, users.c.email).where(users.c.id.in_(user_ids))
            ).all()
            names.update({row.id: row.email for row in rows})
        if key_ids:
            rows = tx.conn.execute(
                select(api_keys.c.id, api_keys.c.name).where(
                    api_keys.c.agency_id == agency_id, api_keys.c.id.in_(key_ids)
                )
            ).all()
            names.update({row.id: row.name for row in rows if row.name})
        return names

    return db.read(work)
