"""API keys, for operators: `refill keys list|create|revoke`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from refill import services
from refill.cli.common import (
    fail,
    open_service,
)
from refill.errors import RefillError

keys_app = typer.Typer(help="API keys: list, create, revoke.", no_args_is_help=True)


@keys_app.command("list")
def keys_list(
    agency: Annotated[str, typer.Option(help="The agency's id (agc_…).")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per key.")] = False,
) -> None:
    """An agency's API keys (never their secrets), newest first."""
    from rich.table import Table

    refill = open_service()
    try:
        services.get_agency(refill.db, agency)  # a mistyped id is an error, not "no keys"
        keys: list[services.ApiKey] = []
        cursor = None
        while True:
            page = services.list_keys(
                refill.db, agency_id=agency, limit=services.MAX_PAGE, cursor=cursor
            )
            keys.extend(page.data)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    except RefillError as exc:
        raise fail(exc.message) from None
    finally:
        refill.close()
    if as_json:
        for k in keys:
            typer.echo(
                json.dumps(
                    {
                        "id": k.id,
                        "role": k.role,
                        "subteam_id": k.subteam_id,
                        "name": k.name,
                        "created_at": k.created_at.isoformat(),
                        "last_used_at": k.last_used_at and k.last_used_at.isoformat(),
                        "revoked_at": k.revoked_at and k.revoked_at.isoformat(),
                        "expires_at": k.expires_at and k.expires_at.isoformat(),
                    }
                )
            )
        return
    table = Table("key", "role", "subteam", "name", "created", "last used", "state")
    for k in keys:
        state = (
            "revoked"
            if k.revoked_at
            else (f"expires {k.expires_at:%Y-%m-%d %H:%M}" if k.expires_at else "active")
        )
        table.add_row(
            k.id,
            k.role,
            k.subteam_id or "",
            k.name or "",
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never",
            state,
        )
    Console().print(table)


@keys_app.command("create")
def keys_create(
    agency: Annotated[str, typer.Option(help="The agency's id (agc_…).")],
    subteam: Annotated[
        str | None, typer.Option(help="A key for this subteam; without it, an owner key.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="What the key is for.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line on stdout.")] = False,
) -> None:
    """Create a key (shown once): how an operator recovers an agency's lost owner key."""
    refill = open_service()
    try:
        key = services.create_key(
            refill.db, agency_id=agency, subteam_id=subteam, name=name, actor="cli"
        )
    except RefillError as exc:
        raise fail(exc.message) from None
    finally:
        refill.close()
    if as_json:
        typer.echo(json.dumps({"id": key.id, "api_key": key.secret}))
    else:
        typer.echo(f"key:     {key.id}")
        typer.echo(f"api key: {key.secret}")
        typer.echo("The key is shown once; store it now.")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key (key_…).")]) -> None:
    """Revoke a key: every process refuses it from its next request."""
    refill = open_service()
    try:
        agency_id = services.key_agency(refill.db, key_id)
        services.revoke_key(refill.db, agency_id=agency_id, key_id=key_id, actor="cli")
    except RefillError as exc:
        raise fail(exc.message) from None
    finally:
        refill.close()
    typer.echo(f"key {key_id} revoked")
