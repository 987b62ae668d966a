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
from creditsd.price_settings import FEATURE_PATTERN, MAX_TTLS, MODEL_PATTERN, CacheTTL
from creditsd.pricing.catalog import FeatureUse, Price, TokenUse, Use, ttl_counts
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


class CatalogOut(BaseModel):
    """The catalog version prices come from now."""

    version: int
    credits_per_usd: AmountOut
    rounding: str
    markup_percent: AmountOut
    rate_multiplier: AmountOut
    features: dict[str, Any]
    meters: dict[str, Any]
    models: dict[str, Any]
