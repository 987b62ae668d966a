"""``[pricing]`` as configured: the price of each feature, meter and model.

Prices are decimals of credits (features, meters) or of US dollars per million tokens
(models). ``creditsd.pricing.catalog`` turns them into exact prices of uses.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from creditsd.kit.money import AmountError, parse_decimal

FEATURE_PATTERN = r"[a-z0-9][a-z0-9_.-]{0,63}"
MODEL_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._:-]*"
MAX_TOKENS = 10**12
MAX_QUANTITY_PLACES = 6
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write", "reasoning")
# Where a token kind without a price of its own is priced.
FALLBACK = {"cache_read": "input", "cache_write": "input", "reasoning": "output"}
_TTL_UNITS = {"m": 60, "h": 3600, "d": 86_400}
MAX_TTLS = 8  # distinct cache lifetimes one use or one model names
DISPLAY_NAME_LENGTH = 80
_SIBILANT = re.compile(r"(?:s|x|z|ch|sh)$")
_CONSONANT_Y = re.compile(r"[^aeiou]y$")


def _decimal(value: object) -> Decimal:
    try:
        return parse_decimal(value)
    except AmountError as exc:
        raise ValueError(str(exc)) from exc


CatalogDecimal = Annotated[Decimal, BeforeValidator(_decimal)]
DisplayName = Annotated[str, Field(max_length=DISPLAY_NAME_LENGTH, pattern=r"\S")] | None
"""What customers read for a feature, meter or model (the billing page, the console's
ledger); without one, :func:`readable` makes one from its id."""


def readable(item: str) -> str:
    """A name customers can read, made from a catalog id: a model's by :func:`model_name`
    (``openai/gpt-4o-mini`` → ``gpt-4o-mini``); a feature's or meter's words, the first
    capitalised (``chat_message`` → ``Chat message``)."""
    if "/" in item:
        return model_name(item)
    words = item.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def model_name(model: str) -> str:
    """A model's name without its vendor, as its maker writes it: ``gpt-4o-mini``."""
    return model.rpartition("/")[2]


def noun(number: Decimal | int, one: str, many: str | None = None) -> str:
    """The noun that agrees with ``number``: ``one`` for exactly one (``1``, ``-1``,
    ``1.0``), else ``many`` (by default by :func:`plural`'s rule: ``0.5 credits``)."""
    return one if abs(Decimal(number)) == 1 else many or plural(one)


def plural(unit: str) -> str:
    """The plural of a unit written in English, by the common rule for its last word:
    ``second`` → ``seconds``, ``GPU hour`` → ``GPU hours``, ``box`` → ``boxes``, ``query`` →
    ``queries``. A unit the rule gets wrong sets ``unit_plural`` in the catalog."""
    if _SIBILANT.search(unit):
        return f"{unit}es"
    if _CONSONANT_Y.search(unit):
        return f"{unit[:-1]}ies"
    return f"{unit}s"


def ttl_seconds(ttl: str) -> int:
    """A cache lifetime's length: ``ttl_seconds("12h") == 43200``."""
    return int(ttl[:-1]) * _TTL_UNITS[ttl[-1]]


CacheTTL = Annotated[
    str,
    Field(
        # in its largest whole unit, so one lifetime has one name
        pattern=r"^(?:(?:[1-9]|[1-5][0-9])m|(?:[1-9]|1[0-9]|2[0-3])h|[1-9][0-9]{0,2}d)$",
        examples=["5m", "1h", "12h"],
    ),
]
"""How long a cache write is kept: minutes below an hour, hours below a day, or days
(``5m``, ``1h``, ``12h``, ``1d``; ``60m`` is refused: it is ``1h``)."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeaturePrice(_Entry):
    """A fixed price in credits per use; ``quantity`` (a whole number) scales it."""

    price: CatalogDecimal = Field(gt=0)
    max_quantity: int | None = Field(None, ge=1)
    description: str | None = None
    display_name: DisplayName = None


class MeterPrice(_Entry):
    """A price in credits per unit of time or work; quantities may be fractional. The unit
    is written as customers read one of it (``second``, ``GPU hour``); ``unit_plural`` says
    its plural where :func:`plural`'s rule would not (``unit_plural = "kWh"``)."""

    price: CatalogDecimal = Field(gt=0)
    unit: str = Field(min_length=1, max_length=32)
    unit_plural: str | None = Field(None, min_length=1, max_length=32)
    max_quantity: CatalogDecimal | None = Field(None, gt=0)
    description: str | None = None
    display_name: DisplayName = None

    @property
    def units(self) -> str:
        """The unit's plural: ``unit_plural``, else by :func:`plural`'s rule."""
        return self.unit_plural or plural(self.unit)


class ModelPrice(_Entry):
    """US dollars per million tokens of each kind, with this model's markup and multiplier.

    Cache reads and writes without a price of their own cost what input does; reasoning
    tokens without one cost what output does. ``cache_write`` prices writes kept for the
    provider's standard time (Anthropic's 5 minutes); ``cache_write_by_ttl`` prices writes
    kept longer, by lifetime (``{"1h": 6}``), and a lifetime without a price costs what
    ``cache_write`` does. ``image`` prices each image an image model generates. Markup and
    multiplier default to the catalog's.
    """

    input: CatalogDecimal = Field(ge=0)
    output: CatalogDecimal = Field(ge=0)
    cache_read: CatalogDecimal | None = Field(None, ge=0)
    cache_write: CatalogDecimal | None = Field(None, ge=0)
    cache_write_by_ttl: dict[CacheTTL, Annotated[CatalogDecimal, Field(ge=0)]] | None = Field(
        None, max_length=MAX_TTLS
    )
    reasoning: CatalogDecimal | None = Field(None, ge=0)
    image: CatalogDecimal | None = Field(None, ge=0, description="USD per image generated.")
    markup_percent: CatalogDecimal | None = Field(None, ge=0, le=10_000)
    rate_multiplier: CatalogDecimal | None = Field(None, gt=0, le=1000)
    display_name: DisplayName = None

    def per_million(self, kind: str) -> Decimal:
        """The USD price per million tokens of ``kind``, after fallbacks."""
        own: Decimal | None = getattr(self, kind)
        return own if own is not None else self.per_million(FALLBACK[kind])

    def cache_write_per_million(self, ttl: str) -> Decimal:
        """The USD price per million tokens written to the cache for ``ttl``."""
        own = (self.cache_write_by_ttl or {}).get(ttl)
        return own if own is not None else self.per_million("cache_write")


def _features() -> dict[str, FeaturePrice]:
    named = {
        "canvas_generation_simple": "Canvas (simple)",
        "canvas_generation_complex": "Canvas (complex)",
        "ai_text_chat": "AI text chat",
        "ai_image_generation": "AI image",
    }
    return {
        name: FeaturePrice(price=Decimal(price), display_name=named.get(name))
        for name, price in {
            "chat_message": 10,
            "canvas_generation_simple": 50,
            "canvas_generation_complex": 75,
            "ai_text_chat": 1,
            "ai_image_generation": 5,
        }.items()
    }


def _meters() -> dict[str, MeterPrice]:
    return {
        "video_generation": MeterPrice(price=Decimal(10), unit="second"),
        "training_job": MeterPrice(price=Decimal(200), unit="GPU hour"),
    }


def _models() -> dict[str, ModelPrice]:
    def usd(name: str, *prices: str | None) -> ModelPrice:
        values = dict(zip(("input", "output", "cache_read", "cache_write"), prices, strict=True))
        given = {k: v for k, v in values.items() if v is not None}
        return ModelPrice.model_validate({**given, "display_name": name})

    return {
        "openai/gpt-4o": usd("GPT-4o", "2.50", "10.00", "1.25", None),
        "openai/gpt-4o-mini": usd("GPT-4o mini", "0.15", "0.60", "0.075", None),
        "anthropic/claude-sonnet-4": usd("Claude Sonnet 4", "3.00", "15.00", "0.30", "3.75"),
        "google/gemini-2.5-flash": usd("Gemini 2.5 Flash", "0.30", "2.50", "0.075", None),
        "openai/dall-e-3": ModelPrice(
            input=Decimal(0), output=Decimal(0), image=Decimal("0.04"), display_name="DALL·E 3"
        ),
        "openai/text-embedding-3-small": usd("Text embedding 3 small", "0.02", "0", None, None),
    }


class PricingSettings(BaseModel):
    """``[pricing]``: the catalog. Without the section the built-in defaults serve."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    credits_per_usd: CatalogDecimal = Field(Decimal(100), gt=0, le=10**9)
    rounding: Literal["half_up", "half_even", "up", "down"] = "half_up"
    markup_percent: CatalogDecimal = Field(Decimal(0), ge=0, le=10_000)
    rate_multiplier: CatalogDecimal = Field(Decimal(1), gt=0, le=1000)
    refresh_interval: float = Field(5.0, gt=0, le=3600)
    features: dict[Annotated[str, Field(pattern=f"^{FEATURE_PATTERN}$")], FeaturePrice] = Field(
        default_factory=_features
    )
    meters: dict[Annotated[str, Field(pattern=f"^{FEATURE_PATTERN}$")], MeterPrice] = Field(
        default_factory=_meters
    )
    models: dict[Annotated[str, Field(pattern=f"^{MODEL_PATTERN}$")], ModelPrice] = Field(
        default_factory=_models
    )

    @model_validator(mode="after")
    def _names_are_unique(self) -> PricingSettings:
        both = sorted(set(self.features) & set(self.meters))
        if both:
            raise ValueError(f"{', '.join(both)} named both a feature and a meter")
        return self

    def entry(self, item: str) -> FeaturePrice | MeterPrice | ModelPrice | None:
        """The feature, meter or model of that id, if the catalog prices it."""
        return self.features.get(item) or self.meters.get(item) or self.models.get(item)

    def display_name(self, item: str) -> str:
        """What customers read for a feature, meter or model: its ``display_name``, else
        one :func:`readable` makes from its id (also for one this catalog no longer has)."""
        entry = self.entry(item)
        named = None if entry is None else entry.display_name
        return named or readable(item)

    def units(self, meter: str, unit: str) -> str:
        """The plural of ``unit``, as ``meter`` measures it in this catalog, else by
        :func:`plural`'s rule (a stamp keeps the unit it was priced in)."""
        found = self.meters.get(meter)
        return found.units if found is not None and found.unit == unit else plural(unit)

    def content(self) -> dict[str, Any]:
        """What a catalog version is: everything but how often processes look for a new one."""
        return self.model_dump(mode="python", exclude={"refresh_interval"}, exclude_none=True)
