"""What every route may depend on: the service, and who is calling."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from refill import services
from refill.errors import Forbidden, Unauthenticated
from refill.services import Principal
from refill.webctx import Service

__all__ = ["Anyone", "Cursor", "Limit", "Owner", "Service", "for_subteam"]


# Declared as the API's security scheme, so a generated client sends the key itself.
_bearer = HTTPBearer(
    auto_error=False, scheme_name="api_key", description="Authorization: Bearer <API key>"
)


def principal(
    refill: Service,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("send your API key as 'Authorization: Bearer <key>'")
    return services.authenticate(refill.db, credentials.credentials.strip())


def owner(p: Annotated[Principal, Depends(principal)]) -> Principal:
    if not p.is_owner:
        raise Forbidden(
            "this needs the agency owner's key; subteam keys can record usage and authorize "
            "calls only"
        )
    return p


def for_subteam(p: Principal, subteam_id: str) -> None:
    if not p.is_owner and p.subteam_id != subteam_id:
        raise Forbidden("a subteam key acts for its own subteam only")


Owner = Annotated[Principal, Depends(owner)]
Anyone = Annotated[Principal, Depends(principal)]
Limit = Annotated[int, Query(ge=1, le=services.MAX_PAGE, description="Items per page.")]
# Checked by the service (422 invalid_cursor), declared here for generated clients.
Cursor = Annotated[
    str | None,
    Query(
        description="next_cursor of the previous page, as it was.",
        json_schema_extra={"maxLength": 64, "pattern": "^[A-Za-z0-9_-]+$"},
    ),
]
