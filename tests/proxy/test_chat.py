"""Chat completions through the proxy, driven by the official ``openai`` SDK against a
local upstream speaking OpenAI's wire format: a hold for the estimate before forwarding,
the real usage captured after, 402 before any upstream byte when the estimate does not fit
(unless the call clamps), and an upstream that fails costs nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from openai.types.shared_params import FunctionDefinition

from creditsd.api.app import create_app
from creditsd.inprocess import Ledger
from tests.conftest import LedgerFactory
from tests.proxy.conftest import MODEL, post, settled
from tests.proxy.upstream import UPSTREAM_KEY, Upstream

# A call's input is estimated offline at its body's bytes over 4 (see test_streams).
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]


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


@pytest.mark.parametrize("overrun", ["cap", "refuse"])
async def test_a_call_dearer_than_the_balance_is_charged_what_it_can_pay(
    make_ledger: LedgerFactory, upstream: Upstream, overrun: str
) -> None:
    ledger = await make_ledger(
        proxy={"base_url": upstream.url, "api_key": UPSTREAM_KEY}, holds={"overrun": overrun}
    )
    await ledger.grant("user_1", 100)  # 0.01 credits: the estimate fits, the usage does not
    body = {"model": MODEL, "messages": HI, "max_tokens": 100}
    assert (await post(ledger, "/chat/completions", body)).status_code == 200
    # The call was answered already: whatever [holds] overrun says, nobody is left to
    # hear a 402, so the capture takes what the account can pay; the rest is uncollected.
    assert await settled(ledger) == (0, 0)
    (capture, *_) = (await ledger.transactions("user_1")).items
    settlement = (capture.pricing or {})["settlement"]
    assert (capture.amount, settlement["outcome"]) == (100, "over_hold_capped")
    assert settlement["uncollected"] == ledger.money.to_decimal(450 - 100)


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
    answer = await post(proxied, "/chat/completions", raw)
    assert answer.status_code == status, answer.text
    assert "message" in answer.json()["error"]
    assert upstream.requests == []


async def test_a_cap_the_balance_cannot_cover_is_402_unless_the_call_asks_to_clamp(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    # The body is 92 bytes, 23 input tokens (3.45 minor units); with 1,000 output tokens
    # (600) the hold is 603. 302 covers 498 output tokens (3.45 + 298.8 = 302.25, rounded
    # half up to 302), not 499.
    await proxied.grant("user_1", 302)
    upstream.usage = {"prompt_tokens": 12, "completion_tokens": 400, "total_tokens": 412}
    with pytest.raises(openai.APIStatusError) as refused:
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=1_000
        )
    assert refused.value.status_code == 402
    assert upstream.requests == []
    answer = await client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=1_000,
        extra_headers={"X-Creditsd-Clamp": "true"},
    )
    assert answer.headers["X-Creditsd-Max-Tokens"] == "498"
    (_headers, sent) = upstream.requests[0]
    assert sent["max_tokens"] == 498
    # Billed on the usage: 12 prompt tokens (1.8) and 400 output tokens (240), 242.
    account = await proxied.get_account("user_1")
    assert (account.balance, account.held) == (302 - 242, 0)


async def test_the_deployment_can_clamp_every_call(
    make_ledger: LedgerFactory, upstream: Upstream
) -> None:
    ledger = await make_ledger(
        proxy={"base_url": upstream.url, "api_key": UPSTREAM_KEY, "clamp_max_tokens": True}
    )
    await ledger.grant("user_1", 302)
    answer = await post(
        ledger, "/chat/completions", {"model": MODEL, "messages": HI, "max_completion_tokens": 999}
    )
    assert answer.status_code == 200, answer.text
    # 102 bytes, 26 input tokens (3.9): 497 output tokens make 302.1, 498 would make 302.7.
    assert answer.headers["X-Creditsd-Max-Tokens"] == "497"
    assert upstream.requests[0][1]["max_completion_tokens"] == 497
    # Nothing affordable at all stays a 402 in OpenAI's shape, with what it lacks.
    await ledger.grant("user_2", 1)
    refused = await post(
        ledger, "/chat/completions", {"model": MODEL, "messages": HI}, account="user_2"
    )
    assert refused.status_code == 402
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_credits")
    assert len(upstream.requests) == 1


async def test_a_model_can_have_its_own_upstream_key_and_name(
    make_ledger: LedgerFactory, upstream: Upstream
) -> None:
    other = Upstream()
    try:
        route = {"base_url": other.url, "api_key": "sk-other-0123456789", "model": "gpt-4o-mini"}
        ledger = await make_ledger(
            proxy={"base_url": upstream.url, "api_key": UPSTREAM_KEY, "models": {MODEL: route}}
        )
        await ledger.grant("user_1", 10 * ledger.money.unit)
        answer = await post(ledger, "/chat/completions", {"model": MODEL, "messages": HI})
        assert answer.status_code == 200, answer.text
    finally:
        other.close()
    assert upstream.requests == []
    ((headers, sent),) = other.requests
    assert (headers["Authorization"], sent["model"]) == (
        "Bearer sk-other-0123456789",
        "gpt-4o-mini",
    )
    assert (await ledger.get_account("user_1")).balance == 10 * ledger.money.unit - 450


@pytest.mark.parametrize(
    ("setup", "status", "code"),
    [
        ({"behaviour": "refuse", "refusal": 401}, 502, "upstream_refused"),
        ({"behaviour": "refuse", "refusal": 503}, 503, None),
        ({"delay": 1.0}, 502, "upstream_unavailable"),
    ],
)
async def test_an_upstream_that_refuses_or_times_out_costs_nothing(
    make_ledger: LedgerFactory,
    upstream: Upstream,
    setup: dict[str, Any],
    status: int,
    code: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = await make_ledger(
        proxy={"base_url": upstream.url, "api_key": UPSTREAM_KEY, "timeout_seconds": 0.3}
    )
    await ledger.grant("user_1", 10 * ledger.money.unit)
    for name, value in setup.items():
        setattr(upstream, name, value)
    answer = await post(ledger, "/chat/completions", {"model": MODEL, "messages": HI})
    assert answer.status_code == status
    if code is not None:
        assert answer.json()["error"]["code"] == code
    assert UPSTREAM_KEY not in answer.text
    assert UPSTREAM_KEY not in caplog.text and "sk-or-" not in str(answer.headers)
    account = await ledger.get_account("user_1")
    assert (account.balance, account.held) == (10 * ledger.money.unit, 0)


async def test_an_upstream_that_cannot_be_reached_costs_nothing(
    make_ledger: LedgerFactory,
) -> None:
    ledger = await make_ledger(proxy={"base_url": "http://127.0.0.1:9/v1"})
    await ledger.grant("user_1", 10 * ledger.money.unit)
    answer = await post(ledger, "/chat/completions", {"model": MODEL, "messages": HI})
    assert (answer.status_code, answer.json()["error"]["code"]) == (502, "upstream_unavailable")
    account = await ledger.get_account("user_1")
    assert (account.balance, account.held) == (10 * ledger.money.unit, 0)


async def test_an_answer_without_usage_is_billed_on_what_was_delivered(
    proxied: Ledger, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    upstream.usage = None
    answer = await post(proxied, "/chat/completions", {"model": MODEL, "messages": HI})
    assert answer.json()["choices"][0]["message"]["content"] == "Hello!"
    # The input's 19 tokens (a body of 74 bytes: 2.85) and "Hello!" (6 characters, 2
    # tokens: 1.2): 4.05, rounded to 4.
    assert (await proxied.get_account("user_1")).balance == 10 * proxied.money.unit - 4


async def test_calls_reuse_one_upstream_connection(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    await client.chat.completions.create(model=MODEL, messages=HI)
    async for _chunk in await client.chat.completions.create(model=MODEL, messages=HI, stream=True):
        pass
    await client.chat.completions.create(model=MODEL, messages=HI)
    assert len(upstream.peers) == 3
    assert len(set(upstream.peers)) == 1


async def test_an_unknown_key_is_401_in_openais_shape(proxied: Ledger) -> None:
    app = create_app(proxied, sweep=False)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    client = openai.AsyncOpenAI(
        api_key="cdk_not_a_key",
        base_url="http://creditsd.test/openai/v1",
        http_client=http,  # type: ignore[arg-type]  # the SDK types its own httpx build
        max_retries=0,
    )
    with pytest.raises(openai.AuthenticationError) as refused:
        await client.chat.completions.create(model=MODEL, messages=HI)
    await http.aclose()
    await app.state.proxy.aclose()
    await app.state.stripe.close()
    assert refused.value.body == {
        "message": "unknown or revoked API key",
        "type": "authentication_error",
        "param": None,
        "code": "unauthenticated",
    }


async def test_an_upstream_without_a_key_gets_no_authorization_header(
    make_ledger: LedgerFactory, upstream: Upstream
) -> None:
    ledger = await make_ledger(proxy={"base_url": upstream.url})  # a local model server
    await ledger.grant("user_1", 10 * ledger.money.unit)
    answer = await post(ledger, "/chat/completions", {"model": MODEL, "messages": HI})
    assert answer.status_code == 200, answer.text
    ((headers, _sent),) = upstream.requests
    assert "Authorization" not in headers


async def test_a_prompt_with_exact_decimals_reaches_the_upstream_unchanged(
    proxied: Ledger, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    message = b'[{"role": "user", "content": "\\u00e9t\\u00e9 \xe2\x9c\x93"}]'
    body = b'{"model": "%s", "messages": %s, "temperature": 0.70, "top_p": 1e-1}' % (
        MODEL.encode(),
        message,
    )
    answer = await post(proxied, "/chat/completions", body)
    assert answer.status_code == 200, answer.text
    ((_headers, sent),) = upstream.requests
    assert sent["messages"][0]["content"] == "été ✓"
    assert (sent["temperature"], sent["top_p"]) == (0.70, 0.1)


# 92,500 characters: 23,125 tokens at 4 characters a token, 3,468.75 minor units of input.
LONG = "Answer in the voice of a ship's log. " * 2_500
TOOL: FunctionDefinition = {"name": "lookup", "description": LONG, "parameters": {"type": "object"}}
WHERE_TEXT_GOES: dict[str, dict[str, Any]] = {
    "messages": {"messages": [{"role": "system", "content": LONG}, *HI]},
    "tools": {"messages": HI, "tools": [{"type": "function", "function": TOOL}]},
    "functions": {"messages": HI, "functions": [TOOL]},
    "tool_choice": {
        "messages": HI,
        "tool_choice": {"type": "function", "function": {"name": LONG}},
    },
    "response_format": {
        "messages": HI,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "log", "schema": {"type": "object", "description": LONG}},
        },
    },
    "prompt": {"prompt": LONG},  # OpenRouter's prompt, in place of messages
}


@pytest.mark.parametrize("where", list(WHERE_TEXT_GOES))
async def test_the_same_text_is_held_for_wherever_the_call_carries_it(
    proxied: Ledger, upstream: Upstream, where: str
) -> None:
    # 3,000 minor units cover "Hi" with 100 output tokens many times over, not the text.
    await proxied.grant("user_1", 3_000)
    body = {"model": MODEL, "max_tokens": 100, **WHERE_TEXT_GOES[where]}
    answer = await post(proxied, "/chat/completions", body)
    assert (answer.status_code, answer.json()["error"]["code"]) == (402, "insufficient_credits")
    assert upstream.requests == []
    assert await settled(proxied) == (3_000, 0)


async def test_tool_heavy_calls_reach_the_upstream_only_as_often_as_the_balance_covers(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    # Each call's text is held for, 3,469 minor units and more: one credit covers two calls.
    await proxied.grant("user_1", proxied.money.unit)
    upstream.usage = {"prompt_tokens": 23_000, "completion_tokens": 100, "total_tokens": 23_100}
    cost = 23_000 * 15 // 100 + 100 * 6 // 10  # 3,450 + 60 minor units

    async def call() -> int:
        try:
            await client.chat.completions.create(
                model=MODEL,
                messages=HI,
                tools=[{"type": "function", "function": TOOL}],
                max_tokens=100,
            )
        except openai.APIStatusError as refused:
            return refused.status_code
        return 200

    statuses = await asyncio.gather(*(call() for _ in range(20)))
    served = statuses.count(200)
    assert 1 <= served == len(upstream.requests) <= 2
    assert statuses.count(402) == 20 - served
    assert await settled(proxied) == (proxied.money.unit - served * cost, 0)


async def test_a_call_with_no_upstream_key_for_openrouter_is_503_naming_the_setting(
    make_ledger: LedgerFactory,
) -> None:
    """With the default upstream (OpenRouter) and no ``[proxy] api_key``, a call is refused
    before anything is held, instead of going to OpenRouter unauthenticated (a 502)."""
    ledger = await make_ledger(proxy={})
    await ledger.grant("user_1", 10 * ledger.money.unit)
    answer = await post(ledger, "/chat/completions", {"model": MODEL, "messages": HI})
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "proxy_not_configured"
    assert "proxy.api_key" in error["message"]
    account = await ledger.get_account("user_1")
    assert (account.balance, account.held) == (10 * ledger.money.unit, 0)
