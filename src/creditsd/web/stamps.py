"""A transfer's price stamp as the pages read it: what was used, in words a customer
reads (``Chat message``, ``14.5 seconds at 10 credits a second``), and, for the console,
every term the catalog priced it with (version, markup, multiplier, rounding).

A stamp is JSON kept with its transfer, read here without trusting its shape: a part that
is missing, or not of the type a page shows, is left out. A gateway's usage post copies its
own fields into its stamp (``{"lines": "x"}`` is as welcome there as any other field), so
only the figures creditsd's own catalog wrote are read as a price
(:func:`catalog_priced`).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from creditsd.gateway.service import GATEWAY_APP
from creditsd.ledger.models import Transfer
from creditsd.price_settings import PricingSettings, model_name
from creditsd.web.pages import counted, credits

SHOWN_DIGITS = 60  # a number from a price stamp is shown with at most this many digits
ITEM_KEYS = ("model", "feature", "meter")
# What a model's priced line counts, in words: (one, many).
TOKEN_WORDS = {
    "input_tokens": ("input token", "input tokens"),
    "output_tokens": ("output token", "output tokens"),
    "reasoning_tokens": ("reasoning token", "reasoning tokens"),
    "cache_read_tokens": ("cached input token", "cached input tokens"),
    "cache_write_tokens": ("token written to the cache", "tokens written to the cache"),
    "images": ("image", "images"),
}
LONGER_CACHE_WRITE = re.compile(r"cache_write_([0-9]{1,3}[mhd])_tokens")
ROUNDING_WORDS = {
    "half_up": "to the nearest, halves up,",
    "half_even": "to the nearest, halves to even,",
    "up": "up",
    "down": "down",
}


class Stamp:
    """A price stamp, or any part of one: each reader answers None (or nothing) for a part
    that is missing or of another type."""

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

    def parts(self, key: str) -> list[Stamp]:
        """The objects listed under ``key``, such as a price's ``lines``."""
        listed = self._fields.get(key)
        if not isinstance(listed, list):
            return []
        return [Stamp(item) for item in listed if isinstance(item, dict)]


def reported(transfer: Transfer) -> bool:
    """Whether the transfer was made under the gateway's app name: a usage charge, whose
    stamp is the gateway's post, priced by the gateway, not by creditsd's price list, or a
    balance sync, which has no stamp. No API key may take the gateway's app name."""
    return transfer.app == GATEWAY_APP


def item(stamp: Stamp) -> str | None:
    """What a priced transfer paid for: the id of its model, feature or meter."""
    for key in ITEM_KEYS:
        if found := stamp.text(key):
            return found
    return None


def named(stamp: Stamp, catalog: PricingSettings) -> str | None:
    """The name customers read for what a priced transfer paid for (see
    :meth:`PricingSettings.display_name`); a model the catalog does not price, such as one
    a gateway reported, by :func:`model_name` (``gpt-4o-mini`` stays as written)."""
    found = item(stamp)
    if found is None:
        return None
    if stamp.text("model") == found and found not in catalog.models:
        return model_name(found)
    return catalog.display_name(found)


def catalog_priced(transfer: Transfer) -> Stamp:
    """The stamp of a transfer creditsd's catalog priced; an empty one for any other."""
    return Stamp(None if reported(transfer) else transfer.pricing)


def used(stamp: Stamp, catalog: PricingSettings) -> str | None:
    """What a catalog-priced use counted, as a customer reads it: ``3 uses at 10 credits
    each``, ``14.5 seconds at 10 credits a second``, ``1,234 input tokens, 567 output
    tokens``; None for a single use of a feature (its name says it) or a stamp without
    figures."""
    lines = stamp.parts("lines")
    kind = stamp.text("kind")
    if kind == "model":
        counts = [
            counted(quantity, *words)
            for line in lines
            if (quantity := line.number("quantity")) is not None
            and (words := _counts(line.text("item"))) is not None
        ]
        return ", ".join(counts) or None
    if kind not in {"feature", "meter"} or len(lines) != 1:
        return None
    (line,) = lines
    figures, unit = line.numbers("quantity", "unit_price"), line.text("unit")
    if figures is None or unit is None:
        return None
    quantity, price = figures
    each = counted(price, "credit")
    if kind == "feature":
        return None if quantity == 1 else f"{counted(quantity, 'use')} at {each} each"
    units = catalog.units(stamp.text("meter") or "", unit)
    return f"{counted(quantity, unit, units)} at {each} a {unit}"


def _counts(line_item: str | None) -> tuple[str, str] | None:
    """How a model's priced line names what it counts."""
    if line_item in TOKEN_WORDS:
        return TOKEN_WORDS[line_item]
    longer = LONGER_CACHE_WRITE.fullmatch(line_item or "")
    if longer is None:
        return None
    one, many = TOKEN_WORDS["cache_write_tokens"]
    return f"{one} for {longer[1]}", f"{many} for {longer[1]}"


def priced_parts(stamp: Stamp) -> list[tuple[str, Decimal]]:
    """A model's price per kind of token, as the customer paid it (markup and multiplier
    applied, not named): ``[("1,000 input tokens", 0.3), …]``; empty when a figure is
    missing."""
    terms = stamp.numbers("markup_percent", "rate_multiplier")
    if stamp.text("kind") != "model" or terms is None:
        return []
    markup, multiplier = terms
    parts = []
    for line in stamp.parts("lines"):
        figures, words = line.numbers("quantity", "credits"), _counts(line.text("item"))
        if figures is None or words is None:
            return []
        quantity, subtotal = figures
        paid = subtotal * (1 + markup / 100) * multiplier
        parts.append((counted(quantity, *words), paid.normalize()))
    return parts


def rounding(stamp: Stamp) -> str | None:
    """How the exact price was rounded to the amount charged, when that changed it:
    ``2.345 credits exactly, rounded up to 3.``"""
    figures, rule = stamp.numbers("exact", "amount"), stamp.text("rounding")
    if figures is None or rule not in ROUNDING_WORDS or figures[0] == figures[1]:
        return None
    exact, amount = figures
    return (
        f"{counted(exact, 'credit')} exactly, rounded {ROUNDING_WORDS[rule]} to {credits(amount)}."
    )


def terms(stamp: Stamp) -> list[str]:
    """Every term the stamp records, for operators: the catalog version, each line as the
    catalog wrote it, the dollar figures, markup, multiplier, the exact and rounded amounts,
    and a capture's settlement against its hold."""
    said = []
    if (version := stamp.whole("catalog_version")) is not None:
        said.append(f"Catalog version {version}")
    said += [text for line in stamp.parts("lines") if (text := line.text("description"))]
    for key, label in (
        ("usd", "US dollars"),
        ("cost_usd", "US dollars reported"),
        ("credits_per_usd", "Credits per US dollar"),
        ("markup_percent", "Markup %"),
        ("rate_multiplier", "Rate multiplier"),
        ("exact", "Exact credits"),
    ):
        if (number := stamp.number(key)) is not None:
            said.append(f"{label}: {credits(number)}")
    if (rule := stamp.text("rounding")) and (amount := stamp.number("amount")) is not None:
        said.append(f"Rounded {rule.replace('_', ' ')} to {credits(amount)}")
    settlement = stamp.part("settlement")
    if (outcome := settlement.text("outcome")) is not None:
        figures = ", ".join(
            f"{key} {credits(number)}"
            for key in ("estimate", "actual", "charged", "released", "uncollected")
            if (number := settlement.number(key)) is not None
        )
        said.append(
            f"Hold settled: {outcome.replace('_', ' ')}" + (f" ({figures})" if figures else "")
        )
    return said
