"""What every command shares: help that reads as written, exit codes, the console, the
configuration, a ledger opened for one command, and tables that fit 80 columns."""

from __future__ import annotations

import getpass
import os
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable, Sequence
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from typer.core import TyperArgument, TyperCommand, TyperOption

if TYPE_CHECKING:  # the server's modules load inside the commands, so that --help is quick
    from typer._click import Context, HelpFormatter  # typer's own copy of click

    from creditsd.config import Settings
    from creditsd.inprocess import Ledger
    from creditsd.price_settings import PricingSettings


T = TypeVar("T")


class Command(TyperCommand):
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


out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


WIDE = Annotated[
    bool, typer.Option("--wide", help="Full ids, however wide the table (shortened otherwise).")
]


class Scope(StrEnum):
    """API key scopes, widest first."""

    admin = "admin"
    app = "app"
    read = "read"


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def configured_pricing() -> PricingSettings:
    """The configuration's catalog; exit 1 when it has none."""
    pricing = load_config().configured_pricing
    if pricing is None:
        err.print("[red]no catalog:[/red] the configuration has no \\[pricing] section")
        raise typer.Exit(RUNTIME_FAILURE)
    return pricing


def load_config() -> Settings:
    from creditsd.config import ConfigError, load_settings

    try:
        return load_settings()
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(USAGE_ERROR) from None


def with_ledger(work: Callable[[Ledger], Awaitable[T]], *, migrate: bool = False) -> T:
    """Open the ledger, run one command against it, close it; errors become exit codes."""
    from creditsd.inprocess import Ledger

    settings = load_config()

    async def main() -> T:
        ledger = await Ledger.connect(settings, migrate=migrate)
        try:
            return await work(ledger)
        finally:
            await finish_closing(ledger.close())

    return exit_on_error(main(), settings.database.url)


async def finish_closing(closing: Coroutine[Any, Any, None]) -> None:
    """Finish closing even when Ctrl-C cancels the command meanwhile (uvicorn passes its
    SIGINT on once it has stopped), rather than cut connections mid-close with a traceback."""
    import asyncio

    task = asyncio.ensure_future(closing)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


def exit_on_error(coroutine: Coroutine[Any, Any, T], database_url: str) -> T:
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
        err.print(
            f"[red]cannot use the database {safe_url(database_url)}:[/red] {failure_reason(exc)}"
        )
        raise typer.Exit(RUNTIME_FAILURE) from None


def failure_reason(exc: Exception) -> str:
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


def safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def version_text() -> str:
    from creditsd.version import VERSION

    return VERSION


def print_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    ids: Collection[str],
    wide: bool,
    whole: Collection[str] = (),
) -> None:
    """Print ``rows`` as a table that fits the terminal: the columns named in ``ids`` hold
    ids, shortened (:func:`short_id`) and never wrapped, nor are those named in ``whole``,
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
                value if wide or header not in ids else short_id(value)
                for header, value in zip(headers, row, strict=True)
            )
        )
    (Console(highlight=False, width=_UNBOUNDED) if wide else out).print(table)


_UNBOUNDED = 100_000  # characters: wider than any table, which takes only what it needs
_SHORT_HEAD, _SHORT_TAIL = 8, 6


def short_id(value: str) -> str:
    """An id as a table shows it: whole up to 15 characters, else its first 8 (the prefix
    and the start of the time) and its last 6 (random, so unique among the rows one reads):
    ``key_01kbvz7m3fj8q9t0w2x4y6z8ab`` → ``key_01kb…y6z8ab``. Each part of
    ``key:ID:NAME`` is shortened alone."""
    if ":" in value:
        return ":".join(short_id(part) for part in value.split(":"))
    if len(value) <= _SHORT_HEAD + 1 + _SHORT_TAIL:
        return value
    return f"{value[:_SHORT_HEAD]}…{value[-_SHORT_TAIL:]}"


def moment_text(when: datetime | None) -> str:
    from creditsd.kit import jsonio

    return "" if when is None else jsonio.format_timestamp(when)


def table_moment(when: datetime | None, wide: bool) -> str:
    """A time as a table shows it: UTC to the minute (``2026-12-07 13:18``), in full when
    ``wide``."""
    if wide or when is None:
        return moment_text(when)
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M}"


def instant(value: str | None, option: str) -> datetime | None:
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
