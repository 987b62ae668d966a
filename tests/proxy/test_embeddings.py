"""Embeddings through the proxy, driven by the official ``openai`` SDK: held for the input's
estimated tokens at the model's input price, billed on the input tokens the upstream
counted, and free when the upstream returns none or they cost less than a minor unit."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import openai
import pytest
from openai.types import CreateEmbeddingResponse

from creditsd.inprocess import Ledger
from creditsd.proxy.embeddings import input_tokens
from tests.proxy.conftest import captures, post, settled
from tests.proxy.upstream import VECTOR, Upstream

# $0.02 per million input tokens: a minor unit (10⁻⁶ USD) buys 50 tokens.
EMBEDDER = "openai/text-embedding-3-small"
PRICE = 20  # the upstream's usage: 1,000 tokens × 0.02


@pytest.mark.parametrize("encoding", ["base64", "float"])
async def test_embeddings_are_billed_on_the_input_tokens_the_upstream_counted(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream, encoding: str
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    if encoding == "base64":  # what the SDK asks for when the caller names no format
        answer = await client.embeddings.create(model=EMBEDDER, input=["Hello", "world"])
    else:
        answer = await client.embeddings.create(
            model=EMBEDDER, input=["Hello", "world"], encoding_format="float"
        )
    assert [item.embedding for item in answer.data] == [list(VECTOR)] * 2
    assert (answer.usage.prompt_tokens, answer.usage.total_tokens) == (1_000, 1_000)
    assert await settled(proxied) == (10 * proxied.money.unit - PRICE, 0)
    ((_headers, sent),) = upstream.requests
    assert sent["encoding_format"] == encoding
    (capture,) = await captures(proxied)
    assert capture.metadata is not None
    assert capture.metadata["proxy_billed_on"] == "usage"
    assert capture.pricing is not None
    assert "1000 input tokens × 0.02 USD/1M" in capture.pricing["summary"]


async def test_embeddings_the_balance_cannot_cover_are_402_before_any_upstream_byte(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    # 400,000 characters are estimated at 100,000 tokens: 2,000 minor units.
    await proxied.grant("user_1", 1_999)
    with pytest.raises(openai.APIStatusError) as refused:
        await client.embeddings.create(model=EMBEDDER, input="x" * 400_000)
    assert refused.value.status_code == 402
    assert isinstance(refused.value.body, dict)
    assert Decimal(str(refused.value.body["required"])) == Decimal("0.2")
    # An input too small to cost a minor unit holds one: an account with nothing pays for
    # nothing.
    with pytest.raises(openai.APIStatusError) as empty:
        await client.embeddings.create(
            model=EMBEDDER, input="Hi", extra_headers={"X-Creditsd-Account": "user_2"}
        )
    assert empty.value.status_code == 402
    assert upstream.requests == []
    assert await settled(proxied) == (1_999, 0)


async def test_embeddings_that_cost_less_than_a_minor_unit_are_free_and_hold_nothing(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 1)
    upstream.embedding_usage = {"prompt_tokens": 2, "total_tokens": 2}  # 0.04 of a unit
    answer = await client.embeddings.create(model=EMBEDDER, input="Hi")
    assert answer.data[0].embedding == list(VECTOR)
    assert await settled(proxied) == (1, 0)
    assert await captures(proxied) == []


async def test_embeddings_without_usage_are_billed_on_the_estimate(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    upstream.embedding_usage = None
    # 40,000 characters are estimated at 10,000 tokens: 200 minor units.
    await client.embeddings.create(model=EMBEDDER, input="x" * 40_000)
    assert await settled(proxied) == (10 * proxied.money.unit - 200, 0)
    (capture,) = await captures(proxied)
    assert capture.metadata is not None
    assert capture.metadata["proxy_billed_on"] == "estimate"


async def test_an_upstream_refusal_of_embeddings_costs_nothing(
    proxied: Ledger, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    upstream.behaviour = "refuse"
    upstream.refusal = 400
    answer = await post(proxied, "/embeddings", {"model": EMBEDDER, "input": "Hi"})
    assert answer.status_code == 400
    assert await settled(proxied) == (10 * proxied.money.unit, 0)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"model": "acme/unknown", "input": "Hi"}, 404),
        ({"input": "Hi"}, 404),
        ({"model": EMBEDDER}, 400),
        ({"model": EMBEDDER, "input": {"text": "Hi"}}, 400),
        ({"model": EMBEDDER, "input": True}, 400),
        ({"model": EMBEDDER, "input": ["Hi", 3]}, 400),
        ({"model": EMBEDDER, "input": [[1, "x"]]}, 400),
        ({"model": EMBEDDER, "input": [[1, 2.5]]}, 400),
    ],
)
async def test_a_bad_embeddings_call_is_a_4xx_and_reaches_no_upstream(
    proxied: Ledger, upstream: Upstream, body: dict[str, Any], status: int
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    answer = await post(proxied, "/embeddings", body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert upstream.requests == []
    assert await settled(proxied) == (10 * proxied.money.unit, 0)


@pytest.mark.parametrize(
    ("given", "tokens"),
    [
        ("Hello, world", 3),  # 12 characters
        ("Hello, world!", 4),  # 13, rounded up
        (["Hello, world", "Hi"], 4),  # 3 + 1
        ([9906, 11, 1917], 3),  # a token array
        ([[9906, 11], [1917], "Hi"], 4),  # 2 + 1 + 1
        ([], 0),
    ],
)
def test_the_estimate_counts_texts_by_characters_and_token_arrays_exactly(
    given: Any, tokens: int
) -> None:
    assert input_tokens(given) == tokens


def test_the_fake_upstream_writes_what_the_sdk_reads() -> None:
    upstream = Upstream()
    try:
        sent = {"model": EMBEDDER, "input": ["a", "b"], "encoding_format": "float"}
        assert len(CreateEmbeddingResponse.model_validate(upstream.embeddings(sent)).data) == 2
    finally:
        upstream.close()
