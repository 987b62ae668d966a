"""The Vercel AI SDK (``ai`` with ``@openrouter/ai-sdk-provider`` or ``@ai-sdk/openai``,
run by Node) drives the proxy unchanged: ``generateText``, ``streamText`` and ``embed``
pointed at creditsd over real sockets, billed to the minor unit, with what the SDK shows its
user checked alongside.

The SDK lives in ``tests/proxy/vercel`` (``npm ci --prefix tests/proxy/vercel``, which
``scripts/test`` runs); ``call.mjs`` there makes one chat call with the OpenRouter provider
and ``openai.mjs`` one call with the OpenAI provider's defaults (the Responses API), each
printing what came of it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from creditsd.inprocess import Ledger
from tests.conftest import create_key, serve_app, unavailable
from tests.proxy.conftest import FULL_PRICE, MODEL, captures, settled
from tests.proxy.test_embeddings import EMBEDDER
from tests.proxy.upstream import VECTOR, Behaviour, Upstream

PROJECT = Path(__file__).parent / "vercel"
FUNDS = 100_000  # ten credits, in minor units


async def run_sdk(
    ledger: Ledger, mode: str, script: str = "call.mjs", model: str = MODEL
) -> dict[str, Any]:
    """``script`` in ``mode`` for ``model`` against creditsd served over real sockets,
    paying as user_1; what it printed."""
    node = shutil.which("node")
    if node is None or not (PROJECT / "node_modules").is_dir():
        unavailable("the Vercel AI SDK tests need Node and `npm ci --prefix tests/proxy/vercel`")
    key = await create_key(ledger, "app")
    async with serve_app(ledger) as base:
        environ = {**os.environ, "CREDITSD_URL": base, "CREDITSD_KEY": key}
        process = await asyncio.create_subprocess_exec(
            node,
            str(PROJECT / script),
            model,
            mode,
            env={**environ, "CREDITSD_ACCOUNT": "user_1"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    report: dict[str, Any] = json.loads(out)
    return report


def tokens(report: dict[str, Any]) -> tuple[int | None, ...]:
    """The input, output and total tokens the SDK reported (None: undefined)."""
    usage = report["usage"]
    return tuple(usage.get(name) for name in ("inputTokens", "outputTokens", "totalTokens"))


async def test_generate_text_shows_the_answer_and_its_usage_and_is_billed_on_it(
    proxied: Ledger, upstream: Upstream
) -> None:
    await proxied.grant("user_1", FUNDS)
    report = await run_sdk(proxied, "generate")
    assert report["error"] is None
    assert (report["text"], report["finishReason"]) == ("Hello!", "stop")
    assert tokens(report) == (1_000, 500, 1_500)
    # 1,000 × $0.15/M + 500 × $0.60/M = $0.00045 = 0.045 credits = 450 minor units.
    assert await settled(proxied) == (FUNDS - FULL_PRICE, 0)
    (headers, sent) = upstream.requests[0]
    assert sent["messages"] == [{"role": "user", "content": "Hi"}]
    assert (sent["max_tokens"], "stream" in sent) == (1_000, False)
    # The app's attribution reaches OpenRouter as the provider sent it.
    assert headers["HTTP-Referer"] == "https://app.example"
    assert headers["X-OpenRouter-Title"] == "Example App"


async def test_stream_text_with_the_providers_defaults_is_billed_on_the_usage_it_never_asked(
    proxied: Ledger, upstream: Upstream
) -> None:
    await proxied.grant("user_1", FUNDS)
    report = await run_sdk(proxied, "stream")
    assert report["error"] is None
    assert (report["text"], report["finishReason"]) == ("Hello! How can I help?", "stop")
    # The provider asked for no usage, so, as from OpenAI, none came: the SDK says so.
    assert tokens(report) == (None, None, None)
    (_headers, sent) = upstream.requests[0]
    assert (sent["stream"], sent["stream_options"]) == (True, {"include_usage": True})
    assert "usage" not in sent
    assert await settled(proxied) == (FUNDS - FULL_PRICE, 0)


async def test_stream_text_asking_for_usage_the_openrouter_way_gets_it(
    proxied: Ledger, upstream: Upstream
) -> None:
    await proxied.grant("user_1", FUNDS)
    report = await run_sdk(proxied, "stream-usage")
    assert report["error"] is None
    assert report["text"] == "Hello! How can I help?"
    assert tokens(report) == (1_000, 500, 1_500)
    assert report["providerMetadata"]["openrouter"]["usage"]["completionTokens"] == 500
    (_headers, sent) = upstream.requests[0]
    assert sent["usage"] == {"include": True}  # OpenRouter's own field, passed on as sent
    assert sent["stream_options"] == {"include_usage": True}
    assert await settled(proxied) == (FUNDS - FULL_PRICE, 0)


async def test_an_upstream_error_mid_stream_reaches_the_sdk_and_bills_what_was_delivered(
    proxied: Ledger, upstream: Upstream
) -> None:
    await proxied.grant("user_1", FUNDS)
    upstream.behaviour = "fail_midstream"
    report = await run_sdk(proxied, "stream-usage")
    assert report["text"] == "Hello!"  # three pieces, then the error event
    assert report["error"] is not None
    assert "Provider returned error" in report["error"]["message"]
    # Delivered: the input's estimate (the SDK's body is 131 bytes, 33 tokens × 0.15 = 4.95)
    # and "Hello!" (6 characters, 2 tokens × 0.6 = 1.2): 6.15 minor units, rounded to 6.
    assert await settled(proxied) == (FUNDS - 6, 0)
    (capture,) = await captures(proxied)
    assert capture.metadata is not None
    assert capture.metadata["proxy_billed_on"] == "delivered"


@pytest.mark.parametrize("mode", ["generate", "stream"])
async def test_a_call_the_balance_cannot_cover_is_a_402_the_sdk_reports(
    proxied: Ledger, upstream: Upstream, mode: str
) -> None:
    await proxied.grant("user_1", 1)  # one minor unit
    report = await run_sdk(proxied, mode)
    assert report["text"] == ""
    assert report["error"]["statusCode"] == 402
    assert upstream.requests == []
    assert await settled(proxied) == (1, 0)


async def test_the_openai_providers_generate_text_calls_responses_and_is_billed_on_its_usage(
    proxied: Ledger, upstream: Upstream
) -> None:
    await proxied.grant("user_1", FUNDS)
    report = await run_sdk(proxied, "generate", "openai.mjs")
    assert report["error"] is None
    assert (report["text"], report["finishReason"]) == ("Hello! How can I help?", "stop")
    assert tokens(report) == (1_000, 500, 1_500)
    assert await settled(proxied) == (FUNDS - FULL_PRICE, 0)
    ((_headers, sent),) = upstream.requests
    assert sent["input"] == [{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}]
    assert (sent["max_output_tokens"], "stream" in sent) == (1_000, False)


async def test_the_openai_providers_stream_text_shows_the_usage_it_was_billed_on(
    proxied: Ledger, upstream: Upstream
) -> None:
    await proxied.grant("user_1", FUNDS)
    report = await run_sdk(proxied, "stream", "openai.mjs")
    assert report["error"] is None
    assert (report["text"], report["finishReason"]) == ("Hello! How can I help?", "stop")
    assert tokens(report) == (1_000, 500, 1_500)  # a response's usage always comes
    ((_headers, sent),) = upstream.requests
    assert sent["stream"] is True
    assert await settled(proxied) == (FUNDS - FULL_PRICE, 0)


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        ("fail_midstream", "Provider returned error"),  # a response.failed event
        ("drop_midstream", "the model provider's stream broke off"),  # creditsd's error event
    ],
)
async def test_a_response_failing_mid_stream_reaches_the_sdk_and_bills_what_was_delivered(
    proxied: Ledger, upstream: Upstream, behaviour: Behaviour, message: str
) -> None:
    await proxied.grant("user_1", FUNDS)
    upstream.behaviour = behaviour
    report = await run_sdk(proxied, "stream", "openai.mjs")
    assert report["text"] == "Hello!"  # three pieces, then the failure
    assert (report["error"]["message"], report["finishReason"]) == (message, "error")
    # Delivered: the input's estimate (the provider's body is 141 bytes, 36 tokens × 0.15 =
    # 5.4) and "Hello!" (6 characters, 2 tokens × 0.6 = 1.2): 6.6, rounded to 7 minor units.
    assert await settled(proxied) == (FUNDS - 7, 0)
    (capture,) = await captures(proxied)
    assert capture.metadata is not None
    assert capture.metadata["proxy_billed_on"] == "delivered"


@pytest.mark.parametrize("mode", ["generate", "stream", "embed"])
async def test_a_call_the_balance_cannot_cover_is_a_402_the_openai_provider_reports(
    proxied: Ledger, upstream: Upstream, mode: str
) -> None:
    model = EMBEDDER if mode == "embed" else MODEL
    report = await run_sdk(proxied, mode, "openai.mjs", model)  # the account has nothing
    assert report["error"]["statusCode"] == 402
    assert upstream.requests == []
    assert await settled(proxied) == (0, 0)


async def test_embed_shows_the_embedding_and_its_usage_and_is_billed_on_it(
    proxied: Ledger, upstream: Upstream
) -> None:
    await proxied.grant("user_1", FUNDS)
    report = await run_sdk(proxied, "embed", "openai.mjs", EMBEDDER)
    assert report["error"] is None
    assert report["embedding"] == list(VECTOR)
    assert report["usage"] == {"tokens": 1_000}
    # 1,000 input tokens × $0.02/M = $0.00002 = 20 minor units.
    assert await settled(proxied) == (FUNDS - 20, 0)
    ((_headers, sent),) = upstream.requests
    assert (sent["input"], sent["encoding_format"]) == (["Hi"], "float")
