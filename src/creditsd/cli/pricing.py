"""``creditsd pricing``: show, compare and publish the configured catalog."""

from __future__ import annotations

import typer

from creditsd.cli.apps import pricing_app
from creditsd.cli.common import (
    RUNTIME_FAILURE,
    Command,
    cli_actor,
    configured_pricing,
    out,
    with_ledger,
)


@pricing_app.command("reload", cls=Command)
def pricing_reload() -> None:
    """Validate the configuration file's catalog and publish it as the current version.

    Every serving process prices with it within ``[pricing] refresh_interval`` seconds.
    A file that does not validate changes nothing.
    """
    pricing = configured_pricing()
    catalog, created = with_ledger(
        lambda ledger: ledger.publish_pricing(pricing, actor=cli_actor())
    )
    state = "published" if created else "unchanged: it is already the current version"
    out.print(f"catalog v{catalog.version} {state}")


@pricing_app.command("diff", cls=Command)
def pricing_diff() -> None:
    """Show each setting the configuration's catalog would change in the live one, one per
    line; exit 1 when there are any (as ``diff`` does), 0 when they are the same."""
    from creditsd.pricing import service as pricing_service

    pricing = configured_pricing()
    live = with_ledger(lambda ledger: ledger.catalog())
    changed = pricing_service.changes(live.settings.content(), pricing.content())
    if not changed:
        out.print(f"the configuration's catalog is the live one (v{live.version})")
        return
    for line in changed:
        print(line)
    raise typer.Exit(RUNTIME_FAILURE)


@pricing_app.command("show", cls=Command)
def pricing_show() -> None:
    """Print the catalog version prices come from now (JSON)."""
    from creditsd.kit import jsonio

    catalog = with_ledger(lambda ledger: ledger.catalog())
    print(jsonio.dumps({"version": catalog.version, **catalog.settings.content()}))
