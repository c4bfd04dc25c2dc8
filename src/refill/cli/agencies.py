"""Agencies: `refill agency create`."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from refill import services
from refill.cli.common import (
    fail,
    open_service,
)
from refill.errors import RefillError
from refill.roles import MemberRole
from refill.services import members, passwords

agency_app = typer.Typer(help="Agencies (top-level teams).", no_args_is_help=True)


@agency_app.command("create")
def agency_create(
    name: Annotated[str, typer.Option(help="The agency's display name.")],
    currency: Annotated[str, typer.Option(help="ISO 4217 code of the wallet.")] = "USD",
    owner_email: Annotated[
        str | None, typer.Option(help="Also create the owner's sign-in for the billing page.")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the owner's password from stdin.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line on stdout.")] = False,
) -> None:
    """Create an agency with its wallet and print an owner API key (shown once).

    With --owner-email, the owner's billing-page user is created too; the password is read
    from standard input (--password-stdin), never from the command line.
    """
    password = None
    if owner_email is not None:
        if not password_stdin:
            raise fail("--owner-email needs --password-stdin (the password is read from stdin)")
        password = sys.stdin.readline().rstrip("\r\n")
        try:
            members.normalize_email(owner_email)
            passwords.check_password(password)
        except RefillError as exc:
            raise fail(exc.message) from None
    elif password_stdin:
        raise fail("--password-stdin is for the owner's password: give --owner-email too")
    refill = open_service()
    try:
        agency, key = services.create_agency(refill.db, name=name, currency=currency)
        if owner_email is not None:
            members.add_member(
                refill.db,
                agency_id=agency.id,
                email=owner_email,
                role=MemberRole.OWNER,
                password=password,
                actor="cli",
                attach_existing=True,
            )
    except RefillError as exc:
        raise fail(exc.message) from None
    finally:
        refill.close()
    if as_json:
        out = {"agency_id": agency.id, "api_key": key.secret}
        if owner_email is not None:
            out["owner_email"] = members.normalize_email(owner_email)
        typer.echo(json.dumps(out))
    else:
        typer.echo(f"agency:  {agency.id} ({agency.name}, {agency.currency})")
        typer.echo(f"api key: {key.secret}")
        if owner_email is not None:
            typer.echo(
                f"owner:   {members.normalize_email(owner_email)} (signs in at /portal/login)"
            )
        typer.echo("The key is shown once; store it now.")
