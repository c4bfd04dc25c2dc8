"""Wallets, for operators: `refill wallet adjust`."""

from __future__ import annotations

from typing import Annotated

import typer

from refill import services
from refill.cli.common import (
    fail,
    open_service,
)
from refill.errors import RefillError

wallet_app = typer.Typer(help="Wallets, for operators.", no_args_is_help=True)


@wallet_app.command("adjust")
def wallet_adjust(
    agency: Annotated[str, typer.Option(help="The agency's id (agc_…).")],
    amount: Annotated[
        str, typer.Option(help='Decimal, in the wallet\'s currency: "50.00" or "-12.50".')
    ],
    reason: Annotated[str, typer.Option(help="Why, for the audit log (required).")],
    reference: Annotated[
        str | None,
        typer.Option(help="Makes the adjustment happen once, however often it is run."),
    ] = None,
) -> None:
    """Credit or debit a wallet by hand (an adjustment in the ledger, never below zero),
    e.g. for money a card paid that Refill could not credit by itself."""
    from refill.money import format_amount, parse_amount

    refill = open_service()
    try:
        micros = parse_amount(amount, field="--amount", allow_negative=True)
        transfer, created = services.adjust_wallet(
            refill.db,
            agency_id=agency,
            amount=micros,
            reason=reason,
            reference=reference,
            actor="cli",
        )
        currency = services.get_agency(refill.db, agency).currency
    except RefillError as exc:
        raise fail(exc.message) from None
    finally:
        refill.close()
    what = "adjusted" if created else "already adjusted (same reference)"
    typer.echo(
        f"wallet {what}: {amount} {currency}, balance after "
        f"{format_amount(transfer.wallet_balance_after, currency)} {currency} "
        f"(reference {transfer.reference})"
    )
