"""The OpenAI-compatible proxy, first step: non-streamed chat completions driven by the
official ``openai`` SDK against a local upstream speaking OpenAI's wire format; a hold for
the estimate before forwarding, the real usage captured after, 402 before any upstream
byte when the estimate does not fit."""

from __future__ import annotations

import httpx
import openai
import pytest

from creditsd.api.app import create_app
from creditsd.inprocess import Ledger
from tests.conftest import create_key
from tests.proxy.conftest import MODEL, UPSTREAM_KEY, Upstream


async def test_a_chat_completion_is_billed_on_its_reported_usage(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    answer = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=1_000
    )
    assert answer.choices[0].message.content == "Hello!"
    # 1,000 × $0.15/M + 500 × $0.60/M = $0.00045 = 0.045 credits = 450 minor units.
    account = await proxied.get_account("user_1")
    assert (account.balance, account.held) == (10 * proxied.money.unit - 450, 0)
    (headers, sent) = upstream.requests[0]
    assert headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"  # ours never reaches a client
    assert sent["messages"] == [{"role": "user", "content": "Hi"}]


async def test_a_call_the_balance_cannot_cover_is_402_before_any_upstream_byte(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 1)  # one minor unit
    with pytest.raises(openai.APIStatusError) as refused:
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=1_000
        )
    assert refused.value.status_code == 402
    assert upstream.requests == []
    assert (await proxied.get_account("user_1")).held == 0


async def test_models_lists_the_catalogs_priced_models(client: openai.AsyncOpenAI) -> None:
    listed = [model.id async for model in client.models.list()]
    assert MODEL in listed


async def test_a_model_not_in_the_catalog_never_reaches_the_upstream(
    client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(
            model="acme/unpriced", messages=[{"role": "user", "content": "Hi"}]
        )
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("raw", "status"),
    [(b"", 400), (b"not json", 400), (b"[]", 400), (b'{"model": "x"' + b" " * 2_000_000, 413)],
)
async def test_a_bad_body_is_a_4xx_and_reaches_no_upstream(
    proxied: Ledger, upstream: Upstream, raw: bytes, status: int
) -> None:
    app = create_app(proxied, sweep=False)
    headers = {
        "Authorization": f"Bearer {await create_key(proxied, 'app')}",
        "X-Creditsd-Account": "user_1",
        "Content-Type": "application/json",
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        answer = await http.post(
            "http://t/openai/v1/chat/completions", content=raw, headers=headers
        )
    await app.state.proxy.aclose()
    await app.state.stripe.close()
    assert answer.status_code == status, answer.text
    assert "message" in answer.json()["error"]
    assert upstream.requests == []
