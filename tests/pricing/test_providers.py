"""Providers' own usage objects, built with the official SDKs' model classes and sent as the
SDKs serialise them, are priced from disjoint counts: nothing is counted twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from anthropic.types import CacheCreation, ServerToolUsage
from anthropic.types import Usage as AnthropicUsage
from google.genai.types import GenerateContentResponseUsageMetadata, ModalityTokenCount
from openai.types import CompletionUsage
from openai.types.completion_usage import CompletionTokensDetails, PromptTokensDetails
from openai.types.responses import ResponseUsage
from openai.types.responses.response_usage import (
    InputTokensDetails,
    InputTokensDetailsCacheWriteTokensDetails,
    OutputTokensDetails,
)

from creditsd.config import load_settings
from creditsd.inprocess import Ledger
from tests.conftest import body, client_for, create_key

# USD per million tokens. Cache writes kept for longer than the standard time have their
# own price where a model sets one; claude-3-7-sonnet sets only one cache-write price.
CATALOG = """
[pricing]
credits_per_usd = 100

[pricing.models."openai/gpt-4o"]
input = 2.50
output = 10.00
cache_read = 1.25

[pricing.models."openai/gpt-5"]
input = 1.00
output = 8.00
cache_read = 0.10
cache_write_by_ttl = { "12h" = 2.00 }

[pricing.models."anthropic/claude-sonnet-4"]
input = 3.00
output = 15.00
cache_read = 0.30
cache_write = 3.75
cache_write_by_ttl = { "1h" = 6.00 }

[pricing.models."anthropic/claude-3-7-sonnet"]
input = 3.00
output = 15.00
cache_read = 0.30
cache_write = 3.75

[pricing.models."google/gemini-2.5-flash"]
input = 0.30
output = 2.50
cache_read = 0.075
"""


def openai_chat() -> dict[str, Any]:
    """prompt_tokens includes cached tokens and cache writes; completion_tokens includes
    reasoning."""
    return CompletionUsage(
        prompt_tokens=2000,
        completion_tokens=700,
        total_tokens=2700,
        prompt_tokens_details=PromptTokensDetails(
            cached_tokens=1200, cache_write_tokens=300, audio_tokens=0
        ),
        completion_tokens_details=CompletionTokensDetails(
            reasoning_tokens=400,
            accepted_prediction_tokens=0,
            rejected_prediction_tokens=0,
            audio_tokens=0,
        ),
    ).model_dump(mode="json")


# gpt-4o: input 2000 − 1200 − 300 = 500 × 2.50 = 1250; cache reads 1200 × 1.25 = 1500; cache
# writes 300 × 2.50 (input's price) = 750; output 700 − 400 = 300 × 10 = 3000; reasoning
# 400 × 10 (output's price) = 4000. 10,500 µUSD = 0.0105 USD = 1.05 credits.
OPENAI_CHAT_CREDITS = Decimal("1.05")


def openai_responses() -> dict[str, Any]:
    """input_tokens includes cached tokens and cache writes; output_tokens includes reasoning."""
    return ResponseUsage(
        input_tokens=10_000,
        input_tokens_details=InputTokensDetails(
            cached_tokens=6000,
            cache_write_tokens=2000,
            cache_write_tokens_details=InputTokensDetailsCacheWriteTokensDetails(
                ttl_30m_tokens=500, ttl_12h_tokens=1500
            ),
        ),
        output_tokens=3000,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=1000),
        total_tokens=13_000,
    ).model_dump(mode="json")


# gpt-5: input 10,000 − 6000 − 2000 = 2000 × 1 = 2000; cache reads 6000 × 0.10 = 600; cache
# writes for 30 minutes 500 × 1 (input's price) = 500, for 12 hours 1500 × 2 = 3000; output
# 3000 − 1000 = 2000 × 8 = 16,000; reasoning 1000 × 8 = 8000. 30,100 µUSD = 3.01 credits.
OPENAI_RESPONSES_CREDITS = Decimal("3.01")


def anthropic_messages() -> dict[str, Any]:
    """input_tokens excludes cache reads and writes; output_tokens includes thinking."""
    return AnthropicUsage(
        input_tokens=50,
        cache_creation_input_tokens=3000,
        cache_creation=CacheCreation(
            ephemeral_5m_input_tokens=1000, ephemeral_1h_input_tokens=2000
        ),
        cache_read_input_tokens=20_000,
        output_tokens=800,
        server_tool_use=ServerToolUsage(web_search_requests=1, web_fetch_requests=0),
        service_tier="standard",
    ).model_dump(mode="json")


# claude-sonnet-4: input 50 × 3 = 150; cache writes for 5 minutes 1000 × 3.75 = 3750, for an
# hour 2000 × 6 = 12,000; cache reads 20,000 × 0.30 = 6000; output 800 × 15 = 12,000.
# 33,900 µUSD = 3.39 credits.
ANTHROPIC_CREDITS = Decimal("3.39")
# claude-3-7-sonnet prices every cache write at 3.75: 150 + 3000 × 3.75 + 6000 + 12,000 =
# 29,400 µUSD = 2.94 credits.
ANTHROPIC_ONE_WRITE_PRICE_CREDITS = Decimal("2.94")


def gemini(*, rest: bool = True) -> dict[str, Any]:
    """promptTokenCount includes cachedContentTokenCount; thoughts and tool-use prompts are
    counted apart from it and from the candidates."""
    metadata = GenerateContentResponseUsageMetadata(
        prompt_token_count=12_000,
        cached_content_token_count=8000,
        candidates_token_count=900,
        thoughts_token_count=1100,
        tool_use_prompt_token_count=400,
        total_token_count=14_400,
        prompt_tokens_details=[ModalityTokenCount(modality="TEXT", token_count=12_000)],
    )
    if rest:  # as the REST API writes usageMetadata: camelCase, absent fields left out
        return metadata.model_dump(mode="json", by_alias=True, exclude_none=True)
    return metadata.model_dump(mode="json")  # as the Python SDK dumps it


# gemini-2.5-flash: input 12,000 − 8000 + 400 = 4400 × 0.30 = 1320; cache reads 8000 × 0.075
# = 600; output 900 × 2.50 = 2250; thoughts 1100 × 2.50 (output's price) = 2750.
# 6920 µUSD = 0.692 credits.
GEMINI_CREDITS = Decimal("0.692")

CASES = [
    ("openai/gpt-4o", "openai_chat", openai_chat(), OPENAI_CHAT_CREDITS),
    ("openai/gpt-5", "openai_responses", openai_responses(), OPENAI_RESPONSES_CREDITS),
    ("anthropic/claude-sonnet-4", "anthropic", anthropic_messages(), ANTHROPIC_CREDITS),
    (
        "anthropic/claude-3-7-sonnet",
        "anthropic",
        anthropic_messages(),
        ANTHROPIC_ONE_WRITE_PRICE_CREDITS,
    ),
    ("google/gemini-2.5-flash", "gemini", gemini(), GEMINI_CREDITS),
    ("google/gemini-2.5-flash", "gemini", gemini(rest=False), GEMINI_CREDITS),
]


@pytest.fixture
async def priced(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An app's client of a ledger with the test catalog and 1000 credits in account u."""
    config = tmp_path / "creditsd.toml"
    config.write_text(CATALOG)
    settings = load_settings(path=config, environ={"CREDITSD_DATABASE_URL": database_url})
    ledger = await Ledger.connect(settings)
    try:
        await ledger.grant("u", ledger.money.to_minor(Decimal(1000)))
        async with client_for(ledger, await create_key(ledger, "app", "chat")) as client:
            yield client
    finally:
        await ledger.close()


@pytest.mark.parametrize(("model", "shape", "usage", "credits"), CASES)
async def test_a_provider_usage_object_is_charged_once_per_token(
    priced: httpx.AsyncClient, model: str, shape: str, usage: dict[str, Any], credits: Decimal
) -> None:
    provided = {"model": model, shape: usage}
    quote = await priced.post("/v1/quotes", json={"usage": provided})
    assert quote.status_code == 200, quote.text
    assert body(quote)["amount"] == credits
    charged = await priced.post(
        "/v1/charges",
        json={"account_id": "u", "usage": provided},
        headers={"Idempotency-Key": "call-1"},
    )
    assert charged.status_code == 201, charged.text
    assert (body(charged)["amount"], body(charged)["balance"]) == (credits, 1000 - credits)
    assert body(charged)["pricing"] == body(quote)["breakdown"]
    replayed = await priced.post(
        "/v1/charges",
        json={"account_id": "u", "usage": provided},
        headers={"Idempotency-Key": "call-1"},
    )
    assert replayed.headers["Idempotent-Replayed"] == "true"

    hold = await priced.post("/v1/holds", json={"account_id": "u", "amount": 10})
    assert hold.status_code == 201, hold.text
    captured = await priced.post(f"/v1/holds/{body(hold)['id']}/capture", json={"usage": provided})
    assert captured.status_code == 200, captured.text
    assert body(captured)["transfer"]["amount"] == credits

    recorded = await priced.post(
        "/v1/usage", json={"events": [{"id": "e1", "account_id": "u", "usage": provided}]}
    )
    assert recorded.status_code == 200, recorded.text
    assert [result["status"] for result in body(recorded)["results"]] == ["charged"]
    assert body(await priced.get("/v1/accounts/u"))["balance"] == 1000 - 3 * credits


async def test_the_price_stamp_shows_the_disjoint_counts(priced: httpx.AsyncClient) -> None:
    responses = {"model": "openai/gpt-5", "openai_responses": openai_responses()}
    charged = body(await priced.post("/v1/charges", json={"account_id": "u", "usage": responses}))
    lines = charged["pricing"]["lines"]
    assert [(line["item"], line["quantity"], line["usd_per_million"]) for line in lines] == [
        ("input_tokens", 2000, 1),
        ("output_tokens", 2000, 8),
        ("cache_read_tokens", 6000, Decimal("0.10")),
        ("cache_write_tokens", 500, 1),
        ("cache_write_12h_tokens", 1500, 2),
        ("reasoning_tokens", 1000, 8),
    ]
    assert lines[4]["description"] == "1500 cache write (12h) tokens × 2.00 USD/1M"
    # The same counts given as creditsd's own fields are the same use, at the same price.
    own = {
        "model": "openai/gpt-5",
        "input_tokens": 2000,
        "output_tokens": 2000,
        "cache_read_tokens": 6000,
        "cache_write_tokens": 500,
        "cache_write_tokens_by_ttl": {"12h": 1500},
        "reasoning_tokens": 1000,
    }
    quote = body(await priced.post("/v1/quotes", json={"usage": own}))
    assert quote["amount"] == OPENAI_RESPONSES_CREDITS
    assert quote["breakdown"] == charged["pricing"]


async def test_fields_a_provider_adds_later_are_tolerated(priced: httpx.AsyncClient) -> None:
    later = {**anthropic_messages(), "output_tokens_details": {"thinking_tokens": 300}}
    later["cache_creation"] = {**later["cache_creation"], "ephemeral_24h_input_tokens": 0}
    quote = await priced.post(
        "/v1/quotes", json={"usage": {"model": "anthropic/claude-sonnet-4", "anthropic": later}}
    )
    assert quote.status_code == 200, quote.text
    assert body(quote)["amount"] == ANTHROPIC_CREDITS  # thinking is inside output_tokens


CHAT, GEMINI = "openai/gpt-4o", "google/gemini-2.5-flash"


@pytest.mark.parametrize(
    ("usage", "code", "where"),
    [
        # creditsd's own fields stay strict, and one shape is given, never two
        ({"model": CHAT, "openai_chat": openai_chat(), "x": 1}, "validation_error", "usage.x"),
        ({"model": CHAT, "openai_chat": openai_chat(), "input_tokens": 0}, "validation_error", ""),
        ({"model": CHAT, "openai_chat": openai_chat(), "gemini": {}}, "validation_error", ""),
        ({"model": CHAT, "cache_write_tokens_by_ttl": {"1w": 1}}, "validation_error", "1w"),
        ({"model": CHAT, "cache_write_tokens_by_ttl": {"60m": 1}}, "validation_error", "60m"),
        ({"model": CHAT, "openai_chat": [1, 2]}, "validation_error", "openai_chat"),
        # a provider's object is taken as the provider writes it, its types checked
        ({"model": CHAT, "openai_chat": {"prompt_tokens": 5}}, "validation_error", "completion"),
        ({"model": GEMINI, "gemini": {"promptTokenCount": "12"}}, "validation_error", "prompt"),
        ({"model": GEMINI, "gemini": {"thoughtsTokenCount": -1}}, "validation_error", "thought"),
        # and its parts may not be more than the totals that include them
        (
            {"model": CHAT, "openai_chat": {**openai_chat(), "prompt_tokens": 1499}},
            "invalid_usage",
            "prompt_tokens (1499) is less than prompt_tokens_details.cached_tokens"
            " + prompt_tokens_details.cache_write_tokens (1500)",
        ),
        (
            {"model": CHAT, "openai_chat": {**openai_chat(), "completion_tokens": 399}},
            "invalid_usage",
            "completion_tokens (399)",
        ),
        (
            {
                "model": "openai/gpt-5",
                "openai_responses": {
                    **openai_responses(),
                    "input_tokens_details": {
                        "cached_tokens": 0,
                        "cache_write_tokens": 1000,
                        "cache_write_tokens_details": {"ttl_12h_tokens": 1001},
                    },
                },
            },
            "invalid_usage",
            "input_tokens_details.cache_write_tokens (1000)",
        ),
        (
            {
                "model": "anthropic/claude-sonnet-4",
                "anthropic": {**anthropic_messages(), "cache_creation_input_tokens": 2999},
            },
            "invalid_usage",
            "cache_creation_input_tokens (2999)",
        ),
        (
            {"model": GEMINI, "gemini": {**gemini(), "promptTokenCount": 7999}},
            "invalid_usage",
            "promptTokenCount (7999)",
        ),
    ],
)
async def test_usage_objects_that_are_refused(
    priced: httpx.AsyncClient, usage: dict[str, Any], code: str, where: str
) -> None:
    for path, sent in [
        ("/v1/charges", {"account_id": "u", "usage": usage}),
        ("/v1/holds", {"account_id": "u", "usage": usage}),
        ("/v1/quotes", {"usage": usage}),
    ]:
        refused = await priced.post(path, json=sent)
        assert refused.status_code == 422, refused.text
        error = body(refused)["error"]
        assert (error["code"], where in error["message"]) == (code, True), error
    event = {"id": "e1", "account_id": "u", "usage": usage}
    recorded = body(await priced.post("/v1/usage", json={"events": [event]}))["results"]
    assert [(result["status"], result["error"]["code"]) for result in recorded] == [
        ("invalid", code)
    ]
    assert where in recorded[0]["error"]["message"]
    assert body(await priced.get("/v1/accounts/u"))["balance"] == 1000
