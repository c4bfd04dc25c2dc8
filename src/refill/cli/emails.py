"""The e-mail outbox, for operators: `refill emails list`."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console

from refill.cli.common import fail, open_service
from refill.errors import RefillError
from refill.services import notifications

emails_app = typer.Typer(help="The e-mail outbox: list.", no_args_is_help=True)


class Status(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


@emails_app.command("list")
def emails_list(
    agency: Annotated[str | None, typer.Option(help="Only this agency's (agc_…).")] = None,
    status: Annotated[Status | None, typer.Option(help="Only e-mails in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per e-mail.")] = False,
) -> None:
    """The newest e-mails: to whom, which, and whether they went out (without
    REFILL_SMTP_URL they stay pending here; nothing is dropped)."""
    from rich.table import Table

    refill = open_service()
    try:
        found = notifications.list_emails(
            refill.db,
            agency_id=agency,
            status=status.value if status else None,
            limit=limit,
        )
    except RefillError as exc:
        raise fail(exc.message) from None
    finally:
        refill.close()
    if as_json:
        for e in found:
            typer.echo(
                json.dumps(
                    {
                        "id": e.id,
                        "agency_id": e.agency_id,
                        "template": e.template,
                        "to": e.to,
                        "status": e.status,
                        "attempts": e.attempts,
                        "last_error": e.last_error,
                        "created_at": e.created_at.isoformat(),
                        "sent_at": e.sent_at and e.sent_at.isoformat(),
                    }
                )
            )
        return
    table = Table("e-mail", "created", "agency", "what", "to", "state", "tries", "last error")
    for e in found:
        table.add_row(
            e.id,
            f"{e.created_at:%Y-%m-%d %H:%M}",
            e.agency_id or "",
            e.template,
            ", ".join(e.to) or "nobody",
            e.status,
            str(e.attempts),
            e.last_error or "",
        )
    Console().print(table)
