"""Streamed chat completions: relayed chunk by chunk, the usage always asked of the
upstream and kept from clients that did not ask, and every way a stream can end settled
by its rule with no hold left open."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.inprocess import Ledger
from creditsd.kit import db
from creditsd.tables import holds
from tests.conftest import Clock, LedgerFactory, create_key, make_settings, serve_app
from tests.proxy.conftest import (
    FULL_PRICE,
    MODEL,
    billed_as_hung_up,
    captures,
    post,
    served_sdk,
    settled,
)
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
    async with served_sdk(ledger) as client:
        stream = await client.chat.completions.create(
            model=MODEL, messages=HI, max_tokens=1_000, stream=True
        )
        text = ""
        async for chunk in stream:
            text += chunk.choices[0].delta.content or ""
            if text == "Hello":
                break
        await stream.close()  # the client hangs up after two pieces
    (record,) = upstream.streams
    # The input's 27 tokens (4.05) and "Hello" (5 characters, 2 tokens: 1.2): 5.
    await billed_as_hung_up(ledger, upstream, upstream_finishes, delivered=5)
    assert record.abandoned is not upstream_finishes  # the upstream was hung up on


EIGHT_MIB = ["z" * 65_536] * 128  # an answer's pieces: 8 MiB of text, no "z" elsewhere


@asynccontextmanager
async def read_slowly(
    ledger: Ledger, base: str, max_tokens: int = 1_000
) -> AsyncIterator[AsyncIterator[bytes]]:
    """A streamed call over a real socket that its client reads only as the test iterates
    on the answer's bytes (a client that stops reading keeps a small receive window, so
    the server soon has to wait for it)."""
    headers = {
        "Authorization": f"Bearer {await create_key(ledger, 'app')}",
        "X-Creditsd-Account": "user_1",
    }
    body = {"model": MODEL, "messages": HI, "stream": True, "max_tokens": max_tokens}
    async with (
        httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http,
        http.stream("POST", "/openai/v1/chat/completions", json=body) as answer,
    ):
        assert answer.status_code == 200
        yield answer.aiter_raw()


async def test_a_stream_is_settled_when_the_upstream_ends_however_slowly_its_client_reads(
    make_ledger: LedgerFactory, upstream: Upstream, clock: Clock
) -> None:
    ledger = await make_ledger(proxy={"base_url": upstream.url, "api_key": UPSTREAM_KEY})
    await ledger.grant("user_1", 10 * ledger.money.unit)
    upstream.pieces = EIGHT_MIB
    async with serve_app(ledger) as base, read_slowly(ledger, base) as chunks:
        received = [await anext(chunks)]  # the stream is under way; its client stops reading
        # The upstream's answer comes in whole and its usage is billed all the same.
        assert await settled(ledger) == (10 * ledger.money.unit - FULL_PRICE, 0)
        (capture,) = await captures(ledger)
        assert capture.metadata is not None
        assert (capture.metadata["proxy_outcome"], capture.metadata["proxy_billed_on"]) == (
            "completed",
            "usage",
        )
        clock.advance(ledger.settings.proxy.hold_seconds + 1)  # longer than a hold lasts
        assert await ledger.expire_holds() == 0
        received += [chunk async for chunk in chunks]  # the client reads on: it gets it all
    answer = b"".join(received)
    assert answer.count(b"z") == 8 << 20
    assert answer.endswith(b"data: [DONE]\n\n")
    assert (await ledger.get_account("user_1")).balance == 10 * ledger.money.unit - FULL_PRICE


@pytest.mark.parametrize(("rule", "upstream_finishes"), [("finish", True), ("delivered", False)])
async def test_a_client_that_will_not_read_is_cut_and_billed_by_the_disconnect_rule(
    make_ledger: LedgerFactory,
    upstream: Upstream,
    caplog: pytest.LogCaptureFixture,
    rule: str,
    upstream_finishes: bool,
) -> None:
    caplog.set_level("WARNING", logger="creditsd.proxy")
    ledger = await make_ledger(
        proxy={
            "base_url": upstream.url,
            "api_key": UPSTREAM_KEY,
            "on_client_disconnect": rule,
            "send_timeout_seconds": 1,
        }
    )
    await ledger.grant("user_1", 300 * ledger.money.unit)
    upstream.pieces = EIGHT_MIB * 2
    upstream.stall_after = 192  # 12 MiB, more than the sockets between take, then a pause
    async with serve_app(ledger) as base, read_slowly(ledger, base, 4_000_000) as chunks:
        received = [await anext(chunks)]  # then nothing: within a second the client is cut
        async with asyncio.timeout(10):
            while "took nothing for 1 s: cut" not in caplog.text:  # noqa: ASYNC110  # the log is all there is
                await asyncio.sleep(0.05)
        upstream.resume.set()
        balance, held = await settled(ledger)
        with pytest.raises(httpx.RemoteProtocolError):  # the stream ends short of its end
            received += [chunk async for chunk in chunks]
    (record,) = upstream.streams
    assert await asyncio.to_thread(record.ended.wait, 10)
    assert held == 0
    assert (record.finished, record.abandoned) == (upstream_finishes, not upstream_finishes)
    assert not b"".join(received).endswith(b"data: [DONE]\n\n")
    (capture,) = await captures(ledger)
    assert capture.metadata is not None
    assert capture.metadata["proxy_outcome"] == "client_disconnected"
    if upstream_finishes:
        assert capture.metadata["proxy_billed_on"] == "usage"
        assert balance == 300 * ledger.money.unit - FULL_PRICE
    else:  # what reached the client: some of the answer, far from all of it
        assert capture.metadata["proxy_billed_on"] == "delivered"
        assert 0 < capture.amount < (16 << 20) // 4 * 6 // 10


async def test_a_stream_keeps_its_hold_while_the_upstream_pauses_longer_than_a_hold_lasts(
    make_ledger: LedgerFactory, upstream: Upstream, clock: Clock
) -> None:
    ledger = await make_ledger(
        proxy={"base_url": upstream.url, "api_key": UPSTREAM_KEY, "hold_seconds": 30}
    )
    await ledger.grant("user_1", 10 * ledger.money.unit)
    upstream.stall_after = 1  # "Hel", then the upstream thinks for a long while
    body = {"model": MODEL, "messages": HI, "stream": True, "max_tokens": 1_000}
    call = asyncio.create_task(post(ledger, "/chat/completions", body))
    first = await hold_expiry(ledger, None)
    clock.advance(20)
    extended = await hold_expiry(ledger, first)  # the hold is extended on a timer (15 s)
    assert extended == clock.now + timedelta(seconds=30)
    clock.advance(20)  # past the hold's first expiry, well within its extended one
    upstream.resume.set()
    assert (await call).text.endswith("data: [DONE]\n\n")
    assert await settled(ledger) == (10 * ledger.money.unit - FULL_PRICE, 0)
    (capture,) = await captures(ledger)
    assert capture.metadata is not None
    assert capture.metadata["proxy_outcome"] == "completed"


async def hold_expiry(ledger: Ledger, other_than: datetime | None) -> datetime:
    """When the account's one open hold expires, once that is not ``other_than``."""
    async with asyncio.timeout(20):
        while True:
            hold_id = await db.run(ledger.engine, _open_hold_id, readonly=True)
            if hold_id is not None:
                expires_at = (await ledger.get_hold(hold_id)).expires_at
                if expires_at != other_than:
                    return expires_at
            await asyncio.sleep(0.1)


async def _open_hold_id(conn: AsyncConnection) -> str | None:
    query = select(holds.c.id).where(holds.c.status == "open")
    return (await conn.execute(query)).scalar()


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
