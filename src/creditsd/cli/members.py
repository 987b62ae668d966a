"""``creditsd members`` and ``creditsd limits``: a team wallet's members and its spend
limits, through the members service (each change audited as the CLI's user).

A limit is written ``AMOUNT/PERIOD`` or ``AMOUNT/PERIOD/MODE``: credits, then ``day``,
``week``, ``month`` or ``lifetime``, then ``hard`` (the default: refuse what would pass
it) or ``soft``: ``1000/day``, ``2.5/week/soft``, ``0/month`` (blocks all spend).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Annotated, NamedTuple, cast

import typer

from creditsd.cli.apps import limits_app, members_app
from creditsd.cli.common import (
    USAGE_ERROR,
    WIDE,
    Command,
    cli_actor,
    err,
    out,
    print_table,
    table_moment,
    with_ledger,
)

if TYPE_CHECKING:  # the server's modules load inside the commands, so that --help is quick
    from datetime import datetime

    from sqlalchemy.ext.asyncio import AsyncConnection

    from creditsd.inprocess import Ledger
    from creditsd.kit.pagination import Page
    from creditsd.ledger.limits import Mode, Tally
    from creditsd.ledger.windows import Period
    from creditsd.members.service import LimitSpec, Member

PERIODS = ("day", "week", "month", "lifetime")
MODES = ("hard", "soft")
NAME_LENGTH = 128  # a member's display name, as the API takes it


class LimitText(NamedTuple):
    """A ``--limit`` as typed: its amount (credits, still text), period and mode."""

    amount: str
    period: str
    mode: str
    typed: str


def _limit(text: str) -> LimitText:
    """``AMOUNT/PERIOD[/MODE]``, its parts checked (the amount once the ledger's scale is
    known); a bad one is a usage error naming what is wrong."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not parts[0].strip():
        raise typer.BadParameter(
            f"{text!r}: write AMOUNT/PERIOD or AMOUNT/PERIOD/MODE, like 1000/day or 50/week/soft"
        )
    amount, period, mode = parts[0].strip(), parts[1].strip(), "hard"
    if len(parts) == 3:
        mode = parts[2].strip()
    if period not in PERIODS:
        raise typer.BadParameter(f"{text!r}: the period must be day, week, month or lifetime")
    if mode not in MODES:
        raise typer.BadParameter(f"{text!r}: the mode must be hard or soft")
    return LimitText(amount, period, mode, text)


LIMITS = Annotated[
    list[LimitText] | None,
    typer.Option(
        "--limit",
        parser=_limit,
        metavar="AMOUNT/PERIOD[/MODE]",
        help="A limit, repeated for each period: 1000/day, 50/week/soft (PERIOD: day, "
        "week, month or lifetime; MODE: hard, the default, or soft). The limits given "
        "replace the whole set.",
    ),
]
WALLET = Annotated[str, typer.Argument(help="The wallet's account id or an alias.")]
JSON = Annotated[
    bool, typer.Option("--json", help="One JSON object per line, as the API writes them.")
]


def _specs(ledger: Ledger, limits: Sequence[LimitText]) -> list[LimitSpec]:
    """The limits typed, amounts in minor units; a bad amount is a usage error."""
    from creditsd.kit.money import AmountError
    from creditsd.members.service import LimitSpec

    specs = []
    for limit in limits:
        try:
            units = ledger.money.to_minor(limit.amount, allow_zero=True)
        except AmountError as exc:
            err.print(f"[red]invalid --limit {limit.typed}:[/red] {limit.amount} {exc}")
            raise typer.Exit(USAGE_ERROR) from None
        specs.append(LimitSpec(units, cast("Period", limit.period), cast("Mode", limit.mode)))
    return specs


def _asked(limits: list[LimitText] | None, cleared: bool, flag: str) -> list[LimitText] | None:
    """The limits asked for: those given, none with ``flag``, or None when neither."""
    if limits and cleared:
        err.print(f"[red]give --limit or {flag}, not both[/red]")
        raise typer.Exit(USAGE_ERROR)
    return [] if cleared else limits


def _limit_rows(ledger: Ledger, tallies: Iterable[Tally], wide: bool) -> list[list[str]]:
    """Limits as table cells: period, mode, amount, spent, held, left, resets (UTC)."""
    money = ledger.money
    return [
        [
            tally.limit.period,
            tally.limit.mode,
            str(money.to_decimal(tally.limit.amount)),
            str(money.to_decimal(tally.spent)),
            str(money.to_decimal(tally.held)),
            str(money.to_decimal(max(tally.left(), 0))),
            "never" if tally.window.end is None else table_moment(tally.window.end, wide),
        ]
        for tally in tallies
    ]


LIMIT_HEADERS = ("period", "mode", "limit", "spent", "held", "left", "resets")


def _print_members(ledger: Ledger, found: list[Member], as_json: bool, wide: bool) -> None:
    from creditsd.api.schemas.members import MemberOut
    from creditsd.kit import jsonio

    if as_json:
        for member in found:
            print(jsonio.dumps(MemberOut.of(member, ledger.money).model_dump(mode="python")))
        return
    rows = []
    for member in found:
        named = [member.member_id, member.display_name or ""]
        limits = _limit_rows(ledger, member.limits, wide)
        rows += [named + cells for cells in limits] or [named + [""] * len(LIMIT_HEADERS)]
    print_table(
        ("member", "name", *LIMIT_HEADERS),
        rows,
        ids={"member"},
        whole={"resets"},
        wide=wide,
    )


@members_app.command("list", cls=Command)
def members_list(wallet: WALLET, as_json: JSON = False, wide: WIDE = False) -> None:
    """List a wallet's members by id, each limit with its current window's spend (times
    in UTC)."""
    from creditsd.kit.pagination import MAX_LIMIT
    from creditsd.members import service as members

    async def listed(conn: AsyncConnection, now: datetime, cursor: str | None) -> Page[Member]:
        return await members.list_members(conn, wallet, MAX_LIMIT, cursor, now)

    async def work(ledger: Ledger) -> None:
        found: list[Member] = []
        cursor: str | None = None
        while True:
            page = await ledger.database.read(partial(listed, cursor=cursor))
            found += page.items
            if (cursor := page.next_cursor) is None:
                break
        if not found and not as_json:
            out.print(f"{wallet} has no members")
            return
        _print_members(ledger, found, as_json, wide)

    with_ledger(work)


def _check_member(member: str, name: str | None) -> None:
    """A usage error unless ``member`` is an id as the API takes one (an account id's
    form) and ``name``, when given, 1-128 characters."""
    from creditsd.kit.ids import ACCOUNT_ID_PATTERN

    if not re.fullmatch(ACCOUNT_ID_PATTERN, member):
        err.print(
            f"[red]invalid member id {member!r}:[/red] 1-128 letters, digits and _ - . : @ + = "
            "(not starting with @), like a Clerk user id"
        )
        raise typer.Exit(USAGE_ERROR)
    if name is not None and (not 0 < len(name) <= NAME_LENGTH or "\x00" in name):
        err.print(f"[red]invalid --name:[/red] 1-{NAME_LENGTH} characters, none of them NUL")
        raise typer.Exit(USAGE_ERROR)


@members_app.command("put", cls=Command)
def members_put(
    wallet: WALLET,
    member: Annotated[str, typer.Argument(help="The member's id, of the app's choosing.")],
    name: Annotated[str | None, typer.Option("--name", help="The name to show.")] = None,
    limit: LIMITS = None,
    no_limits: Annotated[
        bool, typer.Option("--no-limits", help="Remove every limit of the member.")
    ] = False,
    wide: WIDE = False,
) -> None:
    """Add a member to a wallet or update one (audited); its limits change only when
    --limit or --no-limits is given."""
    from creditsd.members import service as members

    _check_member(member, name)
    asked = _asked(limit, no_limits, "--no-limits")

    async def work(ledger: Ledger) -> None:
        specs = None if asked is None else _specs(ledger, asked)
        found, added = await ledger.database.write(
            lambda conn, now: members.put_member(
                conn, wallet, member, name, specs, ledger.policy, now, actor=cli_actor()
            )
        )
        out.print(f"{'added' if added else 'updated'} {found.member_id} of {found.account_id}")
        _print_members(ledger, [found], False, wide)

    with_ledger(work)


@members_app.command("remove", cls=Command)
def members_remove(
    wallet: WALLET,
    member: Annotated[str, typer.Argument(help="The member's id.")],
) -> None:
    """Remove a member and its limits (audited); its open holds still settle and its past
    spend stays its own."""
    from creditsd.members import service as members

    async def work(ledger: Ledger) -> Member:
        return await ledger.database.write(
            lambda conn, now: members.remove_member(
                conn, wallet, member, ledger.policy, now, actor=cli_actor()
            )
        )

    removed = with_ledger(work)
    out.print(f"removed {removed.member_id} from {removed.account_id}")


def _print_limits(ledger: Ledger, tallies: list[Tally], as_json: bool, wide: bool) -> None:
    from creditsd.api.schemas.members import LimitOut
    from creditsd.kit import jsonio

    if as_json:
        for tally in tallies:
            print(jsonio.dumps(LimitOut.of(tally, ledger.money).model_dump(mode="python")))
        return
    subjects = [[tally.limit.scope, tally.limit.subject] for tally in tallies]
    rows = _limit_rows(ledger, tallies, wide)
    print_table(
        ("on", "subject", *LIMIT_HEADERS),
        [subject + cells for subject, cells in zip(subjects, rows, strict=True)],
        ids={"subject"},
        whole={"resets"},
        wide=wide,
    )


@limits_app.command("show", cls=Command)
def limits_show(wallet: WALLET, as_json: JSON = False, wide: WIDE = False) -> None:
    """Show every limit on a wallet (its own, its members', apps' and proxy keys') with its
    current window's spend, what open holds reserve and when it resets (UTC)."""
    from creditsd.members import service as members

    async def work(ledger: Ledger) -> None:
        tallies = await ledger.database.read(lambda conn, now: members.limits_of(conn, wallet, now))
        if not tallies and not as_json:
            out.print(f"{wallet} has no spend limits")
            return
        _print_limits(ledger, tallies, as_json, wide)

    with_ledger(work)


@limits_app.command("set", cls=Command)
def limits_set(
    wallet: WALLET,
    limit: LIMITS = None,
    none: Annotated[
        bool, typer.Option("--none", help="Remove the wallet's (or the app's) limits.")
    ] = False,
    app: Annotated[
        str | None,
        typer.Option(help="Set the limits of this app (an API key's name) on the wallet."),
    ] = None,
    wide: WIDE = False,
) -> None:
    """Set the wallet's own limits (on all its spend, whoever spends), or with --app an
    app's (audited); the limits given replace the set. Every limit on the wallet is
    shown afterwards."""
    from creditsd.keys.service import APP_NAME_PATTERN
    from creditsd.members import service as members

    asked = _asked(limit, none, "--none")
    if app is not None and not re.fullmatch(APP_NAME_PATTERN, app):
        err.print(f"[red]invalid --app {app!r}:[/red] an app is an API key's name, like chat")
        raise typer.Exit(USAGE_ERROR)
    if asked is None:
        err.print("[red]give --limit (once per period), or --none to remove the limits[/red]")
        raise typer.Exit(USAGE_ERROR)

    async def work(ledger: Ledger) -> None:
        specs = _specs(ledger, asked)
        scope, subject = ("wallet", "") if app is None else ("app", app)
        tallies = await ledger.database.write(
            lambda conn, now: members.put_limits(
                conn, wallet, scope, subject, specs, ledger.policy, now, actor=cli_actor()
            )
        )
        _print_limits(ledger, tallies, False, wide)

    with_ledger(work)
