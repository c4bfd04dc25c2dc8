"""Reload attempts, for operators: `refill reloads stuck|settle|resolve-alert`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy.exc import DBAPIError

from refill import alerts
from refill.alerts import Alert
from refill.cli.common import (
    DATABASE_UNUSABLE,
    cannot_open,
    console,
    fail,
    open_service,
)
from refill.errors import RefillError
from refill.money import Money
from refill.reload.attempt import ReloadAttempt

reloads_app = typer.Typer(help="Reload attempts, for operators.", no_args_is_help=True)

# `refill reloads stuck` exits 1 when it lists something; 2 when it could not look.
FOUND_SOMETHING = 1
COULD_NOT_CHECK = DATABASE_UNUSABLE


@reloads_app.command("stuck")
def reloads_stuck(
    minutes: Annotated[
        float, typer.Option(help="Report charges unresolved for longer than this.")
    ] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per item.")] = False,
) -> None:
    """List charges whose outcome the gateway has not given for a long time, and the open
    operator alerts (money taken that could not be credited by itself).

    Exit status, for monitoring:
    0 nothing is stuck and no alert is open;
    1 something is listed;
    2 the check could not be made (no database, not migrated, cannot be opened, any error).
    """
    from rich.table import Table

    stuck, open_alerts = read_what_is_stuck(minutes)
    if as_json:
        for a in stuck:
            typer.echo(
                json.dumps(
                    {
                        "type": "stuck_reload",
                        "id": a.id,
                        "agency_id": a.agency_id,
                        "amount": a.amount,
                        "currency": a.currency,
                        "since": a.created_at.isoformat(),
                    }
                )
            )
        for alert in open_alerts:
            typer.echo(
                json.dumps(
                    {
                        "type": "alert",
                        "id": alert.id,
                        "kind": alert.kind,
                        "subject": alert.subject,
                        "agency_id": alert.agency_id,
                        "message": alert.message,
                        "since": alert.created_at.isoformat(),
                    }
                )
            )
    else:
        out = Console()
        if stuck:
            table = Table("reload", "agency", "amount", "charging since")
            for a in stuck:
                table.add_row(
                    a.id, a.agency_id, str(Money(a.amount, a.currency)), a.created_at.isoformat()
                )
            out.print(table)
        if open_alerts:
            table = Table("alert", "kind", "about", "since", "what to do")
            for alert in open_alerts:
                table.add_row(
                    alert.id,
                    alert.kind,
                    alert.subject,
                    alert.created_at.isoformat(),
                    alert.message,
                )
            out.print(table)
        if not stuck and not open_alerts:
            out.print("no stuck reloads, no open alerts")
    if stuck or open_alerts:
        raise typer.Exit(code=FOUND_SOMETHING)


def read_what_is_stuck(minutes: float) -> tuple[list[ReloadAttempt], list[Alert]]:
    """The stuck charges and open alerts, or exit 2 on any failure: an uncaught error or a
    refusal would exit 1, which monitoring reads as "something is stuck"."""
    from datetime import timedelta

    from refill.reload.queries import stuck_attempts

    try:
        refill = open_service()
    except typer.Exit:
        raise typer.Exit(code=COULD_NOT_CHECK) from None  # its message is already printed
    except Exception:
        console.print_exception()
        raise typer.Exit(code=COULD_NOT_CHECK) from None
    try:
        since = refill.db.clock.now() - timedelta(minutes=minutes)
        stuck = refill.db.read(lambda tx: stuck_attempts(tx, charging_since=since))
        return stuck, refill.db.read(alerts.open_alerts)
    except RefillError as exc:
        raise fail(exc.message, code=COULD_NOT_CHECK) from None
    except DBAPIError as exc:
        raise cannot_open(refill.settings.database_url, exc) from None
    except Exception:
        console.print_exception()
        raise typer.Exit(code=COULD_NOT_CHECK) from None
    finally:
        refill.close()


@reloads_app.command("settle")
def reloads_settle(
    reload_id: Annotated[str, typer.Argument(help="The reload (rld_…) to settle.")],
    paid: Annotated[
        bool,
        typer.Option(
            "--paid/--not-paid", help="What the gateway shows: the money was taken, or not."
        ),
    ],
    reason: Annotated[str, typer.Option(help="What you checked, for the audit log.")],
) -> None:
    """Record the outcome of a charge Refill cannot resolve, after checking the gateway:
    --paid credits the wallet once, --not-paid cancels it (never charged again)."""
    from functools import partial

    from refill.reload.settlement import settle_by_operator

    refill = open_service()
    try:
        attempt = refill.db.write(
            partial(
                settle_by_operator,
                policy=refill.policy,
                attempt_id=reload_id,
                paid=paid,
                reason=reason,
                actor="cli",
            )
        )
        for alert in refill.db.read(alerts.open_alerts):
            if alert.subject == reload_id:
                refill.db.write(
                    partial(
                        alerts.resolve_alert, alert_id=alert.id, resolution=f"settled: {reason}"
                    )
                )
    except RefillError as exc:
        raise fail(exc.message) from None
    finally:
        refill.close()
    typer.echo(f"reload {attempt.id} is {attempt.status}")


@reloads_app.command("resolve-alert")
def resolve_alert(
    alert_id: Annotated[str, typer.Argument(help="The alert (alr_…).")],
    note: Annotated[str, typer.Option(help="What was done about it.")],
) -> None:
    """Mark an operator alert as dealt with (it leaves `refill reloads stuck`)."""
    from functools import partial

    refill = open_service()
    try:
        refill.db.write(partial(alerts.resolve_alert, alert_id=alert_id, resolution=note))
    except RefillError as exc:
        raise fail(exc.message) from None
    finally:
        refill.close()
    typer.echo(f"alert {alert_id} resolved")
