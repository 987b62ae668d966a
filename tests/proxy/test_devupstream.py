"""``creditsd dev-upstream``, the local stand-in provider the README's proxy section uses:
run as its own process, with no key anywhere, the official ``openai`` SDK through the
proxy in front of it gets its echo, whole and streamed, and the account pays its usage."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest
from fastapi import FastAPI

from creditsd.api.app import create_app
from creditsd.inprocess import Ledger
from tests.conftest import LedgerFactory, create_key
from tests.proxy.conftest import MODEL, sdk, settled

ASKED = "x" * 4_000  # 1,000 prompt tokens at four characters a token
# "You said: " and the 4,000 x: 4,010 characters, 1,003 completion tokens; at $0.15 and
# $0.60 per million tokens, 100 credits a dollar: 150 + 601.8 minor units, 752 rounded.
USAGE = (1_000, 1_003)
PRICE = 752


@pytest.fixture
def dev_upstream() -> Iterator[str]:
    """``creditsd dev-upstream`` on a free port; its base URL, as it prints it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "creditsd", "dev-upstream", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        yield first.split(" on ", 1)[1].split(";", 1)[0]
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
async def app(make_ledger: LedgerFactory, dev_upstream: str) -> AsyncIterator[FastAPI]:
    """creditsd proxying to the stand-in, with no ``[proxy] api_key``."""
    ledger = await make_ledger(proxy={"base_url": dev_upstream})
    served = create_app(ledger, sweep=False)
    served.state.ledger_under_test = ledger
    yield served
    await served.state.proxy.aclose()
    await served.state.stripe.close()


async def _client(app: FastAPI, http: httpx.AsyncClient) -> tuple[Ledger, openai.AsyncOpenAI]:
    ledger: Ledger = app.state.ledger_under_test
    await ledger.grant("user_1", 10 * ledger.money.unit)
    return ledger, sdk(http, await create_key(ledger, "app"), **{"X-Creditsd-Account": "user_1"})


async def test_a_whole_completion_echoes_and_is_billed_on_its_usage(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    ledger, client = await _client(app, http)
    answer = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": ASKED}], max_tokens=2_000
    )
    assert answer.choices[0].message.content == f"You said: {ASKED}"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == USAGE
    account = await ledger.get_account("user_1")
    assert (account.balance, account.held) == (10 * ledger.money.unit - PRICE, 0)


async def test_a_streamed_completion_ends_with_its_usage_and_is_billed_on_it(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    ledger, client = await _client(app, http)
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": ASKED}],
        max_tokens=2_000,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"You said: {ASKED}"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == USAGE
    assert await settled(ledger) == (10 * ledger.money.unit - PRICE, 0)


async def test_a_whole_response_echoes_and_is_billed_on_its_usage(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    ledger, client = await _client(app, http)
    answer = await client.responses.create(model=MODEL, input=ASKED, max_output_tokens=2_000)
    assert answer.output_text == f"You said: {ASKED}"
    assert answer.usage is not None
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == USAGE
    account = await ledger.get_account("user_1")
    assert (account.balance, account.held) == (10 * ledger.money.unit - PRICE, 0)


async def test_a_streamed_response_ends_with_its_usage_and_is_billed_on_it(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    ledger, client = await _client(app, http)
    stream = await client.responses.create(
        model=MODEL, input=ASKED, max_output_tokens=2_000, stream=True
    )
    events = [event async for event in stream]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == f"You said: {ASKED}"
    last = events[-1]
    assert last.type == "response.completed" and last.response.usage is not None
    assert (last.response.usage.input_tokens, last.response.usage.output_tokens) == USAGE
    assert last.response.output_text == f"You said: {ASKED}"
    assert await settled(ledger) == (10 * ledger.money.unit - PRICE, 0)
