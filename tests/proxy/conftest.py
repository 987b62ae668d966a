"""The proxy's world: a local upstream speaking OpenAI's wire format
(:mod:`tests.proxy.upstream`), a ledger proxying to it, and the official ``openai`` SDK
pointed at creditsd in-process or over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI

from creditsd.api.app import create_app
from creditsd.inprocess import Ledger
from creditsd.kit import jsonio
from creditsd.ledger.models import Transfer
from tests.conftest import LedgerFactory, create_key, serve_app
from tests.proxy.upstream import UPSTREAM_KEY, Upstream

MODEL = "openai/gpt-4o-mini"  # $0.15 / $0.60 per million tokens, 100 credits a dollar
CREDITSD = "http://creditsd.test"
FULL_PRICE = 450  # the upstream's usage: 1,000 × 0.15 + 500 × 0.6


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    running = Upstream()
    yield running
    running.close()


@pytest.fixture
async def proxied(make_ledger: LedgerFactory, upstream: Upstream) -> Ledger:
    return await make_ledger(proxy={"base_url": upstream.url, "api_key": UPSTREAM_KEY})


@pytest.fixture
async def app(proxied: Ledger) -> AsyncIterator[FastAPI]:
    """creditsd's app over the proxied ledger; its outbound connections closed after."""
    served = create_app(proxied, sweep=False)
    yield served
    await served.state.proxy.aclose()
    await served.state.stripe.close()


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process HTTP client of the app, no key of its own."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=CREDITSD) as c:
        yield c


@pytest.fixture
async def app_key(proxied: Ledger) -> str:
    """The app's key (named ``web``), which mints proxy keys and manages members."""
    return await create_key(proxied, "app", "web")


def sdk(http: httpx.AsyncClient, api_key: str, **headers: str) -> openai.AsyncOpenAI:
    """The official SDK with ``api_key``, pointed at creditsd through ``http``."""
    return openai.AsyncOpenAI(
        api_key=api_key,
        base_url=f"{CREDITSD}/openai/v1",
        http_client=http,  # type: ignore[arg-type]  # the SDK types its own httpx build
        default_headers=headers,
        max_retries=0,
    )


@pytest.fixture
async def client(proxied: Ledger, http: httpx.AsyncClient) -> openai.AsyncOpenAI:
    """The official SDK, pointed at creditsd with an app key, paying as user_1."""
    return sdk(http, await create_key(proxied, "app"), **{"X-Creditsd-Account": "user_1"})


async def post(
    ledger: Ledger, path: str, body: dict[str, Any] | bytes, account: str = "user_1"
) -> httpx.Response:
    """One call to a proxy route (``/chat/completions``…) as raw HTTP, paid by ``account``;
    ``body`` as JSON, or as the bytes given."""
    app = create_app(ledger, sweep=False)
    headers = {
        "Authorization": f"Bearer {await create_key(ledger, 'app')}",
        "X-Creditsd-Account": account,
        "Content-Type": "application/json",
    }
    content = body if isinstance(body, bytes) else jsonio.render(body)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        answer = await http.post(f"http://t/openai/v1{path}", content=content, headers=headers)
    await app.state.proxy.aclose()
    await app.state.stripe.close()
    return answer


@asynccontextmanager
async def served_sdk(ledger: Ledger, account: str = "user_1") -> AsyncIterator[openai.AsyncOpenAI]:
    """The official SDK with an app key paying as ``account``, against creditsd served
    over real sockets (so that a client can hang up, or stop reading, mid-stream)."""
    key = await create_key(ledger, "app")
    async with (
        serve_app(ledger) as base,
        openai.AsyncOpenAI(
            api_key=key,
            base_url=f"{base}/openai/v1",
            default_headers={"X-Creditsd-Account": account},
            max_retries=0,
        ) as client,
    ):
        yield client


async def billed_as_hung_up(
    ledger: Ledger, upstream: Upstream, upstream_finishes: bool, delivered: int
) -> None:
    """A client hung up mid-stream: the upstream was read to its end and its usage billed
    (``upstream_finishes``), or hung up on and ``delivered`` minor units billed."""
    balance, held = await settled(ledger)
    (record,) = upstream.streams
    assert await asyncio.to_thread(record.ended.wait, 10)
    assert held == 0
    assert record.finished is upstream_finishes
    (capture,) = await captures(ledger)
    assert capture.metadata is not None
    assert capture.metadata["proxy_outcome"] == "client_disconnected"
    billed = (FULL_PRICE, "usage") if upstream_finishes else (delivered, "delivered")
    spent = 10 * ledger.money.unit - balance
    assert (spent, capture.metadata["proxy_billed_on"]) == billed


async def captures(ledger: Ledger, account: str = "user_1") -> list[Transfer]:
    """The account's captures, newest first."""
    history = await ledger.transactions(account)
    return [transfer for transfer in history.items if transfer.kind == "capture"]


async def settled(ledger: Ledger, account: str = "user_1") -> tuple[int, int]:
    """The account's balance and what it holds, once no call is left to settle."""
    for _ in range(200):
        found = await ledger.get_account(account)
        if found.held == 0:
            return found.balance, found.held
        await asyncio.sleep(0.02)
    return found.balance, found.held
