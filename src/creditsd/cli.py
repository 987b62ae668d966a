"""The ``creditsd`` command: serve, worker, migrate, keys, accounts, grant, pricing, webhooks,
stripe, audit, reconcile, verify, export and dev-upstream."""

from __future__ import annotations

import csv
import errno
import getpass
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO, TypeVar

import typer
from rich.console import Console
from typer.core import TyperArgument, TyperCommand, TyperOption

if TYPE_CHECKING:  # the server's modules load inside the commands, so that --help is quick
    from sqlalchemy.ext.asyncio import AsyncConnection
    from typer._click import Context, HelpFormatter  # typer's own copy of click

    from creditsd.audit.models import AuditRecord
    from creditsd.config import Settings
    from creditsd.inprocess import Ledger
    from creditsd.keys.service import ApiKey
    from creditsd.kit.pagination import Page
    from creditsd.ledger.models import Verification
    from creditsd.price_settings import PricingSettings
    from creditsd.stripe.reconcile import Mismatch
    from creditsd.webhooks.models import Message

T = TypeVar("T")


class _Command(TyperCommand):
    """A command whose help reads as click writes it: ``Usage: creditsd grant [OPTIONS]
    ACCOUNT_ID AMOUNT`` and ``--since TEXT``, rather than typer's ``{account_id}`` and
    ``<str>`` (and ``<bool>`` beside every flag)."""

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        return pieces + [
            _metavar(param, ctx)
            for param in self.get_params(ctx)
            if isinstance(param, TyperArgument)
        ]

    def format_options(self, ctx: Context, formatter: HelpFormatter) -> None:
        rows: dict[str, list[tuple[str, str]]] = {"Arguments": [], "Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if isinstance(param, TyperArgument):
                rows["Arguments"].append((_metavar(param, ctx), record[1]))
            elif isinstance(param, TyperOption):
                names = ", ".join(param.opts)
                shown = names if param.is_flag else f"{names} {_metavar(param, ctx)}"
                rows["Options"].append((shown, record[1]))
        for title, section in rows.items():
            if section:
                with formatter.section(title):
                    formatter.write_dl(section)


def _metavar(param: TyperArgument | TyperOption, ctx: Context) -> str:
    """What a value is called in help: its metavar, else its name (an argument) or its
    type (an option) in capitals, as click does: ``ACCOUNT_ID``, ``TEXT``, ``INTEGER``; the
    choices as typed: ``admin|app|read``."""
    if param.metavar is not None:
        return param.metavar
    if isinstance(param, TyperArgument):
        name = (param.name or "").upper()
        return name if param.nargs == 1 else f"{name}..."
    kind = param.display_type(ctx).strip("<>")
    if "|" in kind:
        return kind
    return {"str": "TEXT", "int": "INTEGER", "int range": "INTEGER"}.get(kind, kind.upper())


# Exit codes: 0 done; 1 it could not be done (or found a difference, as `diff` does);
# 2 the command line or the configuration is wrong (click's own usage errors are 2 too).
RUNTIME_FAILURE = 1
USAGE_ERROR = 2
CLI_APP = "cli"  # the app name on the transfers the CLI makes (reserved: no key takes it)

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

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _print_version(wanted: bool) -> None:
    if wanted:
        print(f"creditsd {_version()}")
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


WIDE = Annotated[
    bool, typer.Option("--wide", help="Full ids, however wide the table (shortened otherwise).")
]


class Scope(StrEnum):
    """API key scopes, widest first."""

    admin = "admin"
    app = "app"
    read = "read"


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _configured_pricing() -> PricingSettings:
    """The configuration's catalog; exit 1 when it has none."""
    pricing = _settings().configured_pricing
    if pricing is None:
        err.print("[red]no catalog:[/red] the configuration has no \\[pricing] section")
        raise typer.Exit(RUNTIME_FAILURE)
    return pricing


def _settings() -> Settings:
    from creditsd.config import ConfigError, load_settings

    try:
        return load_settings()
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(USAGE_ERROR) from None


def _run(work: Callable[[Ledger], Awaitable[T]], *, migrate: bool = False) -> T:
    """Open the ledger, run one command against it, close it; errors become exit codes."""
    from creditsd.inprocess import Ledger

    settings = _settings()

    async def main() -> T:
        ledger = await Ledger.connect(settings, migrate=migrate)
        try:
            return await work(ledger)
        finally:
            await _to_the_end(ledger.close())

    return _exit_on_error(main(), settings.database.url)


async def _to_the_end(closing: Coroutine[Any, Any, None]) -> None:
    """Finish closing even when Ctrl-C cancels the command meanwhile (uvicorn passes its
    SIGINT on once it has stopped), rather than cut connections mid-close with a traceback."""
    import asyncio

    task = asyncio.ensure_future(closing)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


def _exit_on_error(coroutine: Coroutine[Any, Any, T], database_url: str) -> T:
    """Run a command's work; a failure the user can act on becomes one line on stderr and
    an exit code, never a traceback."""
    import asyncio

    from creditsd.config import ConfigError
    from creditsd.kit import db
    from creditsd.kit.errors import CreditsError
    from creditsd.migrations import SchemaNotCurrent

    try:
        return asyncio.run(coroutine)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(USAGE_ERROR) from None
    except SchemaNotCurrent as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(USAGE_ERROR) from None
    except CreditsError as exc:
        err.print(f"[red]{exc.code}:[/red] {exc.message}")
        raise typer.Exit(RUNTIME_FAILURE) from None
    except BrokenPipeError:
        raise  # our reader went away (`| head`): click ends quietly with exit 1
    except db.OUTAGES as exc:
        err.print(f"[red]cannot use the database {_safe_url(database_url)}:[/red] {_reason(exc)}")
        raise typer.Exit(RUNTIME_FAILURE) from None


def _reason(exc: Exception) -> str:
    """What the driver or the system said: ``role "ops" does not exist``, ``Connection
    refused``, ``No such file or directory: /srv/missing`` (neither repeats a password)."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        return str(exc.orig)
    if not isinstance(exc, OSError):
        return str(exc)
    number = exc.errno or 0  # None for a timeout, negative from getaddrinfo
    said = (os.strerror(number) if number > 0 else exc.strerror) or str(exc) or type(exc).__name__
    return f"{said}: {exc.filename}" if exc.filename else said


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command(cls=_Command)
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port to listen on (0: any free one).")
    ] = None,
    no_migrate: Annotated[
        bool, typer.Option("--no-migrate", help="Do not migrate the database on start.")
    ] = False,
) -> None:
    """Run the HTTP API (migrating the database first unless --no-migrate)."""
    import asyncio

    import uvicorn

    from creditsd.api.app import create_app
    from creditsd.api.serving import guarded, open_files_allowed, quiet_loop_errors
    from creditsd.inprocess import Ledger
    from creditsd.keys import service as keys

    class Server(uvicorn.Server):
        """uvicorn's server, announcing itself once it accepts connections."""

        def __init__(self, config: uvicorn.Config, announce: Callable[[], None]) -> None:
            super().__init__(config)
            self.announce = announce

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            self.announce()

    settings = _settings()
    bind_host = host or settings.server.host

    async def main(sock: socket.socket) -> None:
        _show_logs()
        ledger = await Ledger.connect(settings, migrate=not no_migrate, publish_pricing=True)
        _reload_pricing_on_sighup(ledger)
        try:
            has_keys = bool(await ledger.database.read(lambda conn, _now: keys.list_keys(conn)))
            quiet_loop_errors(asyncio.get_running_loop())
            connections = open_files_allowed(settings.server.max_connections)

            def announce() -> None:
                out.print(f"creditsd {_version()} on {_safe_url(settings.database.url)}")
                address = f"{bind_host}:{sock.getsockname()[1]}"
                out.print(f"listening on http://{address}  (docs at /docs, console at /admin)")
                if not has_keys:
                    out.print(
                        "no API keys yet; create an admin key with:\n"
                        f"  {_command()} keys create --scope admin --name admin"
                    )
                if connections < settings.server.max_connections:
                    out.print(
                        f"at most {connections} connections: the descriptor limit allows no more"
                    )

            config = uvicorn.Config(
                create_app(ledger, access_log=sys.stdout),
                log_level="info",
                access_log=False,  # ours instead: one JSON line per request (api/observe.py)
                timeout_keep_alive=settings.server.keep_alive_timeout,
                lifespan="on",
                # httptools' parser (under Guarded), not h11: 110-220 µs less CPU per
                # request, a third of /healthz. uvloop saved nothing more and lengthened p99
                # (bench/http/README.md).
                http=guarded(settings.server.request_timeout, connections),
            )
            await Server(config, announce).serve(sockets=[sock])
        finally:
            await _to_the_end(ledger.close())

    with _bind(bind_host, settings.server.port if port is None else port) as sock:
        _exit_on_error(main(sock), settings.database.url)


def _bind(host: str, port: int) -> socket.socket:
    """The socket ``serve`` listens on, bound before the database is opened so that a port
    in use is the first thing reported; uvicorn listens on it once the app has started."""
    # Named IPPROTO_TCP, asyncio sets TCP_NODELAY on each accepted connection (it checks the
    # protocol); without it, a response's body waits ~40 ms for the ACK of its head.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            err.print(f"[red]port {port} on {host} is in use:[/red] choose another with --port")
        else:
            err.print(f"[red]cannot listen on {host}:{port}:[/red] {_reason(exc)}")
        raise typer.Exit(RUNTIME_FAILURE) from None
    return sock


def _show_logs() -> None:
    """creditsd's own log lines (a publish, a failed delivery, an outage) from INFO up on
    standard error, for the long-running commands; the access log goes to standard output."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("creditsd")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _reload_pricing_on_sighup(ledger: Ledger) -> None:
    """SIGHUP re-reads the configuration file and publishes its catalog; a bad file is
    reported and the current catalog keeps serving."""
    import asyncio

    from creditsd.config import ConfigError, load_settings

    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        try:
            pricing = load_settings().configured_pricing
        except ConfigError as exc:
            err.print(f"[red]pricing not reloaded:[/red] {exc}")
            return
        if pricing is None:
            err.print("[red]pricing not reloaded:[/red] the configuration has no \\[pricing]")
            return
        catalog, created = await ledger.publish_pricing(pricing, actor="sighup")
        out.print(f"pricing: catalog v{catalog.version}{' published' if created else ' unchanged'}")

    def on_hangup() -> None:
        task = loop.create_task(reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    with suppress(NotImplementedError):  # platforms without signals in the event loop
        loop.add_signal_handler(signal.SIGHUP, on_hangup)


def _command() -> str:
    """How this command was typed (``.venv/bin/creditsd``), so hints can be pasted as shown."""
    typed = sys.argv[0]
    return typed if Path(typed).name == "creditsd" else "creditsd"


def _version() -> str:
    from creditsd.version import VERSION

    return VERSION


@app.command(cls=_Command)
def migrate() -> None:
    """Bring the database schema up to date."""
    from creditsd import migrations

    settings = _settings()

    _exit_on_error(migrations.migrate(settings.database), settings.database.url)
    out.print(f"migrated {_safe_url(settings.database.url)}")


def _lifetime(text: str) -> timedelta:
    from creditsd.keys import service as keys
    from creditsd.kit.errors import CreditsError

    try:
        return keys.parse_lifetime(text)
    except CreditsError as exc:
        raise typer.BadParameter(exc.message) from None


@keys_app.command("create", cls=_Command)
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

    key, secret = _run(
        lambda ledger: ledger.database.write(
            lambda conn, now: keys.create_key(
                conn, name, scope.value, now, actor=_actor(), expires_in=expires_in
            )
        )
    )
    expiry = "" if key.expires_at is None else f", expires {_moment(key.expires_at)}"
    out.print(
        f"created {key.id} ({key.scope}) for {key.name}{expiry}; the secret is shown only once:"
    )
    print(secret)  # plain print: nothing may wrap or colour the secret


def _print_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    ids: Collection[str],
    wide: bool,
    whole: Collection[str] = (),
) -> None:
    """Print ``rows`` as a table that fits the terminal: the columns named in ``ids`` hold
    ids, shortened (:func:`_short_id`) and never wrapped, nor are those named in ``whole``,
    while other long values wrap; ``wide`` prints ids in full and lets the table be as wide
    as they need. Columns are set apart by two spaces, not lines, to leave room for values."""
    from rich.console import Console
    from rich.table import Column, Table

    table = Table(
        *(
            Column(header, no_wrap=header in ids or header in whole, overflow="fold")
            for header in headers
        ),
        box=None,
        pad_edge=False,
    )
    for row in rows:
        table.add_row(
            *(
                value if wide or header not in ids else _short_id(value)
                for header, value in zip(headers, row, strict=True)
            )
        )
    (Console(highlight=False, width=_UNBOUNDED) if wide else out).print(table)


_UNBOUNDED = 100_000  # characters: wider than any table, which takes only what it needs
_SHORT_HEAD, _SHORT_TAIL = 8, 6


def _short_id(value: str) -> str:
    """An id as a table shows it: whole up to 15 characters, else its first 8 (the prefix
    and the start of the time) and its last 6 (random, so unique among the rows one reads):
    ``key_01kbvz7m3fj8q9t0w2x4y6z8ab`` → ``key_01kb…y6z8ab``. Each part of
    ``key:ID:NAME`` is shortened alone."""
    if ":" in value:
        return ":".join(_short_id(part) for part in value.split(":"))
    if len(value) <= _SHORT_HEAD + 1 + _SHORT_TAIL:
        return value
    return f"{value[:_SHORT_HEAD]}…{value[-_SHORT_TAIL:]}"


def _moment(when: datetime | None) -> str:
    from creditsd.kit import jsonio

    return "" if when is None else jsonio.format_timestamp(when)


def _table_moment(when: datetime | None, wide: bool) -> str:
    """A time as a table shows it: UTC to the minute (``2026-12-07 13:18``), in full when
    ``wide``."""
    if wide or when is None:
        return _moment(when)
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M}"


@keys_app.command("list", cls=_Command)
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

    found, now = _run(work)
    if as_json:
        for key in found:
            fields = ("id", "name", "scope", "hint", "created_at", "revoked_at", "expires_at")
            print(jsonio.dumps({field: getattr(key, field) for field in fields}))
        return
    _print_table(
        ("id", "name", "scope", "secret", "created", "revoked", "expires"),
        [
            (
                key.id,
                key.name,
                key.scope,
                key.hint,
                _table_moment(key.created_at, wide),
                _table_moment(key.revoked_at, wide),
                _table_moment(key.expires_at, wide) + (" (expired)" if key.expired(now) else ""),
            )
            for key in found
        ],
        ids={"id"},
        whole={"created", "revoked", "expires"},
        wide=wide,
    )


@keys_app.command("revoke", cls=_Command)
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")]) -> None:
    """Revoke an API key: it stops working within [server] key_cache_seconds (default 5)."""
    from creditsd.keys import service as keys

    key = _run(
        lambda ledger: ledger.database.write(
            lambda conn, now: keys.revoke_key(conn, key_id, now, actor=_actor())
        )
    )
    out.print(f"revoked {key.id} ({key.name})")


@pricing_app.command("reload", cls=_Command)
def pricing_reload() -> None:
    """Validate the configuration file's catalog and publish it as the current version.

    Every serving process prices with it within ``[pricing] refresh_interval`` seconds.
    A file that does not validate changes nothing.
    """
    pricing = _configured_pricing()
    catalog, created = _run(lambda ledger: ledger.publish_pricing(pricing, actor=_actor()))
    state = "published" if created else "unchanged: it is already the current version"
    out.print(f"catalog v{catalog.version} {state}")


@pricing_app.command("diff", cls=_Command)
def pricing_diff() -> None:
    """Show each setting the configuration's catalog would change in the live one, one per
    line; exit 1 when there are any (as ``diff`` does), 0 when they are the same."""
    from creditsd.pricing import service as pricing_service

    pricing = _configured_pricing()
    live = _run(lambda ledger: ledger.catalog())
    changed = pricing_service.changes(live.settings.content(), pricing.content())
    if not changed:
        out.print(f"the configuration's catalog is the live one (v{live.version})")
        return
    for line in changed:
        print(line)
    raise typer.Exit(RUNTIME_FAILURE)


@pricing_app.command("show", cls=_Command)
def pricing_show() -> None:
    """Print the catalog version prices come from now (JSON)."""
    from creditsd.kit import jsonio

    catalog = _run(lambda ledger: ledger.catalog())
    print(jsonio.dumps({"version": catalog.version, **catalog.settings.content()}))


@accounts_app.command("show", cls=_Command)
def accounts_show(account_id: str) -> None:
    """Show an account's balance, held and available credits."""
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
        out.print(table)

    _run(work)


@app.command(cls=_Command)
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
            actor=_actor(),
        )
        balance = transfer.credit_balance_after or 0
        out.print(
            f"granted {ledger.money.to_decimal(units)} to {transfer.credit_account_id}: "
            f"balance {ledger.money.to_decimal(balance)} ({transfer.id})"
        )

    _run(work)


@app.command(cls=_Command)
def reconcile(
    fix: Annotated[
        bool, typer.Option("--fix", help="Rebuild drifted balances from the transfers (audited).")
    ] = False,
    wide: WIDE = False,
) -> None:
    """Verify every account against its transfers; exit 1 if any drifted and was not fixed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    async def work(ledger: Ledger) -> list[Verification]:
        drifted: list[Verification] = []
        total = await ledger.count_accounts()
        with Progress(
            TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), console=err
        ) as progress:
            task = progress.add_task("accounts", total=total)
            async for page in ledger.verify_all():
                drifted.extend(v for v in page if not v.valid)
                progress.advance(task, len(page))
        if fix:
            for verification in drifted:
                await ledger.rebuild_account(verification.account_id, actor=_actor())
        if (sum_of_all := await ledger.ledger_total()) != 0:
            err.print(f"[red]the ledger does not sum to zero:[/red] {sum_of_all} minor units")
        return drifted

    drifted = _run(work)
    if not drifted:
        out.print("every account matches its transfers")
        return
    _print_table(
        ("account", "stored", "calculated", "stored held", "calculated held"),
        [
            (
                v.account_id,
                str(v.stored_balance),
                str(v.calculated_balance),
                str(v.stored_held),
                str(v.calculated_held),
            )
            for v in drifted
        ],
        ids={"account"},
        wide=wide,
    )
    if fix:
        out.print(f"rebuilt {len(drifted)} account(s) from their transfers (minor units shown)")
        return
    out.print(f"{len(drifted)} account(s) drifted; run with --fix to rebuild them")
    raise typer.Exit(RUNTIME_FAILURE)


@app.command(cls=_Command)
def verify() -> None:
    """Re-derive the checkpoint chain from the stored transfers; exit 1 naming the first
    transfer whose stored row no longer matches its checkpoint."""

    from creditsd.worker import verify_chain

    report = _run(verify_chain)
    if report.broken is not None:
        out.print(f"[red]the checkpoint chain is broken:[/red] {report.broken.detail}")
        raise typer.Exit(RUNTIME_FAILURE)
    if report.head is None:
        out.print("no checkpoint yet: reconciliation writes one each run")
        return
    out.print(
        f"the checkpoint chain is whole: {report.head.number} checkpoint(s) over "
        f"{report.transfers} transfer(s) created before {_moment(report.head.until)}; "
        f"head {report.head.digest}"
    )


@app.command(cls=_Command)
def worker() -> None:
    """Run the expiry sweeps, the outbox delivery and scheduled reconciliation without the
    API (a separate deployment); as many workers as you like may run at once."""
    from creditsd.worker import background

    out.print("delivering the outbox, sweeping expiries and reconciling; Ctrl-C to stop")
    _show_logs()
    with suppress(KeyboardInterrupt):
        _run(background)


@webhooks_app.command("retry", cls=_Command)
def webhooks_retry(
    delivery_ids: Annotated[
        list[int], typer.Argument(min=1, max=2**63 - 1, help="Delivery ids to send again.")
    ],
) -> None:
    """Deliver messages again, whatever became of them (GET /v1/webhook-deliveries lists them)."""
    from creditsd.webhooks import service as webhook_service

    async def _retry_delivery(conn: AsyncConnection, now: datetime, delivery_id: int) -> Message:
        return await webhook_service.retry(conn, delivery_id, now, actor=_actor())

    async def work(ledger: Ledger) -> None:
        for delivery_id in delivery_ids:
            message = await ledger.database.write(partial(_retry_delivery, delivery_id=delivery_id))
            out.print(f"{message.id}\t{message.event_type}\tto {message.destination}: queued again")

    _run(work)


@stripe_app.command("reconcile", cls=_Command)
def stripe_reconcile() -> None:
    """List every mismatch between Stripe events and ledger transfers; exit 1 if any.

    An event that took money without a transfer, a Stripe transfer without its event,
    amounts that differ, events never handled, and refunds or disputes whose purchase
    never came (``purchase_missing``); those whose purchase Stripe may still deliver are
    listed (``awaiting_purchase``) without failing.
    """
    from creditsd.stripe.reconcile import reconcile as reconcile_stripe

    async def work(ledger: Ledger) -> list[Mismatch]:
        now = ledger.now()
        return await ledger.database.read(lambda conn, _now: reconcile_stripe(conn, now))

    found = _run(work)
    if not found:
        out.print("every Stripe event matches the ledger")
        return
    for mismatch in found:  # one line each, tab-separated, for grep and scripts
        print(f"{mismatch.kind}\t{mismatch.reference}\t{mismatch.detail}")
    if failing := [mismatch for mismatch in found if mismatch.fails]:
        err.print(f"{len(failing)} mismatch(es)")
        raise typer.Exit(RUNTIME_FAILURE)
    err.print(f"no mismatch; {len(found)} refund(s) or dispute(s) await their purchase")


def _instant(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        err.print(f"[red]{option}[/red] must be a date or ISO 8601 time, like 2026-11-01")
        raise typer.Exit(USAGE_ERROR) from None
    if isinstance(parsed, date) and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


AUDIT_FIELDS = ("id", "created_at", "actor", "action", "target", "before", "after")


@app.command(cls=_Command)
def audit(
    target: Annotated[
        str | None, typer.Option(help="Only records about this (an account id, a key id, …).")
    ] = None,
    actor: Annotated[
        str | None, typer.Option(help="Only records by this actor (key:ID:NAME, cli:USER, …).")
    ] = None,
    action: Annotated[
        str | None, typer.Option(help="Only this action (grant, account.frozen, key.create, …).")
    ] = None,
    since: Annotated[str | None, typer.Option(help="From this UTC date/time, inclusive.")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this UTC date/time, exclusive.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many records.")] = 50,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per record, for scripts.")
    ] = False,
    wide: WIDE = False,
) -> None:
    """Show the audit log, newest first: who did what to which target, and the state
    before and after as recorded (amounts in credits)."""
    from creditsd.audit import service as audit_service
    from creditsd.audit.models import AuditFilter
    from creditsd.kit import jsonio
    from creditsd.kit.pagination import MAX_LIMIT

    wanted = AuditFilter(
        target=target,
        actor=actor,
        action=action,
        since=_instant(since, "--since"),
        until=_instant(until, "--until"),
    )

    async def _records(
        conn: AsyncConnection, _now: datetime, limit: int, cursor: str | None
    ) -> Page[AuditRecord]:
        return await audit_service.list_records(conn, wanted=wanted, limit=limit, cursor=cursor)

    async def work(ledger: Ledger) -> list[AuditRecord]:
        found: list[AuditRecord] = []
        cursor: str | None = None
        while len(found) < limit:
            page = await ledger.database.read(
                partial(_records, limit=min(limit - len(found), MAX_LIMIT), cursor=cursor)
            )
            found += [record.in_credits(ledger.money) for record in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        return found

    records = _run(work)
    if as_json:
        for record in records:
            print(jsonio.dumps({field: getattr(record, field) for field in AUDIT_FIELDS}))
        return
    _print_table(
        AUDIT_FIELDS,
        [
            (
                str(record.id),
                _table_moment(record.created_at, wide),
                record.actor,
                record.action,
                record.target,
                "" if record.before is None else jsonio.dumps(record.before),
                "" if record.after is None else jsonio.dumps(record.after),
            )
            for record in records
        ],
        ids={"actor", "target"},
        whole={"created_at", "action"},
        wide=wide,
    )


@export_app.command("transactions", cls=_Command)
def export_transactions(
    since: Annotated[str | None, typer.Option(help="From this UTC date/time, inclusive.")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this UTC date/time, exclusive.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Write transfers as CSV (amounts in credits), oldest first."""
    from creditsd.ledger import export

    start, end = _instant(since, "--since"), _instant(until, "--until")

    async def work(ledger: Ledger, stream: TextIO) -> int:
        writer = csv.writer(stream)
        writer.writerow(export.COLUMNS)
        count = 0
        async for page in ledger.export_transfers(start, end):
            writer.writerows(export.row(transfer, ledger.money) for transfer in page)
            count += len(page)
        return count

    with _output_file(output) if output else nullcontext(sys.stdout) as stream:
        count = _run(partial(work, stream=stream))
    if output:
        out.print(f"wrote {count} transfers to {output}")


@contextmanager
def _output_file(path: Path) -> Iterator[TextIO]:
    """``path`` opened for writing before the database is, so that an unwritable one is
    named at once; removed if the command then fails, so that no partial file is left."""
    try:
        stream = path.open("w", newline="", encoding="utf-8")
    except OSError as exc:
        err.print(f"[red]cannot write {path}:[/red] {exc.strerror}")
        raise typer.Exit(RUNTIME_FAILURE) from None
    with stream:
        try:
            yield stream
        except BaseException:
            path.unlink(missing_ok=True)
            raise


@app.command("dev-upstream", cls=_Command)
def dev_upstream(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free one).")
    ] = 9100,
) -> None:
    """Run a local stand-in model provider (OpenAI's wire format, no key) for the proxy."""
    import asyncio

    import uvicorn

    from creditsd.proxy.devupstream import create_app as create_upstream

    with _bind(host, port) as sock:
        url = f"http://{host}:{sock.getsockname()[1]}/v1"
        out.print(f"a stand-in model provider on {url}; point the proxy at it with")
        out.print(f"  CREDITSD_PROXY__BASE_URL={url} creditsd serve")
        server = uvicorn.Server(uvicorn.Config(create_upstream(), log_level="warning"))
        asyncio.run(server.serve(sockets=[sock]))


def main() -> None:
    """Entry point of the ``creditsd`` command."""
    app()
