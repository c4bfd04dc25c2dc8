"""Who may do what: the roles of API keys and of the people on the billing page."""

from __future__ import annotations

from enum import StrEnum


class KeyRole(StrEnum):
    OWNER = "owner"  # everything the agency may do through the API
    SUBTEAM = "subteam"  # record usage and authorize calls for its own subteam only


class MemberRole(StrEnum):
    OWNER = "owner"  # everything, including owners
    ADMIN = "admin"  # settings and members, but cannot remove or make an owner
    MEMBER = "member"  # reads the billing page

    @property
    def can_change(self) -> bool:
        return self is not MemberRole.MEMBER
