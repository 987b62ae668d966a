"""The fast lane answers the proxy's model calls exactly as FastAPI's routes do: the same
requests, good and bad, sent both ways give the same answers and the same bills."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from creditsd.api.app import create_app
from creditsd.inprocess import Ledger
from tests.conftest import create_key
from tests.proxy.conftest import CREDITSD, captures
from tests.proxy.upstream import Upstream

JSON = {"Content-Type": "application/json"}
APP = {"Authorization": "Bearer APP", **JSON}
RICH = {**APP, "X-Creditsd-Account": "rich"}
CHAT = b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}'
RESPONSE = b'{"model": "openai/gpt-4o-mini", "input": "Hi", "max_output_tokens": 100}'

# (path, headers, body); "APP", "READ" and "PROXY" in a header stand for keys of that kind,
# "THIN" for an account of its own each way with enough for a clamped call only.
REQUESTS: list[tuple[str, dict[str, str], bytes]] = [
    ("/chat/completions", RICH, CHAT),
    ("/responses", RICH, RESPONSE),
    ("/chat/completions", RICH, CHAT[:-1] + b', "stream": true}'),
    ("/responses", RICH, RESPONSE[:-1] + b', "stream": true}'),
    ("/chat/completions", {**RICH, "X-Creditsd-Clamp": "true"}, CHAT),
    ("/chat/completions", {**RICH, "X-Creditsd-Clamp": "maybe"}, CHAT),
    ("/chat/completions", {**RICH, "X-Creditsd-Account": "x" * 300}, CHAT),
    ("/chat/completions", {**APP, "X-Creditsd-Account": "x" * 300, "X-Creditsd-Clamp": "?"}, CHAT),
    ("/responses", {**APP, "X-Creditsd-Account": "poor", "X-Creditsd-Clamp": "no"}, RESPONSE),
    ("/chat/completions", {**APP, "X-Creditsd-Account": "poor"}, CHAT),
    ("/chat/completions", {**RICH, "X-Creditsd-Member": "ada"}, CHAT),
    ("/chat/completions", {**RICH, "X-Creditsd-Member": "ada lovelace"}, CHAT),
    ("/chat/completions", {**APP, "X-Creditsd-Account": "x" * 300, "X-Creditsd-Member": ""}, CHAT),
    ("/responses", {**JSON, "Authorization": "Bearer PROXY", "X-Creditsd-Member": "ada"}, RESPONSE),
    ("/chat/completions", {**APP, "X-Creditsd-Account": "THIN", "X-Creditsd-Clamp": "1"}, CHAT),
    ("/chat/completions", APP, CHAT),
    ("/chat/completions", {**JSON, "X-Creditsd-Account": "rich"}, CHAT),
    ("/responses", {**RICH, "Authorization": "Basic APP"}, RESPONSE),
    ("/chat/completions", {**RICH, "Authorization": "Bearer cdk_unknown"}, CHAT),
    ("/chat/completions", {**RICH, "Authorization": "Bearer READ"}, CHAT),
    ("/chat/completions", {**RICH, "Authorization": "Bearer PROXY"}, CHAT),
    ("/responses", {**JSON, "Authorization": "Bearer PROXY"}, RESPONSE),
    ("/chat/completions", RICH, b"not json"),
    ("/chat/completions", RICH, b"[]"),
    ("/chat/completions", RICH, b'{"model": "nobody/knows", "messages": []}'),
    ("/chat/completions", RICH, CHAT[:-1] + b', "max_tokens": -1}'),
    ("/chat/completions", RICH, CHAT[:-1] + b', "max_tokens": NaN}'),
    ("/responses", RICH, RESPONSE[:-1] + b', "background": true}'),
    ("/chat/completions", RICH, b'{"model": "openai/gpt-4o-mini", "messages": "\xff"}'),
    ("/chat/completions", {**RICH, "Content-Length": str(3 << 20)}, CHAT),
]


@pytest.fixture
async def pair(
    proxied: Ledger,
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Clients of the app with its fast lane and of the app without it, on one ledger."""
    apps = [create_app(proxied, sweep=False, fast_lane=lane) for lane in (True, False)]
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=CREDITSD) for app in apps
    ]
    yield clients[0], clients[1]
    for client, app in zip(clients, apps, strict=True):
        await client.aclose()
        await app.state.proxy.aclose()
        await app.state.stripe.close()


def _comparable(answer: httpx.Response) -> tuple[int, dict[str, str | None], Any]:
    """What a caller sees of an answer, without the time creditsd took."""
    headers = {
        name: answer.headers.get(name)
        for name in ("content-type", "www-authenticate", "retry-after", "x-creditsd-max-tokens")
    }
    return answer.status_code, headers, answer.content


async def test_every_call_gets_the_same_answer_and_bill_from_both(
    proxied: Ledger, upstream: Upstream, pair: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    app_key = await create_key(proxied, "app")
    secrets = {"APP": app_key, "READ": await create_key(proxied, "read")}
    async with httpx.AsyncClient(base_url=CREDITSD, transport=pair[1]._transport) as admin:
        minted = await admin.post(
            "/v1/proxy-keys",
            json={"account_id": "rich"},
            headers={"Authorization": f"Bearer {app_key}"},
        )
    secrets["PROXY"] = minted.json()["secret"]
    await proxied.grant("rich", 1_000 * proxied.money.unit)
    await proxied.grant("poor", 5)  # enough for a clamped call only
    refused = 0
    for path, headers, content in REQUESTS:
        sent = {
            name: " ".join(secrets.get(word, word) for word in value.split(" "))
            for name, value in headers.items()
        }
        answers = [
            await client.post(f"/openai/v1{path}", headers=sent, content=content) for client in pair
        ]
        assert _comparable(answers[0]) == _comparable(answers[1]), (path, headers, content)
        refused += answers[0].status_code != 200
    assert 0 < refused < len(REQUESTS)
    billed = [capture.amount for capture in await captures(proxied, "rich")]
    assert len(billed) % 2 == 0 and billed[::2] == billed[1::2]  # each call twice, alike
    assert len(upstream.requests) == len(billed)  # every call forwarded was billed
