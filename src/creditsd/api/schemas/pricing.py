"""Priced inputs (a feature used, an LLM call's tokens) and the catalog and quotes out."""

from __future__ import annotations

import copy
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from creditsd.kit.fields import AmountIn, AmountOut, StrictRequest, decimal_field
from creditsd.price_settings import (
    FEATURE_PATTERN,
    MAX_TTLS,
    MODEL_PATTERN,
    CacheTTL,
    FeaturePrice,
    MeterPrice,
    ModelPrice,
)
from creditsd.pricing.catalog import Catalog, FeatureUse, Price, TokenUse, Use, ttl_counts
from creditsd.pricing.providers import (
    AnthropicUsage,
    GeminiUsage,
    OpenAIChatUsage,
    OpenAIResponsesUsage,
    ProviderUsage,
    Tokens,
)

FeatureName = Annotated[
    str,
    Field(
        pattern=f"^{FEATURE_PATTERN}$",
        description="A feature or meter of the catalog (GET /v1/pricing).",
        examples=["chat_message", "video_generation"],
    ),
]
Quantity = Annotated[
    Decimal,
    BeforeValidator(decimal_field),
    WithJsonSchema(
        {
            "anyOf": [{"type": "number"}, {"type": "string"}],
            "description": "How many uses (a whole number) or units of a meter (seconds, GPU "
            "hours; up to 6 decimal places). Default 1.",
            "examples": [1, 30, "1.5"],
        }
    ),
]


def exactly_one_of(**alternatives: tuple[str, ...]) -> Callable[[dict[str, Any]], None]:
    """A ``json_schema_extra`` saying in a ``oneOf`` what a model validator enforces: exactly
    one alternative is given (present and not null), with only its own companions.

    ``exactly_one_of(feature=("quantity",), usage=())`` adds ``{"oneOf": [{"required":
    ["feature"], "properties": {"feature": <its schema without null>, "usage": {"type":
    "null"}}}, {"required": ["usage"], "properties": {"usage": …, "feature": {"type":
    "null"}, "quantity": {"type": "null"}}}]}``.
    """
    fields = {*alternatives, *(name for companions in alternatives.values() for name in companions)}

    def add_one_of(schema: dict[str, Any]) -> None:
        properties = schema["properties"]
        schema["oneOf"] = [
            {
                "required": [given],
                "properties": {
                    given: _not_null(properties[given]),
                    **{name: {"type": "null"} for name in sorted(fields - {given, *companions})},
                },
            }
            for given, companions in alternatives.items()
        ]

    return add_one_of


def _not_null(optional: dict[str, Any]) -> dict[str, Any]:
    """The schema of an optional field (``anyOf: [schema, null]``) without its null."""
    (schema,) = [choice for choice in optional["anyOf"] if choice != {"type": "null"}]
    return copy.deepcopy(schema)


_DISPLAY_NAME = "What customers read: the catalog's `display_name`, else made from the id."
TokensByTTL = Annotated[
    dict[CacheTTL, Tokens],
    # patternProperties alone would let the schema take any other name too
    Field(max_length=MAX_TTLS, json_schema_extra={"additionalProperties": False}),
]
PROVIDER_SHAPES = ("openai_chat", "openai_responses", "anthropic", "gemini")
_COUNTS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_tokens_by_ttl",
    "reasoning_tokens",
)


def _counts_or_one_provider(schema: dict[str, Any]) -> None:
    """Say in a ``oneOf`` what :class:`UsageIn` enforces: creditsd's counts, or exactly one
    provider's object and none of the counts."""
    properties, null = schema["properties"], {"type": "null"}
    schema["oneOf"] = [
        {"properties": dict.fromkeys(PROVIDER_SHAPES, null)},
        *(
            {
                "required": [shape],
                "properties": {
                    **{other: null for other in PROVIDER_SHAPES if other != shape},
                    shape: _not_null(properties[shape]),
                    **dict.fromkeys(_COUNTS, False),
                },
            }
            for shape in PROVIDER_SHAPES
        ),
    ]


class UsageIn(StrictRequest):
    """One LLM call's tokens: creditsd's own counts, each excluding the others (input
    excludes cached tokens, output excludes reasoning tokens), or one provider's own usage
    object as the provider writes it (``openai_chat``, ``openai_responses``, ``anthropic``,
    ``gemini``), which creditsd turns into those counts."""

    model_config = ConfigDict(json_schema_extra=_counts_or_one_provider)

    model: str = Field(
        pattern=f"^{MODEL_PATTERN}$", max_length=128, examples=["openai/gpt-4o-mini"]
    )
    input_tokens: Tokens = 0
    output_tokens: Tokens = 0
    cache_read_tokens: Tokens = 0
    cache_write_tokens: Tokens = Field(
        0, description="Written to the cache for the provider's standard time (5 minutes)."
    )
    cache_write_tokens_by_ttl: TokensByTTL | None = Field(
        None, description='Written to the cache for longer, by lifetime: {"1h": 2000}.'
    )
    reasoning_tokens: Tokens = 0
    openai_chat: OpenAIChatUsage | None = Field(
        None, description="An OpenAI Chat Completions response's `usage`."
    )
    openai_responses: OpenAIResponsesUsage | None = Field(
        None, description="An OpenAI Responses response's `usage`."
    )
    anthropic: AnthropicUsage | None = Field(
        None, description="An Anthropic Messages response's `usage`."
    )
    gemini: GeminiUsage | None = Field(
        None, description="A Gemini response's `usageMetadata` (camelCase or snake_case)."
    )

    def use(self) -> TokenUse:
        """The use the catalog prices (``invalid_usage`` when a provider's counts do not add
        up)."""
        provided = self._provided()
        if provided:
            return provided[0].use(self.model)
        return TokenUse(
            model=self.model,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens,
            cache_write_tokens_by_ttl=ttl_counts(self.cache_write_tokens_by_ttl or {}),
        )

    def _provided(self) -> list[ProviderUsage]:
        given = (getattr(self, shape) for shape in PROVIDER_SHAPES)
        return [usage for usage in given if usage is not None]

    @model_validator(mode="after")
    def _counts_or_one_provider(self) -> Self:
        provided = self._provided()
        if len(provided) > 1:
            raise ValueError(f"give one of {', '.join(PROVIDER_SHAPES)}, not several")
        if provided and self.model_fields_set & set(_COUNTS):
            raise ValueError("give creditsd's token counts or a provider's usage object, not both")
        return self


class PricedUse(StrictRequest):
    """What happened, for the catalog to price: a feature (and quantity) or token usage."""

    feature: FeatureName | None = None
    quantity: Quantity | None = None
    usage: UsageIn | None = None

    def use(self) -> Use | None:
        """The use given, if any."""
        if self.usage is not None:
            return self.usage.use()
        if self.feature is not None:
            return FeatureUse(self.feature, Decimal(1) if self.quantity is None else self.quantity)
        return None

    def _given(self) -> list[str]:
        given = (("feature", self.feature), ("usage", self.usage))
        return [name for name, value in given if value is not None]

    @model_validator(mode="after")
    def _quantity_goes_with_a_feature(self) -> Self:
        if self.quantity is not None and self.feature is None:
            raise ValueError("quantity is given only with feature")
        return self


class PricedRequest(PricedUse):
    """Exactly one of: an ``amount`` of credits, a ``feature`` (with ``quantity``), ``usage``."""

    model_config = ConfigDict(
        json_schema_extra=exactly_one_of(amount=(), feature=("quantity",), usage=())
    )

    amount: AmountIn | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = self._given() + (["amount"] if self.amount is not None else [])
        if len(given) != 1:
            raise ValueError("give exactly one of amount, feature or usage")
        return self


class QuoteCreate(PricedUse):
    """Price a use without charging: exactly one of ``feature`` (with ``quantity``) or ``usage``."""

    model_config = ConfigDict(json_schema_extra=exactly_one_of(feature=("quantity",), usage=()))

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if len(self._given()) != 1:
            raise ValueError("give exactly one of feature or usage")
        return self


class QuoteOut(BaseModel):
    """What a use costs now, and why."""

    amount: AmountOut
    breakdown: dict[str, Any] = Field(description="Lines, unit prices, markup and rounding.")
    catalog_version: int

    @classmethod
    def of(cls, price: Price, amount: Decimal) -> QuoteOut:
        """Render a price (``amount`` already in credits)."""
        return cls(
            amount=amount,
            breakdown=price.breakdown,
            catalog_version=price.breakdown["catalog_version"],
        )


UsdOut = Annotated[
    Decimal, WithJsonSchema({"type": "number", "description": "US dollars, written exactly."})
]
NumberOut = Annotated[Decimal, WithJsonSchema({"type": "number"})]
"""A decimal that is not an amount (a quantity, a percentage), written exactly."""


class FeatureOut(BaseModel):
    """A feature: a fixed price per use."""

    display_name: str = Field(description=_DISPLAY_NAME)
    price: AmountOut
    max_quantity: int | None = Field(description="Uses one charge may count at most.")
    description: str | None

    @classmethod
    def of(cls, feature: FeaturePrice, display_name: str) -> FeatureOut:
        """A feature of the catalog, with the name customers read."""
        return cls(
            display_name=display_name,
            price=feature.price,
            max_quantity=feature.max_quantity,
            description=feature.description,
        )


class MeterOut(BaseModel):
    """A meter: a price per unit of time or work."""

    display_name: str = Field(description=_DISPLAY_NAME)
    price: AmountOut
    unit: str = Field(description="One unit, as customers read it: `second`, `GPU hour`.")
    unit_plural: str = Field(description="Its plural: the catalog's, else `unit` + s (es, ies).")
    max_quantity: NumberOut | None = Field(description="Units one use may measure at most.")
    description: str | None

    @classmethod
    def of(cls, meter: MeterPrice, display_name: str) -> MeterOut:
        """A meter of the catalog, with the name customers read."""
        return cls(
            display_name=display_name,
            price=meter.price,
            unit=meter.unit,
            unit_plural=meter.units,
            max_quantity=meter.max_quantity,
            description=meter.description,
        )


class ModelOut(BaseModel):
    """An LLM: US dollars per million tokens of each kind (null: priced as the kind it falls
    back to), and its own markup and multiplier (null: the catalog's)."""

    display_name: str = Field(description=_DISPLAY_NAME)
    input: UsdOut
    output: UsdOut
    cache_read: UsdOut | None
    cache_write: UsdOut | None
    cache_write_by_ttl: dict[str, UsdOut] | None
    reasoning: UsdOut | None
    image: UsdOut | None = Field(description="US dollars per image generated.")
    markup_percent: NumberOut | None
    rate_multiplier: NumberOut | None

    @classmethod
    def of(cls, model: ModelPrice, display_name: str) -> ModelOut:
        """A model of the catalog, with the name customers read."""
        return cls.model_validate({**model.model_dump(), "display_name": display_name})


class CatalogOut(BaseModel):
    """The catalog version prices come from now."""

    version: int
    credits_per_usd: AmountOut
    rounding: str
    markup_percent: AmountOut
    rate_multiplier: AmountOut
    features: dict[str, FeatureOut]
    meters: dict[str, MeterOut]
    models: dict[str, ModelOut]

    @classmethod
    def of(cls, catalog: Catalog) -> CatalogOut:
        """A published catalog version."""
        settings = catalog.settings
        named = settings.display_name
        return cls(
            version=catalog.version,
            credits_per_usd=settings.credits_per_usd,
            rounding=settings.rounding,
            markup_percent=settings.markup_percent,
            rate_multiplier=settings.rate_multiplier,
            features={k: FeatureOut.of(v, named(k)) for k, v in settings.features.items()},
            meters={k: MeterOut.of(v, named(k)) for k, v in settings.meters.items()},
            models={k: ModelOut.of(v, named(k)) for k, v in settings.models.items()},
        )
