"""The proxy's world: a local upstream speaking OpenAI's wire format, a ledger proxying to
it, and the official ``openai`` SDK pointed at creditsd in-process."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI

from creditsd.api.app import create_app
from creditsd.inprocess import Ledger
from tests.conftest import LedgerFactory, create_key

UPSTREAM_KEY = "sk-or-upstream-secret-0123456789"
MODEL = "openai/gpt-4o-mini"  # $0.15 / $0.60 per million tokens, 100 credits a dollar
USAGE = {
    "prompt_tokens": 1_000,
    "completion_tokens": 500,
    "total_tokens": 1_500,
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0},
}
CREDITSD = "http://creditsd.test"


class Upstream:
    """An OpenAI-compatible upstream: answers each chat completion with ``usage`` once its
    ``gate`` is open (it is, unless a test closes it to keep calls in flight)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.usage: dict[str, Any] = USAGE
        self.gate = threading.Event()
        self.gate.set()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                sent = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                upstream.requests.append((dict(self.headers.items()), sent))
                upstream.gate.wait(timeout=30)
                answer = json.dumps(
                    {
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "created": 1764547200,
                        "model": sent["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": "Hello!"},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": upstream.usage,
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.gate.set()
        self._server.shutdown()
        self._server.server_close()


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
