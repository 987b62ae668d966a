"""Providers' own usage objects, read as each provider writes them, and the disjoint counts
the catalog prices.

A provider's totals include some of its details (OpenAI's ``prompt_tokens`` includes
``cached_tokens``); each detail is priced as its own kind and taken out of the total that
includes it, so no token is priced twice. The README's table maps every field. Fields a
provider adds later are ignored; counts that do not add up are ``422 invalid_usage``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from creditsd.kit.errors import InvalidRequest
from creditsd.kit.fields import WholeNumber
from creditsd.price_settings import MAX_TOKENS
from creditsd.pricing.catalog import TokenUse, ttl_counts

Tokens = Annotated[int, Field(ge=0, le=MAX_TOKENS), WholeNumber]
Count = Tokens | None  # providers write null (or leave out) what they did not count


class InvalidUsage(InvalidRequest):
    """A provider's usage object whose parts are more than the total that includes them."""

    code = "invalid_usage"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field} {reason}", field=field)


def _without(field: str, total: int, parts: dict[str, int | None]) -> int:
    """``total`` less the ``parts`` it includes, each priced apart."""
    included = sum(part or 0 for part in parts.values())
    if included > total:
        names = " + ".join(parts)
        raise InvalidUsage(field, f"({total}) is less than {names} ({included}) it includes")
    return total - included


class _Written(BaseModel):
    """A part of a provider's object: as the provider writes it, later fields ignored."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class _PromptDetails(_Written):
    cached_tokens: Count = None
    cache_write_tokens: Count = None


class _CompletionDetails(_Written):
    reasoning_tokens: Count = None


class OpenAIChatUsage(_Written):
    """OpenAI Chat Completions' ``usage``: ``prompt_tokens`` includes cached tokens and cache
    writes, ``completion_tokens`` includes reasoning tokens."""

    prompt_tokens: Tokens
    completion_tokens: Tokens
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None

    def use(self, model: str) -> TokenUse:
        """The disjoint counts of this usage."""
        prompt = self.prompt_tokens_details or _PromptDetails()
        completion = self.completion_tokens_details or _CompletionDetails()
        return TokenUse(
            model,
            input_tokens=_without(
                "prompt_tokens",
                self.prompt_tokens,
                {
                    "prompt_tokens_details.cached_tokens": prompt.cached_tokens,
                    "prompt_tokens_details.cache_write_tokens": prompt.cache_write_tokens,
                },
            ),
            cache_read_tokens=prompt.cached_tokens or 0,
            cache_write_tokens=prompt.cache_write_tokens or 0,
            output_tokens=_without(
                "completion_tokens",
                self.completion_tokens,
                {"completion_tokens_details.reasoning_tokens": completion.reasoning_tokens},
            ),
            reasoning_tokens=completion.reasoning_tokens or 0,
        )


class _CacheWriteLifetimes(_Written):
    ttl_12h_tokens: Count = None


class _InputDetails(_Written):
    cached_tokens: Count = None
    cache_write_tokens: Count = None
    cache_write_tokens_details: _CacheWriteLifetimes | None = None


class _OutputDetails(_Written):
    reasoning_tokens: Count = None


class OpenAIResponsesUsage(_Written):
    """OpenAI Responses' ``usage``: ``input_tokens`` includes cached tokens and cache writes
    (12-hour ones among them), ``output_tokens`` includes reasoning tokens."""

    input_tokens: Tokens
    output_tokens: Tokens
    input_tokens_details: _InputDetails | None = None
    output_tokens_details: _OutputDetails | None = None

    def use(self, model: str) -> TokenUse:
        """The disjoint counts of this usage."""
        given = self.input_tokens_details or _InputDetails()
        lifetimes = given.cache_write_tokens_details or _CacheWriteLifetimes()
        output = self.output_tokens_details or _OutputDetails()
        return TokenUse(
            model,
            input_tokens=_without(
                "input_tokens",
                self.input_tokens,
                {
                    "input_tokens_details.cached_tokens": given.cached_tokens,
                    "input_tokens_details.cache_write_tokens": given.cache_write_tokens,
                },
            ),
            cache_read_tokens=given.cached_tokens or 0,
            cache_write_tokens=_without(
                "input_tokens_details.cache_write_tokens",
                given.cache_write_tokens or 0,
                {"cache_write_tokens_details.ttl_12h_tokens": lifetimes.ttl_12h_tokens},
            ),
            cache_write_tokens_by_ttl=ttl_counts({"12h": lifetimes.ttl_12h_tokens or 0}),
            output_tokens=_without(
                "output_tokens",
                self.output_tokens,
                {"output_tokens_details.reasoning_tokens": output.reasoning_tokens},
            ),
            reasoning_tokens=output.reasoning_tokens or 0,
        )


class OpenAIEmbeddingsUsage(_Written):
    """OpenAI Embeddings' ``usage``: ``prompt_tokens`` are the input's tokens, and so is
    ``total_tokens`` (read when the other is missing); an embedding has no output."""

    prompt_tokens: Count = None
    total_tokens: Count = None

    def use(self, model: str) -> TokenUse:
        """The input tokens of this usage."""
        tokens = self.total_tokens if self.prompt_tokens is None else self.prompt_tokens
        if tokens is None:
            raise InvalidUsage("prompt_tokens", "is missing")
        return TokenUse(model, input_tokens=tokens)


class _CacheCreation(_Written):
    ephemeral_5m_input_tokens: Count = None
    ephemeral_1h_input_tokens: Count = None


class AnthropicUsage(_Written):
    """Anthropic Messages' ``usage``: ``input_tokens`` excludes cache reads and writes,
    ``output_tokens`` includes thinking."""

    input_tokens: Tokens
    output_tokens: Tokens
    cache_creation_input_tokens: Count = None
    cache_read_input_tokens: Count = None
    cache_creation: _CacheCreation | None = None

    def use(self, model: str) -> TokenUse:
        """The disjoint counts of this usage."""
        parts = self.cache_creation or _CacheCreation()
        five_minutes, one_hour = parts.ephemeral_5m_input_tokens, parts.ephemeral_1h_input_tokens
        written = self.cache_creation_input_tokens
        if written is None:
            written = (five_minutes or 0) + (one_hour or 0)
        # Writes for five minutes, and any not broken down by lifetime, are standard writes.
        standard = (five_minutes or 0) + _without(
            "cache_creation_input_tokens",
            written,
            {
                "cache_creation.ephemeral_5m_input_tokens": five_minutes,
                "cache_creation.ephemeral_1h_input_tokens": one_hour,
            },
        )
        return TokenUse(
            model,
            input_tokens=self.input_tokens,
            cache_read_tokens=self.cache_read_input_tokens or 0,
            cache_write_tokens=standard,
            cache_write_tokens_by_ttl=ttl_counts({"1h": one_hour or 0}),
            output_tokens=self.output_tokens,
        )


class GeminiUsage(_Written):
    """Gemini's ``usageMetadata`` (camelCase as the REST API writes it, or the Python SDK's
    snake_case): ``promptTokenCount`` includes ``cachedContentTokenCount``; thoughts and
    tool-use prompts are counted apart."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_alias=True, validate_by_name=True
    )

    prompt_token_count: Count = None
    cached_content_token_count: Count = None
    candidates_token_count: Count = None
    thoughts_token_count: Count = None
    tool_use_prompt_token_count: Count = None

    def use(self, model: str) -> TokenUse:
        """The disjoint counts of this usage."""
        prompt = _without(
            "promptTokenCount",
            self.prompt_token_count or 0,
            {"cachedContentTokenCount": self.cached_content_token_count},
        )
        return TokenUse(
            model,
            input_tokens=prompt + (self.tool_use_prompt_token_count or 0),
            cache_read_tokens=self.cached_content_token_count or 0,
            output_tokens=self.candidates_token_count or 0,
            reasoning_tokens=self.thoughts_token_count or 0,
        )


ProviderUsage = OpenAIChatUsage | OpenAIResponsesUsage | AnthropicUsage | GeminiUsage
