"""What the billing page shows, worked out from the ledger's records: each transaction's
"why" in plain words, and the usage chart drawn as inline SVG (no script needed)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from creditsd.gateway.service import GATEWAY_APP
from creditsd.kit.money import Money
from creditsd.ledger.models import PAID_SOURCE, DaySpend, Expiry, Transfer
from creditsd.web.pages import credits

CHART_DAYS = 30
SHOWN_DIGITS = 60  # a number from a price stamp is shown with at most this many digits
CHART_SERIES = 5  # the biggest items each get a colour; the rest add up to "other"
# Colours that keep 3:1 contrast against the white card (WCAG 1.4.11), told apart by hue.
PALETTE = ("#2446c7", "#b3261e", "#11703c", "#8a4b00", "#6a3fb5", "#545b6b")

KIND_TITLES = {
    "purchase": "Credits bought",
    "grant": "Credits given to you",
    "charge": "Used",
    "capture": "Used",
    "refund": "Refund",
    "clawback": "Taken back",
    "adjustment": "Correction",
    "expiry": "Credits expired",
    "sync": "Usage from your app",
    "reversal": "Given back",
}
SOURCE_WORDS = {
    PAID_SOURCE: "paid",
    "subscription": "from your plan",
    "signup": "sign-up",
    "promotion": "promotional",
    "adjustment": "from a correction",
}
ROUNDING_WORDS = {
    "half_up": "to the nearest, halves up",
    "half_even": "to the nearest, halves to even",
    "up": "up",
    "down": "down",
}
SETTLEMENT_WORDS = {
    "within_hold": "The work cost no more than was set aside.",
    "over_hold_charged": "The work cost more than was set aside; the difference was charged.",
    "over_hold_capped": "The work cost more than was set aside and than you had; "
    "only what you had was charged.",
}


def when(moment: datetime) -> str:
    """A moment as people read it: ``1 Dec 2026, 04:41 UTC``."""
    return f"{moment.day} {moment:%b %Y, %H:%M} UTC"


def day_label(day: date) -> str:
    """A day as people read it: ``1 Dec 2026``."""
    return f"{day.day} {day:%b %Y}"


@dataclass(frozen=True, slots=True)
class Entry:
    """One transaction as the account's owner reads it."""

    when: str
    title: str
    detail: str | None
    change: Decimal
    balance: Decimal | None
    why: list[str]
    lines: list[str] = field(default_factory=list)


def entry(transfer: Transfer, account_id: str, money: Money) -> Entry:
    """A transfer from ``account_id``'s side, with the reasons behind its amount."""
    stamp = Stamp(transfer.pricing)
    balance = transfer.balance_after(account_id)
    return Entry(
        when=when(transfer.created_at),
        title=KIND_TITLES.get(transfer.kind, transfer.kind),
        detail=_item(stamp) or transfer.description,
        change=money.to_decimal(transfer.change_for(account_id)),
        balance=None if balance is None else money.to_decimal(balance),
        why=_why(transfer, stamp, account_id, money),
        lines=[] if _reported(transfer) else stamp.texts("lines", "description"),
    )


class Stamp:
    """A price stamp read without trusting its shape: a part that is missing, or not of the
    type the page shows, reads as None (or as nothing), and is left out of the explanation.

    A stamp is JSON kept with its transfer, and a gateway's usage post copies its own fields
    into its stamp (``{"lines": "x"}`` is as welcome there as any other field).
    """

    def __init__(self, fields: object) -> None:
        self._fields: dict[str, Any] = fields if isinstance(fields, dict) else {}

    def text(self, key: str) -> str | None:
        """A non-empty string."""
        value = self._fields.get(key)
        return value if isinstance(value, str) and value else None

    def whole(self, key: str) -> int | None:
        """An integer (not a boolean)."""
        value = self._fields.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def number(self, key: str) -> Decimal | None:
        """An exact number of a size a page can write out (JSON's numbers are read as
        integers and Decimals: a float never reaches a stamp)."""
        value = self._fields.get(key)
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            return None
        number = Decimal(value)
        if not number.is_finite() or not -SHOWN_DIGITS < number.adjusted() < SHOWN_DIGITS:
            return None
        return number

    def numbers(self, *keys: str) -> list[Decimal] | None:
        """Each of ``keys`` as a number, or None unless all of them are numbers."""
        found = [number for key in keys if (number := self.number(key)) is not None]
        return found if len(found) == len(keys) else None

    def part(self, key: str) -> Stamp:
        """A nested object, such as a capture's ``settlement``."""
        return Stamp(self._fields.get(key))

    def texts(self, key: str, field: str) -> list[str]:
        """The ``field`` string of each object listed under ``key``."""
        listed = self._fields.get(key)
        if not isinstance(listed, list):
            return []
        return [text for item in listed if (text := Stamp(item).text(field)) is not None]


def _reported(transfer: Transfer) -> bool:
    """Whether the transfer records a charge the gateway billed (its stamp is the gateway's
    post, priced by the gateway, not by creditsd's price list). No API key may take the
    gateway's app name."""
    return transfer.app == GATEWAY_APP


def _item(stamp: Stamp) -> str | None:
    """What a priced transfer paid for: its model, feature or meter."""
    for key in ("model", "feature", "meter"):
        if found := stamp.text(key):
            return found
    return None


def _why(transfer: Transfer, stamp: Stamp, account_id: str, money: Money) -> list[str]:
    """Sentences that explain a transfer's amount, from its price stamp and lots."""
    said = _reported_price(stamp) if _reported(transfer) else _catalog_price(stamp)
    if transfer.kind == "expiry":
        said.append("These credits reached their expiry date unspent.")
    if transfer.kind == "purchase":
        packs = (transfer.metadata or {}).get("packs")
        said.append(f"Paid by card through Stripe{f' ({packs})' if packs else ''}.")
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
    return [f"Reported by the gateway: {credits(cost)} USD at {credits(rate)} credits a dollar."]


def _catalog_price(stamp: Stamp) -> list[str]:
    """How creditsd's price list priced the transfer, and how a capture settled its hold."""
    said = []
    version, rounding = stamp.whole("catalog_version"), stamp.text("rounding")
    price = stamp.numbers("exact", "amount")
    if version is not None and rounding in ROUNDING_WORDS and price:
        exact, amount = price
        said.append(
            f"Priced by version {version} of the price list: {credits(exact)} credits "
            f"exactly, rounded {ROUNDING_WORDS[rounding]} to {credits(amount)}."
        )
        terms = stamp.numbers("usd", "credits_per_usd", "markup_percent", "rate_multiplier")
        if stamp.text("kind") == "model" and terms:
            usd, per_usd, markup, rate = terms
            said.append(
                f"Model prices are in US dollars ({credits(usd)} USD here), at "
                f"{per_usd} credits a dollar, plus a {markup}% markup, times a rate of {rate}."
            )
    settlement = stamp.part("settlement")
    if figures := settlement.numbers("estimate", "actual"):
        estimate, actual = figures
        outcome = SETTLEMENT_WORDS.get(settlement.text("outcome") or "", "")
        said.append(
            f"{credits(estimate)} credits were set aside when the work started; "
            f"it used {credits(actual)}. {outcome}".rstrip()
        )
        if released := settlement.number("released"):
            said.append(f"{credits(released)} credits went back to you.")
    return said


def _lots_sentence(transfer: Transfer, added: bool, money: Money) -> str:
    """Which of the account's credits a transfer spent, or what kind it added."""
    parts = ", ".join(
        f"{credits(money.to_decimal(part.amount))} {SOURCE_WORDS.get(part.source, part.source)}"
        + (f" (expiring {day_label(part.expires_at.date())})" if part.expires_at else "")
        for part in transfer.lots
    )
    return f"Added as {parts} credits." if added else f"Taken from your credits: {parts}."


@dataclass(frozen=True, slots=True)
class Expiring:
    """Credits that lapse on one day unless spent first."""

    day: str
    amount: Decimal
    kind: str


def expiring(expiries: list[Expiry], money: Money) -> list[Expiring]:
    """The account's coming expiries, per day and kind of credit."""
    return [
        Expiring(
            day_label(found.expires_at.date()),
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
    series: list[tuple[str, str]]  # item, colour
    rows: list[tuple[str, list[Decimal], Decimal]]  # day, credits per series, total
    total: Decimal
    first_day: str
    last_day: str


def chart_days(today: date) -> list[date]:
    """The days the chart covers, oldest first, ending with ``today``."""
    return [today - timedelta(days=back) for back in range(CHART_DAYS - 1, -1, -1)]


def chart(spent: list[DaySpend], today: date, money: Money) -> Chart:
    """Stack each day's spending by item: the biggest items by name, the rest as other."""
    days = chart_days(today)
    totals: dict[str, int] = defaultdict(int)
    for found in spent:
        totals[found.item] += found.amount
    ranked = sorted(totals, key=lambda item: (-totals[item], item))
    named = ranked if len(ranked) <= CHART_SERIES + 1 else ranked[:CHART_SERIES]
    series = named + (["other"] if len(ranked) > len(named) else [])
    grid: dict[date, list[int]] = {day: [0] * len(series) for day in days}
    for found in spent:
        if found.day in grid:
            column = series.index(found.item) if found.item in named else len(series) - 1
            grid[found.day][column] += found.amount
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
