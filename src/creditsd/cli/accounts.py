"""``creditsd accounts show`` and ``creditsd grant``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from creditsd.cli.apps import accounts_app, app
from creditsd.cli.common import CLI_APP, USAGE_ERROR, Command, cli_actor, err, out, with_ledger

if TYPE_CHECKING:  # the server's modules load inside the commands, so that --help is quick
    from creditsd.inprocess import Ledger
    from creditsd.kit.money import Money
    from creditsd.ledger.runway import Runway


@accounts_app.command("show", cls=Command)
def accounts_show(account_id: str) -> None:
    """Show an account's balance, held and available credits, its runway and auto top-up."""
    from creditsd.autotopup import service as autotopup
    from creditsd.autotopup.errors import NoAutoTopup
    from creditsd.cli.autotopup import summary
    from creditsd.kit import jsonio

    async def work(ledger: Ledger) -> None:
        account = await ledger.get_account(account_id)
        money = ledger.money
        from rich.table import Table

        table = Table(show_header=False)
        for label, value in [
            ("id", account.id),
            ("balance", money.to_decimal(account.balance)),
            ("held", money.to_decimal(account.held)),
            ("available", money.to_decimal(account.available)),
            ("overdraft limit", money.to_decimal(account.overdraft_limit)),
            ("aliases", ", ".join(account.aliases)),
            (
                "created",
                "not created yet (its first write creates it)"
                if account.created_at is None
                else jsonio.format_timestamp(account.created_at),
            ),
        ]:
            table.add_row(label, str(value))
        if account.created_at is not None:
            table.add_row("runway", _runway_line(await ledger.runway(account.id), money))
            try:
                topup = await ledger.database.read(
                    lambda conn, now: autotopup.get_auto_topup(conn, account.id, now)
                )
            except NoAutoTopup:
                table.add_row("auto top-up", "never set up")
            else:
                table.add_row("auto top-up", summary(topup, money))
        out.print(table)

    with_ledger(work)


def _runway_line(runway: Runway, money: Money) -> str:
    """A runway in words: ``9 days (burn 10/day, runs out 2026-12-16T12:00:00Z)``."""
    from creditsd.kit import jsonio
    from creditsd.kit.money import plain

    if runway.days is None or runway.runs_out_at is None:
        return f"none ({runway.reason})"
    burn = money.to_decimal(runway.burn_per_day or 0)
    runs_out = jsonio.format_timestamp(runway.runs_out_at)
    return f"{plain(runway.days)} days (burn {burn}/day, runs out {runs_out})"


@app.command(cls=Command)
def grant(
    account_id: str,
    amount: Annotated[str, typer.Argument(help="Credits, e.g. 100 or 2.5.")],
    reason: Annotated[str, typer.Option(help="Why; kept on the transfer and in the audit log.")],
    idempotency_key: Annotated[
        str | None, typer.Option(help="Repeat it to repeat the grant safely.")
    ] = None,
) -> None:
    """Grant credits to an account (audited)."""
    from creditsd.kit.money import AmountError

    async def work(ledger: Ledger) -> None:
        try:
            units = ledger.money.to_minor(amount)
        except AmountError as exc:
            err.print(f"[red]invalid amount:[/red] {amount} {exc}")
            raise typer.Exit(USAGE_ERROR) from None
        transfer = await ledger.grant(
            account_id,
            units,
            reason=reason,
            idempotency_key=idempotency_key,
            app=CLI_APP,
            actor=cli_actor(),
        )
        balance = transfer.credit_balance_after or 0
        out.print(
            f"granted {ledger.money.to_decimal(units)} to {transfer.credit_account_id}: "
            f"balance {ledger.money.to_decimal(balance)} ({transfer.id})"
        )

    with_ledger(work)
