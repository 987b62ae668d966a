"""``creditsd auto-topup``: show, set and turn off an account's auto top-up, through the
auto top-up service (each change audited as the CLI's user). Amounts are credits.

Turning auto top-up on needs a card the customer saved (their consent), which only the
billing page or the app's card session can give: ``set`` stores the rule, ``off`` stops it
at once and keeps the rule and the card.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from creditsd.cli.apps import autotopup_app
from creditsd.cli.common import USAGE_ERROR, Command, cli_actor, err, moment_text, out, with_ledger

if TYPE_CHECKING:  # the server's modules load inside the commands, so that --help is quick
    from creditsd.autotopup.models import AutoTopup
    from creditsd.inprocess import Ledger
    from creditsd.kit.money import Money

ACCOUNT = Annotated[str, typer.Argument(help="The account's id or an alias.")]
JSON = Annotated[bool, typer.Option("--json", help="One JSON object, as the API writes it.")]


def rule_text(topup: AutoTopup, money: Money) -> str:
    """The rule in words: ``below 100, up to 500, at most 5000 a month``."""
    rule = topup.rule
    buys = (
        f"one pack {rule.pack}"
        if rule.target_balance is None
        else f"up to {money.to_decimal(rule.target_balance)}"
    )
    threshold, cap = money.to_decimal(rule.threshold), money.to_decimal(rule.monthly_cap)
    return f"below {threshold}, {buys}, at most {cap} a month"


def state_text(topup: AutoTopup) -> str:
    """The state, with why it is paused: ``paused (card declined 4 times in a row)``."""
    if topup.state == "paused" and topup.paused_reason:
        return f"paused ({topup.paused_reason})"
    return topup.state.replace("_", " ")


def summary(topup: AutoTopup, money: Money) -> str:
    """One line for ``accounts show``: ``active: below 100, up to 500, at most 5000 a month;
    450 bought this month; visa ····4242``."""
    said = f"{state_text(topup)}: {rule_text(topup, money)}; "
    said += f"{money.to_decimal(topup.month_total)} bought this month"
    if topup.consent is not None:
        said += f"; {_card(topup)}"
    return said


def _card(topup: AutoTopup) -> str:
    card = topup.consent.card if topup.consent is not None else None
    if card is None:
        return "none saved yet (the customer saves one from the billing page)"
    return f"{card.brand or 'card'} ····{card.last4 or '?'}"


def _rows(topup: AutoTopup, money: Money) -> list[tuple[str, str]]:
    rows = [
        ("account", topup.account_id),
        ("state", state_text(topup)),
        ("rule", rule_text(topup, money)),
        ("this month", f"{money.to_decimal(topup.month_total)} bought or being bought"),
        ("card", _card(topup)),
    ]
    if topup.consent is not None:
        rows.append(("consent", f"{topup.consent.by}, {moment_text(topup.consent.at)}"))
    declines = str(topup.consecutive_declines)
    if topup.next_attempt_at is not None:
        declines += f" (no attempt before {moment_text(topup.next_attempt_at)})"
    rows.append(("declines in a row", declines))
    last = topup.last_attempt
    if last is not None:
        attempt = f"{last.status}, {money.to_decimal(last.credits)} credits"
        if last.decline_code:
            attempt += f" ({last.decline_code})"
        rows.append(("last attempt", f"{attempt}, {moment_text(last.updated_at)}"))
    return rows


def _print(ledger: Ledger, topup: AutoTopup, as_json: bool) -> None:
    from rich.table import Table

    from creditsd.api.schemas.autotopup import AutoTopupOut
    from creditsd.kit import jsonio

    if as_json:
        print(jsonio.dumps(AutoTopupOut.of(topup, ledger.money).model_dump(mode="python")))
        return
    table = Table(show_header=False)
    for label, value in _rows(topup, ledger.money):
        table.add_row(label, value)
    out.print(table)


@autotopup_app.command("show", cls=Command)
def autotopup_show(account_id: ACCOUNT, as_json: JSON = False) -> None:
    """Show an account's auto top-up: its state, rule, card and the customer's consent,
    declines, last attempt and what it bought this month (times in UTC)."""
    from creditsd.autotopup import service

    async def work(ledger: Ledger) -> None:
        topup = await ledger.database.read(
            lambda conn, now: service.get_auto_topup(conn, account_id, now)
        )
        _print(ledger, topup, as_json)

    with_ledger(work)


def _credits(ledger: Ledger, text: str, option: str, *, allow_zero: bool = False) -> int:
    """An option's credits in minor units; a bad amount is a usage error naming it."""
    from creditsd.kit.money import AmountError

    try:
        return ledger.money.to_minor(text, allow_zero=allow_zero)
    except AmountError as exc:
        err.print(f"[red]invalid {option}:[/red] {text} {exc}")
        raise typer.Exit(USAGE_ERROR) from None


@autotopup_app.command("set", cls=Command)
def autotopup_set(
    account_id: ACCOUNT,
    threshold: Annotated[
        str, typer.Option(help="Top up when available falls below this many credits.")
    ],
    monthly_cap: Annotated[
        str, typer.Option(help="At most this many credits bought in a calendar month (UTC).")
    ],
    target: Annotated[
        str | None, typer.Option(help="Buy enough to bring available to this many credits.")
    ] = None,
    pack: Annotated[str | None, typer.Option(help="Buy one of this credit pack instead.")] = None,
) -> None:
    """Set an account's auto top-up rule and turn it on (audited). It charges nothing
    until the customer saves a card from the billing page or the app."""
    from creditsd.autotopup import service
    from creditsd.autotopup.models import Rule

    if (target is None) == (pack is None):
        err.print("[red]give --target or --pack (one of the two)[/red]")
        raise typer.Exit(USAGE_ERROR)

    async def work(ledger: Ledger) -> None:
        rule = Rule(
            enabled=True,
            threshold=_credits(ledger, threshold, "--threshold", allow_zero=True),
            target_balance=None if target is None else _credits(ledger, target, "--target"),
            pack=pack,
            monthly_cap=_credits(ledger, monthly_cap, "--monthly-cap"),
        )
        topup = await ledger.database.write(
            lambda conn, now: service.put_rule(
                conn,
                account_id,
                rule,
                ledger.settings.packs,
                ledger.policy,
                now,
                actor=cli_actor(),
            )
        )
        _print(ledger, topup, False)

    with_ledger(work)


@autotopup_app.command("off", cls=Command)
def autotopup_off(account_id: ACCOUNT) -> None:
    """Turn an account's auto top-up off at once (audited), keeping its rule and card; an
    attempt already sent to Stripe still lands if it succeeds."""
    from creditsd.autotopup import service

    async def work(ledger: Ledger) -> None:
        topup, was_on = await ledger.database.write(
            lambda conn, now: service.turn_off(conn, account_id, now, actor=cli_actor())
        )
        said = "turned off" if was_on else "was already off"
        out.print(f"auto top-up of {topup.account_id} {said}")

    with_ledger(work)
