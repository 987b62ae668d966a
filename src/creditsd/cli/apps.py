"""The ``creditsd`` command and its groups of subcommands."""

from __future__ import annotations

from typing import Annotated

import typer

from creditsd.cli.common import version_text

app = typer.Typer(
    help="creditsd: an exact credits ledger for AI products.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
accounts_app = typer.Typer(help="Look at accounts.", no_args_is_help=True)
export_app = typer.Typer(help="Export the ledger.", no_args_is_help=True)
pricing_app = typer.Typer(help="Show and publish the price catalog.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(pricing_app, name="pricing")
app.add_typer(accounts_app, name="accounts")
stripe_app = typer.Typer(help="Check Stripe events against the ledger.", no_args_is_help=True)
app.add_typer(export_app, name="export")
app.add_typer(stripe_app, name="stripe")
webhooks_app = typer.Typer(help="Outbox deliveries.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")
members_app = typer.Typer(
    help="A team wallet's members and their spend limits.", no_args_is_help=True
)
app.add_typer(members_app, name="members")
limits_app = typer.Typer(help="Spend limits on a team wallet.", no_args_is_help=True)
app.add_typer(limits_app, name="limits")
autotopup_app = typer.Typer(
    help="An account's auto top-up from its saved card.", no_args_is_help=True
)
app.add_typer(autotopup_app, name="auto-topup")


def _print_version(wanted: bool) -> None:
    if wanted:
        print(f"creditsd {version_text()}")
        raise typer.Exit


@app.callback()
def _options(
    _version_flag: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """creditsd: an exact credits ledger for AI products."""
