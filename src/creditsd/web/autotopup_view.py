"""The billing page's auto top-up section: what ``GET /v1/accounts/{id}/auto-topup``
says, in the customer's words, and while it is on how long the credits last without it
(:mod:`creditsd.ledger.runway`) and about when the card is charged."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from creditsd.autotopup import service as autotopup
from creditsd.autotopup.errors import NoAutoTopup
from creditsd.autotopup.models import AutoTopup, Rule
from creditsd.inprocess import Ledger
from creditsd.kit.money import Money
from creditsd.ledger import runway as runway_math
from creditsd.ledger.errors import AccountNotFound
from creditsd.ledger.models import Account
from creditsd.ledger.runway import Runway
from creditsd.web.pages import counted, credits

# What became of the last attempt, as the customer reads it.
ATTEMPT_WORDS = {
    "queued": "about to be charged",
    "processing": "paid, waiting for the bank to settle",
    "succeeded": "added",
    "declined": "declined by the card's bank",
    "needs_action": "waiting for you to confirm it with your bank",
    "canceled": "not charged: auto top-up was turned off or paused first",
}
HEADLINES = {
    "off": "Off",
    "awaiting_card": "Waiting for a card",
    "active": "On",
    "needs_action": "Waiting for you: your bank asks you to confirm a payment",
}
TOO_SOON = "Without top-up: too soon to tell; a day of use is needed to know your pace."
NO_BURN = "Without top-up: you have used none of your own credits lately, so they last."
NO_RUNWAY = Runway(0, None, None, None, "too_little_history")  # what an unread runway shows


@dataclass(frozen=True, slots=True)
class Shown:
    """An account's auto top-up as its billing page shows it (``state`` None: never set up)."""

    state: str | None
    headline: str
    rule: str | None
    card: str | None
    month: str | None
    last: str | None
    last_at: datetime | None
    runway: str | None
    charge_at: datetime | None
    charge_now: bool
    confirm_credits: Decimal | None
    form: dict[str, str]


def shown(
    topup: AutoTopup | None,
    runway: Runway,
    money: Money,
    now: datetime,
    packs: Mapping[str, Decimal] | None = None,
) -> Shown:
    """What the page says of ``topup`` (None: never set up) and, while it is on, of the
    account's ``runway`` without it, as of ``now``; ``packs``: the credits of each pack."""
    if topup is None:
        return Shown(None, "Off", None, None, None, None, None, None, None, False, None, {})
    rule, state = topup.rule, topup.state
    headline = HEADLINES.get(state, "")
    if state == "paused":
        headline = f"Paused: {topup.paused_reason or 'the card was declined'}"
    last = topup.last_attempt
    card = topup.consent.card if topup.consent else None
    said_runway, charge_at, charge_now = _runway(topup, runway, now)
    return Shown(
        state=state,
        headline=headline,
        rule=_rule_words(rule, money, packs or {}),
        card=f"{(card.brand or 'Card').title()} •••• {card.last4 or '????'}" if card else None,
        month=f"{_credits(money, topup.month_total)} of "
        f"{_counted(money, rule.monthly_cap)} bought this month",
        last=None
        if last is None
        else f"{_counted(money, last.credits)}, {ATTEMPT_WORDS.get(last.status, last.status)}",
        last_at=None if last is None else last.updated_at,
        runway=said_runway,
        charge_at=charge_at,
        charge_now=charge_now,
        confirm_credits=money.to_decimal(last.credits)
        if state == "needs_action" and last is not None
        else None,
        form={
            "threshold": str(money.to_decimal(rule.threshold)),
            "target_balance": ""
            if rule.target_balance is None
            else str(money.to_decimal(rule.target_balance)),
            "pack": rule.pack or "",
            "monthly_cap": str(money.to_decimal(rule.monthly_cap)),
        },
    )


def _credits(money: Money, minor: int) -> str:
    return credits(money.to_decimal(minor))


def _counted(money: Money, minor: int) -> str:
    return counted(money.to_decimal(minor), "credit")


def _rule_words(rule: Rule, money: Money, packs: Mapping[str, Decimal]) -> str:
    """``When your balance falls below 100 credits, buy enough to bring it to 500 credits,
    at most 5,000 credits a month.`` (or ``buy a pack of 1,000 credits``)."""
    if rule.target_balance is not None:
        buy = f"buy enough to bring it to {_counted(money, rule.target_balance)}"
    elif (pack := packs.get(rule.pack or "")) is not None:
        buy = f"buy a pack of {counted(pack, 'credit')}"
    else:  # a pack no longer on sale: nothing is bought
        buy = f"buy the {rule.pack} pack, no longer on sale"
    below = f"When your balance falls below {_counted(money, rule.threshold)}"
    return f"{below}, {buy}, at most {_counted(money, rule.monthly_cap)} a month."


def _runway(
    topup: AutoTopup, runway: Runway, now: datetime
) -> tuple[str | None, datetime | None, bool]:
    """What the runway says while auto top-up is on: how long the credits last without it;
    while it can charge, about when the balance reaches the threshold (the card is charged
    then), or whether it is below already."""
    if topup.state in ("off", "awaiting_card"):
        return None, None, False
    if runway.reason == "too_little_history":
        return TOO_SOON, None, False
    if runway.burn_per_day is None or runway.days is None:  # no burn
        return NO_BURN, None, False
    whole = int(runway.days)
    days = "less than a day" if whole == 0 else f"{whole} day{'s' if whole != 1 else ''}"
    said = f"Without top-up: {days}"
    if topup.state != "active":
        return said, None, False
    above = runway.available - topup.rule.threshold
    if above < 0:
        return said, None, True
    return said, runway_math.at_burn(above, runway.burn_per_day, now).runs_out_at, False


async def section(ledger: Ledger, account: Account) -> Shown:
    """The account's auto top-up for its page (an account not written yet has none)."""
    try:
        topup: AutoTopup = await ledger.database.read(
            lambda conn, now: autotopup.get_auto_topup(conn, account.id, now)
        )
    except (NoAutoTopup, AccountNotFound):
        return shown(None, NO_RUNWAY, ledger.money, ledger.now())
    on = topup.state not in ("off", "awaiting_card")
    runway = await ledger.runway(account.id) if on else NO_RUNWAY
    packs = {name: pack.credits for name, pack in ledger.settings.packs.items()}
    return shown(topup, runway, ledger.money, ledger.now(), packs)
