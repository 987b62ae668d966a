"""Streamed chat completions: relayed chunk by chunk, the usage always asked of the
upstream and kept from clients that did not ask, and every way a stream can end settled
by its rule with no hold left open."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from creditsd.inprocess import Ledger
from tests.conftest import Clock, LedgerFactory, create_key, make_settings, serve_app
from tests.proxy.conftest import FULL_PRICE, MODEL, captures, post, settled
from tests.proxy.upstream import UPSTREAM_KEY, Behaviour, Upstream
from tests.test_processes import serve

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]


# The offline estimate of a streamed call of HI with max_tokens 1,000: its body,
# '{"model":"openai/gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hi"}],
# "max_tokens":1000}', is 106 bytes, over 4 a token 27 tokens. A minor unit is 10⁻⁴ credit,
# 10⁻⁶ USD: an input token costs 0.15 of one, an output token 0.6.
async def test_a_stream_with_usage_asked_gets_the_usage_chunk_and_is_billed_on_it(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=HI,
        max_tokens=1_000,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello! How can I help?"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 500
    assert await settled(proxied) == (10 * proxied.money.unit - FULL_PRICE, 0)
    (capture,) = await captures(proxied)
    assert capture.metadata is not None
    assert (capture.metadata["proxy_outcome"], capture.metadata["proxy_billed_on"]) == (
        "completed",
        "usage",
    )


async def test_a_stream_without_usage_asked_is_billed_on_it_but_never_sees_it(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=HI,
        max_tokens=1_000,
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    assert all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)  # the usage-only chunk was taken out
    (_headers, sent) = upstream.requests[0]
    assert sent["stream_options"] == {"include_usage": True}
    assert await settled(proxied) == (10 * proxied.money.unit - FULL_PRICE, 0)


async def test_the_stream_is_relayed_as_the_upstream_wrote_it(
    proxied: Ledger, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    body = {"model": MODEL, "messages": HI, "stream": True, "max_tokens": 1_000}
    answer = await post(proxied, "/chat/completions", body)
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert float(answer.headers["x-creditsd-overhead-ms"]) > 0
    events = answer.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert UPSTREAM_KEY not in answer.text and UPSTREAM_KEY not in str(answer.headers)
    first = json.loads(events[0].removeprefix("data: "))
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}


async def test_an_upstream_refusal_before_any_output_charges_nothing(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    upstream.behaviour = "refuse"
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(
            model=MODEL,
            messages=HI,
            max_tokens=1_000,
            stream=True,
        )
    assert refused.value.response.headers["retry-after"] == "7"
    assert await settled(proxied) == (10 * proxied.money.unit, 0)
    assert await captures(proxied) == []


@pytest.mark.parametrize("behaviour", ["fail_midstream", "drop_midstream"])
async def test_an_upstream_failure_mid_stream_bills_what_was_delivered(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream, behaviour: Behaviour
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    upstream.behaviour = behaviour
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=HI,
        max_tokens=1_000,
        stream=True,
    )
    pieces: list[str] = []

    async def read() -> None:
        async for chunk in stream:
            pieces.append(chunk.choices[0].delta.content or "" if chunk.choices else "")

    with pytest.raises(openai.APIError):
        await read()
    assert "".join(pieces) == "Hello!"  # three pieces, then the failure
    # Delivered: the input's estimate (27 tokens × 0.15 = 4.05) and "Hello!" (6 characters,
    # 2 tokens × 0.6 = 1.2): 5.25 minor units, rounded to 5.
    assert await settled(proxied) == (10 * proxied.money.unit - 5, 0)
    (capture,) = await captures(proxied)
    assert capture.metadata is not None
    assert (capture.metadata["proxy_outcome"], capture.metadata["proxy_billed_on"]) == (
        "upstream_error",
        "delivered",
    )


@pytest.mark.parametrize(("rule", "price"), [("free", 0), ("bill", 150)])
async def test_an_empty_completion_follows_its_rule(
    make_ledger: LedgerFactory, upstream: Upstream, rule: str, price: int
) -> None:
    ledger = await make_ledger(
        proxy={"base_url": upstream.url, "api_key": UPSTREAM_KEY, "empty_completion": rule}
    )
    await ledger.grant("user_1", 10 * ledger.money.unit)
    upstream.behaviour = "empty"
    for stream in (False, True):
        body = {"model": MODEL, "messages": HI, "stream": stream, "max_tokens": 10}
        answer = await post(ledger, "/chat/completions", body)
        assert answer.status_code == 200
    # 1,000 prompt tokens × 0.15 = 150 minor units a call when billed.
    assert await settled(ledger) == (10 * ledger.money.unit - 2 * price, 0)


@pytest.mark.parametrize(("rule", "upstream_finishes"), [("finish", True), ("delivered", False)])
async def test_a_client_that_hangs_up_mid_stream_is_billed_by_the_rule(
    make_ledger: LedgerFactory, upstream: Upstream, rule: str, upstream_finishes: bool
) -> None:
    ledger = await make_ledger(
        proxy={"base_url": upstream.url, "api_key": UPSTREAM_KEY, "on_client_disconnect": rule}
    )
    await ledger.grant("user_1", 10 * ledger.money.unit)
    upstream.pause = 0.1
    async with serve_app(ledger) as base:
        client = openai.AsyncOpenAI(
            api_key=await create_key(ledger, "app"),
            base_url=f"{base}/openai/v1",
            default_headers={"X-Creditsd-Account": "user_1"},
            max_retries=0,
        )
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=HI,
            max_tokens=1_000,
            stream=True,
        )
        text = ""
        async for chunk in stream:
            text += chunk.choices[0].delta.content or ""
            if text == "Hello":
                break
        await stream.close()  # the client hangs up after two pieces
        await client.close()
        balance, held = await settled(ledger)
    (record,) = upstream.streams
    assert await asyncio.to_thread(record.ended.wait, 10)
    assert held == 0
    assert record.finished is upstream_finishes
    assert record.abandoned is not upstream_finishes  # the upstream was hung up on
    (capture,) = await captures(ledger)
    assert capture.metadata is not None
    assert capture.metadata["proxy_outcome"] == "client_disconnected"
    if upstream_finishes:
        assert (balance, capture.metadata["proxy_billed_on"]) == (
            10 * ledger.money.unit - FULL_PRICE,
            "usage",
        )
    else:
        # The input's 27 tokens (4.05) and "Hello" (5 characters, 2 tokens: 1.2): 5.
        assert (balance, capture.metadata["proxy_billed_on"]) == (
            10 * ledger.money.unit - 5,
            "delivered",
        )


async def test_fifty_streams_on_a_balance_for_twenty_reach_the_upstream_twenty_times(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    # Each call is held for 27 input tokens × 0.15 + 1,000 output tokens × 0.6 = 604.05,
    # rounded to 604 minor units; the balance covers twenty and a half.
    await proxied.grant("user_1", 20 * 604 + 300)
    upstream.pause = 0.1  # every admitted stream is still open when the last call comes

    async def call() -> int:
        try:
            stream = await client.chat.completions.create(
                model=MODEL,
                messages=HI,
                max_tokens=1_000,
                stream=True,
            )
        except openai.APIStatusError as refused:
            return refused.status_code
        async for _chunk in stream:
            pass
        return 200

    statuses = await asyncio.gather(*(call() for _ in range(50)))
    assert set(statuses) == {200, 402}
    served = [status == 200 for status in statuses]
    assert sum(served) == len(upstream.requests) <= 20
    assert sum(served) >= 10  # the balance was really spent on calls, not all refused
    balance, held = await settled(proxied)
    assert (balance, held) == (20 * 604 + 300 - sum(served) * FULL_PRICE, 0)


@pytest.mark.slow
async def test_a_process_killed_mid_stream_leaves_a_hold_that_expires_and_is_released(
    database_url: str, tmp_path: Path, upstream: Upstream
) -> None:
    config = tmp_path / "creditsd.toml"
    config.write_text(
        f'[proxy]\nbase_url = "{upstream.url}"\napi_key = "{UPSTREAM_KEY}"\nhold_seconds = 30\n'
    )
    async with await Ledger.connect(make_settings(database_url)) as ledger:
        await ledger.grant("user_1", 10 * ledger.money.unit)
        secret = await create_key(ledger, "app")
    upstream.pause = 0.5
    with serve(database_url, tmp_path, config=config) as base:
        headers = {"Authorization": f"Bearer {secret}", "X-Creditsd-Account": "user_1"}
        body = {"model": MODEL, "messages": HI, "stream": True, "max_tokens": 1_000}
        async with (
            httpx.AsyncClient(base_url=base, headers=headers) as http,
            http.stream("POST", "/openai/v1/chat/completions", json=body) as answer,
        ):
            async for _line in answer.aiter_lines():
                break  # the stream is under way
            serve.processes[base].kill()  # type: ignore[attr-defined]
    clock = Clock()
    async with await Ledger.connect(make_settings(database_url), clock=clock) as ledger:
        account = await ledger.get_account("user_1")
        assert (account.balance, account.held) == (10 * ledger.money.unit, 604)
        clock.advance(31)
        assert (await ledger.get_account("user_1")).held == 0  # it stops counting at once
        assert await ledger.expire_holds() == 1  # and the sweeper releases it
        account = await ledger.get_account("user_1")
        assert (account.balance, account.held) == (10 * ledger.money.unit, 0)
