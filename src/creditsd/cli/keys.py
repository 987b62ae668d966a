"""``creditsd keys``: create, list and revoke API keys."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from creditsd.cli.apps import keys_app
from creditsd.cli.common import (
    WIDE,
    Command,
    Scope,
    cli_actor,
    moment_text,
    out,
    print_table,
    table_moment,
    with_ledger,
)

if TYPE_CHECKING:  # the server's modules load inside the commands, so that --help is quick
    from creditsd.inprocess import Ledger
    from creditsd.keys.service import ApiKey


def _lifetime(text: str) -> timedelta:
    from creditsd.keys import service as keys
    from creditsd.kit.errors import CreditsError

    try:
        return keys.parse_lifetime(text)
    except CreditsError as exc:
        raise typer.BadParameter(exc.message) from None


@keys_app.command("create", cls=Command)
def keys_create(
    scope: Annotated[Scope, typer.Option(help="admin, app or read.")],
    name: Annotated[str, typer.Option(help="The app that will use the key.")],
    expires_in: Annotated[
        timedelta | None,
        typer.Option(
            parser=_lifetime,
            metavar="LIFETIME",
            help="Stop working this long from now, in hours or days: 12h, 30d. Default: never.",
        ),
    ] = None,
) -> None:
    """Create an API key; its secret is printed once, alone on the last line."""
    from creditsd.keys import service as keys

    key, secret = with_ledger(
        lambda ledger: ledger.database.write(
            lambda conn, now: keys.create_key(
                conn, name, scope.value, now, actor=cli_actor(), expires_in=expires_in
            )
        )
    )
    expiry = "" if key.expires_at is None else f", expires {moment_text(key.expires_at)}"
    out.print(
        f"created {key.id} ({key.scope}) for {key.name}{expiry}; the secret is shown only once:"
    )
    print(secret)  # plain print: nothing may wrap or colour the secret


@keys_app.command("list", cls=Command)
def keys_list(
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per key, full ids, for scripts.")
    ] = False,
    wide: WIDE = False,
) -> None:
    """List API keys (never their secrets); an expired one is marked so."""
    from creditsd.keys import service as keys
    from creditsd.kit import jsonio

    async def work(ledger: Ledger) -> tuple[list[ApiKey], datetime]:
        return await ledger.database.read(lambda conn, _now: keys.list_keys(conn)), ledger.now()

    found, now = with_ledger(work)
    if as_json:
        for key in found:
            fields = ("id", "name", "scope", "hint", "created_at", "revoked_at", "expires_at")
            print(jsonio.dumps({field: getattr(key, field) for field in fields}))
        return
    print_table(
        ("id", "name", "scope", "secret", "created", "revoked", "expires"),
        [
            (
                key.id,
                key.name,
                key.scope,
                key.hint,
                table_moment(key.created_at, wide),
                table_moment(key.revoked_at, wide),
                table_moment(key.expires_at, wide) + (" (expired)" if key.expired(now) else ""),
            )
            for key in found
        ],
        ids={"id"},
        whole={"created", "revoked", "expires"},
        wide=wide,
    )


@keys_app.command("revoke", cls=Command)
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")]) -> None:
    """Revoke an API key: it stops working within [server] key_cache_seconds (default 5)."""
    from creditsd.keys import service as keys

    key = with_ledger(
        lambda ledger: ledger.database.write(
            lambda conn, now: keys.revoke_key(conn, key_id, now, actor=cli_actor())
        )
    )
    out.print(f"revoked {key.id} ({key.name})")
