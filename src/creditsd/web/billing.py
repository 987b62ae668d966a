"""What the billing page shows, worked out from the ledger's records: each transaction in
the customer's words with the "why" of its amount, and the usage chart drawn as inline SVG
(no script needed)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from creditsd.kit.money import Money
from creditsd.ledger.limits import SPEND_KINDS
from creditsd.ledger.models import PAID_SOURCE, DaySpend, Expiry, Transfer
from creditsd.members.service import Member
from creditsd.price_settings import PricingSettings, model_name, noun
from creditsd.web import stamps
from creditsd.web.pages import counted, credits, day_label
from creditsd.web.stamps import Stamp

CHART_DAYS = 30
CHART_SERIES = 5  # the biggest items each get a colour; the rest add up to "Everything else"
EVERYTHING_ELSE = "Everything else"
UNNAMED_USE = "Other use"  # a charge with neither a priced item nor a description
# Colours that keep 3:1 contrast against the white card (WCAG 1.4.11), told apart by hue.
PALETTE = ("#2446c7", "#b3261e", "#11703c", "#8a4b00", "#6a3fb5", "#545b6b")

# What happened, in the customer's words (never the ledger's: charge, capture, clawback).
KIND_TITLES = {
    "purchase": "Bought",
    "grant": "Granted",
    "charge": "Used",
    "capture": "Used",
    "refund": "Refunded",
    "clawback": "Taken back",
    "adjustment": "Corrected",
    "expiry": "Expired",
    "sync": "Balance updated",
    "reversal": "Given back",
}
# The descriptions creditsd and its integrations write, as a customer reads them.
DESCRIPTIONS = {
    "credit pack purchase": "Credit pack",
    "auto top-up": "Automatic top-up",
    "initial grant": "Credits to start with",
    "refund": "Payment refunded",
    "dispute": "Payment disputed",
    "dispute won": "Dispute closed in your favour",
    "balance sync from the gateway": None,  # the title says it
}
PLAN_CREDITS = "Credits from your plan"
SOURCE_WORDS = {
    PAID_SOURCE: "paid",
    "subscription": "plan",
    "signup": "sign-up",
    "promotion": "promotional",
    "adjustment": "correction",
}
SETTLEMENT_WORDS = {
    "within_hold": "The work cost no more than was set aside.",
    "over_hold_charged": "The work cost more than was set aside; the difference was charged.",
    "over_hold_capped": "The work cost more than was set aside and than you had; "
    "only what you had was charged.",
}


@dataclass(frozen=True, slots=True)
class Entry:
    """One transaction as the account's owner reads it: what happened and to what
    (``Used`` · ``Video render``), how much of it (``14.5 seconds at 10 credits a second``),
    and why it cost what it did, without the seller's markup or the ledger's ids."""

    when: datetime
    title: str
    detail: str | None
    used: str | None
    change: Decimal
    balance: Decimal | None
    why: list[str]
    parts: list[str] = field(default_factory=list)


def entry(transfer: Transfer, account_id: str, money: Money, catalog: PricingSettings) -> Entry:
    """A transfer from ``account_id``'s side, with the reasons behind its amount; names
    from ``catalog`` (the current version: a renamed item reads by its new name)."""
    priced = stamps.catalog_priced(transfer)
    balance = transfer.balance_after(account_id)
    return Entry(
        when=transfer.created_at,
        title=KIND_TITLES.get(transfer.kind, transfer.kind),
        detail=_detail(transfer, catalog),
        used=stamps.used(priced, catalog),
        change=money.to_decimal(transfer.change_for(account_id)),
        balance=None if balance is None else money.to_decimal(balance),
        why=_why(transfer, priced, account_id, money),
        parts=[f"{what}: {counted(paid, 'credit')}" for what, paid in stamps.priced_parts(priced)],
    )


def _detail(transfer: Transfer, catalog: PricingSettings) -> str | None:
    """What the transfer was for: the priced item's name, the plan that granted it, else
    its description (creditsd's own in the customer's words)."""
    if (name := stamps.named(Stamp(transfer.pricing), catalog)) is not None:
        return name
    if (transfer.metadata or {}).get("plan"):
        return PLAN_CREDITS
    description = transfer.description
    return DESCRIPTIONS.get(description, description) if description else None


def _why(transfer: Transfer, priced: Stamp, account_id: str, money: Money) -> list[str]:
    """Sentences that explain a transfer's amount, from its price stamp and lots."""
    said = _reported_price(Stamp(transfer.pricing)) if stamps.reported(transfer) else []
    if rounded := stamps.rounding(priced):
        said.append(rounded)
    said += _settlement(priced.part("settlement"))
    if transfer.kind == "expiry":
        said.append("These credits reached their expiry date unspent.")
    if transfer.kind == "purchase":
        said.append("Paid by card through Stripe.")
    if transfer.lots:
        said.append(_lots_sentence(transfer, transfer.change_for(account_id) > 0, money))
    if transfer.description and not said:
        said.append(f"Reason given: {transfer.description}.")
    return said


def _reported_price(stamp: Stamp) -> list[str]:
    """What the gateway said it billed, in the figures creditsd wrote beside its post."""
    cost, rate = stamp.number("cost_usd"), stamp.number("credits_per_usd")
    if cost is None or rate is None:
        return []
    return [f"Priced at {credits(cost)} USD, at {credits(rate)} credits a dollar."]


def _settlement(settlement: Stamp) -> list[str]:
    """How a capture settled the credits set aside for its work."""
    figures = settlement.numbers("estimate", "actual")
    if figures is None:
        return []
    estimate, actual = figures
    outcome = SETTLEMENT_WORDS.get(settlement.text("outcome") or "", "")
    said = [
        f"{counted(estimate, 'credit')} {noun(estimate, 'was', 'were')} set aside when the "
        f"work started; it used {credits(actual)}. {outcome}".rstrip()
    ]
    if released := settlement.number("released"):
        said.append(f"{counted(released, 'credit')} went back to you.")
    return said


def _lots_sentence(transfer: Transfer, added: bool, money: Money) -> str:
    """Which of the account's credits a transfer spent, or what kind it added; lots of one
    kind that lapse together are told as one."""
    parts: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for part in transfer.lots:
        ends = f" (expiring {day_label(part.expires_at.date())})" if part.expires_at else ""
        parts[SOURCE_WORDS.get(part.source, part.source), ends] += money.to_decimal(part.amount)
    if added:
        kinds = ", ".join(
            counted(amount, f"{kind} credit") + ends for (kind, ends), amount in parts.items()
        )
        return f"Added as {kinds}."
    spent = ", ".join(f"{credits(amount)} {kind}{ends}" for (kind, ends), amount in parts.items())
    return f"Taken from your credits: {spent}."


@dataclass(frozen=True, slots=True)
class Expiring:
    """Credits that lapse at one moment unless spent first."""

    expires_at: datetime
    amount: Decimal
    kind: str


def expiring(expiries: list[Expiry], money: Money) -> list[Expiring]:
    """The account's coming expiries, per moment and kind of credit."""
    return [
        Expiring(
            found.expires_at,
            money.to_decimal(found.amount),
            SOURCE_WORDS.get(found.source, found.source),
        )
        for found in expiries
    ]


@dataclass(frozen=True, slots=True)
class Bar:
    """One day's stacked bar: a rectangle per item."""

    day: str
    x: float
    total: Decimal
    blocks: list[tuple[str, float, float, Decimal]]  # colour, y, height, credits


@dataclass(frozen=True, slots=True)
class Chart:
    """Credits spent per day over :data:`CHART_DAYS` days, as SVG geometry and a table."""

    width: int
    height: int
    bar_width: float
    top: Decimal
    bars: list[Bar]
    series: list[tuple[str, str]]  # what was used (its name), colour
    rows: list[tuple[str, list[Decimal], Decimal]]  # day, credits per series, total
    total: Decimal
    first_day: str
    last_day: str


def chart_days(today: date) -> list[date]:
    """The days the chart covers, oldest first, ending with ``today``."""
    return [today - timedelta(days=back) for back in range(CHART_DAYS - 1, -1, -1)]


def spent_on(item: str, catalog: PricingSettings) -> str:
    """The chart's name for what a day's spending went to: a catalog item's display name,
    a model the catalog no longer prices by :func:`model_name`, a description as written; a
    charge with neither (its kind stands in) is :data:`UNNAMED_USE`."""
    if catalog.entry(item) is not None:
        return catalog.display_name(item)
    if "/" in item:
        return model_name(item)
    return UNNAMED_USE if item in SPEND_KINDS else item


def chart(spent: list[DaySpend], today: date, money: Money, catalog: PricingSettings) -> Chart:
    """Stack each day's spending by what it went to, by name: the biggest by name, the
    rest as :data:`EVERYTHING_ELSE`."""
    days = chart_days(today)
    totals: dict[str, int] = defaultdict(int)
    by_day: dict[tuple[date, str], int] = defaultdict(int)
    for found in spent:
        name = spent_on(found.item, catalog)
        totals[name] += found.amount
        by_day[found.day, name] += found.amount
    ranked = sorted(totals, key=lambda name: (-totals[name], name))
    named = ranked if len(ranked) <= CHART_SERIES + 1 else ranked[:CHART_SERIES]
    series = named + ([EVERYTHING_ELSE] if len(ranked) > len(named) else [])
    grid: dict[date, list[int]] = {day: [0] * len(series) for day in days}
    for (day, name), amount in by_day.items():
        if day in grid:
            column = series.index(name) if name in named else len(series) - 1
            grid[day][column] += amount
    peak = max((sum(row) for row in grid.values()), default=0)
    width, height, gap = 720, 200, 4
    slot = width / len(days)
    bars = []
    for index, day in enumerate(days):
        y = float(height)
        blocks = []
        for column, amount in enumerate(grid[day]):
            if not amount:
                continue
            tall = height * amount / peak
            y -= tall
            blocks.append((PALETTE[column], round(y, 2), round(tall, 2), money.to_decimal(amount)))
        bars.append(
            Bar(
                day_label(day),
                round(index * slot + gap / 2, 2),
                money.to_decimal(sum(grid[day])),
                blocks,
            )
        )
    return Chart(
        width=width,
        height=height,
        bar_width=round(slot - gap, 2),
        top=money.to_decimal(peak),
        bars=bars,
        series=list(zip(series, PALETTE, strict=False)),
        rows=[
            (
                day_label(day),
                [money.to_decimal(a) for a in grid[day]],
                money.to_decimal(sum(grid[day])),
            )
            for day in reversed(days)
            if sum(grid[day])
        ],
        total=money.to_decimal(sum(totals.values())),
        first_day=day_label(days[0]),
        last_day=day_label(days[-1]),
    )


# Each period's heading on a member's page: what its window is, as the member lives it.
ALLOWANCE_HEADINGS = {
    "day": "Today",
    "week": "This week",
    "month": "This month",
    "lifetime": "In all",
}


@dataclass(frozen=True, slots=True)
class Allowance:
    """One of a member's limits as their page shows it: what it allows in its current
    window, what the window has used (spent, and reserved by work in progress), what is
    left, and when a new window starts (None: never)."""

    heading: str
    period: str
    amount: Decimal
    used: Decimal
    held: Decimal
    left: Decimal
    used_share: float  # of the amount, 0 to 100: the bar's length
    resets_at: datetime | None
    soft: bool


def allowances(member: Member, money: Money) -> list[Allowance]:
    """A member's limits as their page shows them, shortest period first."""
    shown = []
    for tally in member.limits:
        limit = tally.limit
        used = tally.spent + tally.held
        shown.append(
            Allowance(
                heading=ALLOWANCE_HEADINGS[limit.period],
                period=limit.period,
                amount=money.to_decimal(limit.amount),
                used=money.to_decimal(used),
                held=money.to_decimal(tally.held),
                left=money.to_decimal(max(tally.left(), 0)),
                used_share=100.0 if limit.amount == 0 else min(100.0, 100 * used / limit.amount),
                resets_at=tally.window.end,
                soft=limit.mode == "soft",
            )
        )
    return shown
