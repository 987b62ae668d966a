"""The price catalog: what features, meters and models cost, and the exact price of one use.

Prices are decimals of credits (features, meters) or of US dollars per million tokens
(models). A price is computed exactly and rounded once, at the end, to the ledger's scale.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_UP, Decimal, localcontext
from typing import Any

from creditsd.kit.errors import InvalidRequest
from creditsd.kit.money import INT64_MAX, Money, plain
from creditsd.price_settings import (
    MAX_QUANTITY_PLACES,
    TOKEN_KINDS,
    FeaturePrice,
    MeterPrice,
    ModelPrice,
    PricingSettings,
    noun,
    ttl_seconds,
)

_ROUNDING = {
    "half_up": ROUND_HALF_UP,
    "half_even": ROUND_HALF_EVEN,
    "up": ROUND_UP,
    "down": ROUND_DOWN,
}
_MILLION = Decimal(1_000_000)
_HUNDRED = Decimal(100)
_LARGEST_DIGITS = 18  # an exact price of 10¹⁹ credits is past any 64-bit amount
_LARGEST_QUANTITY_DIGITS = 30  # a quantity of 10³⁰ of anything means nothing
MEMO_SIZE = 4096  # distinct uses a catalog version remembers the price of


class UnknownFeature(InvalidRequest):
    """The catalog prices no feature or meter by that name."""

    code = "unknown_feature"

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"no feature or meter is named {name!r}", feature=name, known=known)


class UnknownModel(InvalidRequest):
    """The catalog prices no model by that id."""

    code = "unknown_model"

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"no model is priced as {name!r}", model=name, known=known)


class InvalidQuantity(InvalidRequest):
    """A quantity the feature or meter does not take."""

    code = "invalid_quantity"

    def __init__(self, reason: str) -> None:
        super().__init__(f"quantity {reason}", field="quantity")


class ZeroPrice(InvalidRequest):
    """A use whose price rounds to nothing: there is nothing to charge."""

    code = "zero_price"

    def __init__(self) -> None:
        super().__init__("this use costs nothing at the ledger's scale")


@dataclass(frozen=True, slots=True)
class FeatureUse:
    """``quantity`` uses of a feature, or ``quantity`` units of a meter."""

    feature: str
    quantity: Decimal = Decimal(1)

    def request(self) -> dict[str, Any]:
        """The use as the caller asked for it (what idempotency fingerprints)."""
        return {"feature": self.feature, "quantity": plain(self.quantity)}


@dataclass(frozen=True, slots=True)
class TokenUse:
    """One LLM call's tokens; each count excludes the others (see the README).

    ``cache_write_tokens`` were written to the cache for the provider's standard time;
    ``cache_write_tokens_by_ttl`` holds the writes kept longer, as :func:`ttl_counts` makes
    it (``(("1h", 2000),)``).
    """

    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens_by_ttl: tuple[tuple[str, int], ...] = ()
    images: int = 0  # images generated, priced apiece

    def counts(self) -> dict[str, int]:
        """Token counts by kind (cache writes kept longer than standard are apart)."""
        return {kind: getattr(self, f"{kind}_tokens") for kind in TOKEN_KINDS}

    def priced_counts(self, model: ModelPrice) -> Iterator[tuple[str, str, int, Decimal]]:
        """Each count that is not zero, as (item, what it is, count, USD per million)."""
        for kind, count in self.counts().items():
            if count:
                yield f"{kind}_tokens", kind.replace("_", " "), count, model.per_million(kind)
            if kind == "cache_write":
                for ttl, written in self.cache_write_tokens_by_ttl:
                    price = model.cache_write_per_million(ttl)
                    yield f"cache_write_{ttl}_tokens", f"cache write ({ttl})", written, price

    def request(self) -> dict[str, Any]:
        """The use as the caller asked for it (what idempotency fingerprints)."""
        usage = {"model": self.model, **{f"{k}_tokens": v for k, v in self.counts().items()}}
        if self.cache_write_tokens_by_ttl:  # absent otherwise: earlier fingerprints still hold
            usage["cache_write_tokens_by_ttl"] = dict(self.cache_write_tokens_by_ttl)
        if self.images:
            usage["images"] = self.images
        return {"usage": usage}


def ttl_counts(counts: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    """Cache writes by lifetime as :class:`TokenUse` keeps them: shortest first, no zeros."""
    return tuple(
        sorted(((ttl, n) for ttl, n in counts.items() if n), key=lambda c: ttl_seconds(c[0]))
    )


Use = FeatureUse | TokenUse


@dataclass(frozen=True, slots=True)
class Price:
    """What a use costs in minor units, and the breakdown that explains it."""

    amount: int
    breakdown: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Catalog:
    """One published version of the catalog."""

    version: int
    settings: PricingSettings
    _memo: dict[tuple[object, ...], Price] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def price(self, use: Use, money: Money) -> Price:
        """The exact price of ``use``, rounded once to the ledger's scale.

        A version remembers the prices it computed (a later version is another
        :class:`Catalog`, with none), so equal uses share one :class:`Price`: its breakdown
        is read-only.
        """
        # A quantity by its digits: 1 and 1.0000000 are equal, but a meter refuses the second.
        what = use if isinstance(use, TokenUse) else (use.feature, use.quantity.as_tuple())
        key = (money.scale, what)
        price = self._memo.get(key)
        if price is None:
            price = self._price(use, money)
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = price
        return price

    def _price(self, use: Use, money: Money) -> Price:
        with localcontext() as context:
            context.prec = 60
            if isinstance(use, TokenUse):
                lines, subtotal, extra = self._tokens(use)
                exact = subtotal * (1 + extra["markup_percent"] / _HUNDRED)
                exact *= extra["rate_multiplier"]
            else:
                lines, exact, extra = self._units(use)
                subtotal = exact
            if exact.adjusted() > _LARGEST_DIGITS:  # past any 64-bit amount, at any scale
                raise InvalidQuantity("prices beyond the ledger's range")
            rounded = exact.quantize(
                Decimal(1).scaleb(-money.scale), rounding=_ROUNDING[self.settings.rounding]
            )
        amount = int(rounded.scaleb(money.scale))
        if amount <= 0:
            raise ZeroPrice
        if amount > INT64_MAX:
            raise InvalidQuantity("prices beyond the ledger's range")
        breakdown = {
            "catalog_version": self.version,
            **extra,
            "lines": lines,
            "subtotal": plain(subtotal),
            "exact": plain(exact),
            "rounding": self.settings.rounding,
            "amount": money.to_decimal(amount),
        }
        breakdown["summary"] = _summary(breakdown)
        return Price(amount, breakdown)

    def _units(self, use: FeatureUse) -> tuple[list[dict[str, Any]], Decimal, dict[str, Any]]:
        settings = self.settings
        quantity = use.quantity
        if quantity <= 0:
            raise InvalidQuantity("must be greater than zero")
        if quantity.adjusted() >= _LARGEST_QUANTITY_DIGITS:
            raise InvalidQuantity("is out of range")
        entry: FeaturePrice | MeterPrice
        if use.feature in settings.features:
            entry = settings.features[use.feature]
            if quantity != quantity.to_integral_value():
                raise InvalidQuantity(f"of {use.feature} must be a whole number")
            unit, units = "use", "uses"
        elif use.feature in settings.meters:
            entry = meter = settings.meters[use.feature]
            if -quantity.as_tuple().exponent > MAX_QUANTITY_PLACES:  # type: ignore[operator]
                raise InvalidQuantity(f"has more than {MAX_QUANTITY_PLACES} decimal places")
            unit, units = meter.unit, meter.units
        else:
            raise UnknownFeature(use.feature, sorted([*settings.features, *settings.meters]))
        if entry.max_quantity is not None and quantity > entry.max_quantity:
            raise InvalidQuantity(f"of {use.feature} is at most {entry.max_quantity}")
        credits = entry.price * quantity
        line = {
            "item": use.feature,
            "description": f"{use.feature}: {plain(quantity)} {noun(quantity, unit, units)}"
            f" × {entry.price} credits/{unit}",
            "quantity": plain(quantity),
            "unit": unit,
            "unit_price": entry.price,
            "credits": plain(credits),
        }
        kind = "feature" if unit == "use" else "meter"
        return [line], credits, {"kind": kind, kind: use.feature}

    def _tokens(self, use: TokenUse) -> tuple[list[dict[str, Any]], Decimal, dict[str, Any]]:
        settings = self.settings
        model = settings.models.get(use.model)
        if model is None:
            raise UnknownModel(use.model, sorted(settings.models))
        markup = model.markup_percent
        multiplier = model.rate_multiplier
        extra = {
            "kind": "model",
            "model": use.model,
            "credits_per_usd": settings.credits_per_usd,
            "markup_percent": settings.markup_percent if markup is None else markup,
            "rate_multiplier": settings.rate_multiplier if multiplier is None else multiplier,
        }
        lines = []
        usd = Decimal(0)
        for item, what, count, per_million in use.priced_counts(model):
            cost = count * per_million / _MILLION
            usd += cost
            lines.append(
                {
                    "item": item,
                    "description": f"{count} {what} {noun(count, 'token')} × {per_million} USD/1M",
                    "quantity": count,
                    "unit": "token",
                    "usd_per_million": per_million,
                    "usd": plain(cost),
                    "credits": plain(cost * settings.credits_per_usd),
                }
            )
        if use.images:
            if model.image is None:
                raise InvalidQuantity(f"of images: {use.model} has no price per image")
            cost = use.images * model.image
            usd += cost
            lines.append(
                {
                    "item": "images",
                    "description": f"{use.images} {noun(use.images, 'image')}"
                    f" × {model.image} USD/image",
                    "quantity": use.images,
                    "unit": "image",
                    "usd_per_image": model.image,
                    "usd": plain(cost),
                    "credits": plain(cost * settings.credits_per_usd),
                }
            )
        extra["usd"] = plain(usd)
        return lines, usd * settings.credits_per_usd, extra


def _summary(breakdown: dict[str, Any]) -> str:
    """One sentence a customer can read: what was used, at what price, for how much."""
    text = " + ".join(line["description"] for line in breakdown["lines"])
    if breakdown["kind"] == "model":
        text = (
            f"{breakdown['model']}: {text} = {breakdown['usd']:f} USD"
            f" × {breakdown['credits_per_usd']} credits/USD"
            f" × (1 + {breakdown['markup_percent']}% markup)"
            f" × {breakdown['rate_multiplier']} rate"
        )
    rounding = breakdown["rounding"].replace("_", " ")
    return (
        f"{text} = {breakdown['exact']:f} credits, rounded {rounding}"
        f" to {breakdown['amount']:f} (catalog v{breakdown['catalog_version']})"
    )
