"""What clients and upstreams really send that a proxy must not trip on: every case is
answered (never a 500) and ends with no hold open and the documented charge."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from creditsd.api.app import create_app
from creditsd.inprocess import Ledger
from tests.conftest import LedgerFactory, create_key
from tests.proxy.conftest import FULL_PRICE, MODEL, post, settled
from tests.proxy.upstream import UPSTREAM_KEY, Upstream

HI = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    "body",
    [
        {"model": MODEL, "messages": HI, "stream": "yes"},
        {"model": MODEL, "messages": HI, "stream": 1},
        {"model": MODEL, "messages": HI, "n": "2"},
        {"model": MODEL, "messages": HI, "n": 0},
        {"model": MODEL, "messages": HI, "max_tokens": 10.5},
        {"model": MODEL, "messages": HI, "max_tokens": -1},
        {"model": MODEL, "messages": HI, "max_completion_tokens": 1e6},
        {"model": MODEL, "messages": HI, "max_tokens": True},
    ],
)
async def test_a_call_the_estimate_could_not_bound_is_400_before_any_hold(
    proxied: Ledger, upstream: Upstream, body: dict[str, Any]
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    answer = await post(proxied, "/chat/completions", body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert upstream.requests == []
    assert await settled(proxied) == (10 * proxied.money.unit, 0)


async def test_n_completions_are_held_for_n_times_the_cap(
    proxied: Ledger, upstream: Upstream
) -> None:
    # 25 input tokens (a body of 97 bytes: 3.75) + 3 × 100 output tokens (180): 183.75,
    # held as 184.
    await proxied.grant("user_1", 183)
    body = {"model": MODEL, "messages": HI, "n": 3, "max_tokens": 100}
    assert (await post(proxied, "/chat/completions", body)).status_code == 402
    assert upstream.requests == []
    await proxied.grant("user_1", 1)
    upstream.usage = {"prompt_tokens": 25, "completion_tokens": 300, "total_tokens": 325}
    assert (await post(proxied, "/chat/completions", body)).status_code == 200
    assert await settled(proxied) == (0, 0)


async def test_every_cap_field_goes_upstream_as_the_cap_held_for(
    proxied: Ledger, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    body = {"model": MODEL, "messages": HI, "max_tokens": 100, "max_completion_tokens": 10}
    assert (await post(proxied, "/chat/completions", body)).status_code == 200
    ((_headers, sent),) = upstream.requests
    assert (sent["max_tokens"], sent["max_completion_tokens"]) == (10, 10)


async def test_a_stream_answered_as_a_whole_is_billed_on_its_usage(
    proxied: Ledger, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    upstream.behaviour = "plain"
    body = {"model": MODEL, "messages": HI, "stream": True}
    answer = await post(proxied, "/chat/completions", body)
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"] == "Hello!"
    assert await settled(proxied) == (10 * proxied.money.unit - FULL_PRICE, 0)


async def test_an_answer_that_breaks_off_is_502_and_costs_nothing(
    proxied: Ledger, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    upstream.behaviour = "cut"
    answer = await post(proxied, "/chat/completions", {"model": MODEL, "messages": HI})
    assert (answer.status_code, answer.json()["error"]["code"]) == (502, "upstream_unavailable")
    assert await settled(proxied) == (10 * proxied.money.unit, 0)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/chat/completions", {"model": MODEL, "messages": HI}),
        ("/images/generations", {"model": "openai/dall-e-3", "prompt": "a cat"}),
    ],
)
async def test_an_answer_longer_than_the_bound_is_502_and_costs_nothing(
    make_ledger: LedgerFactory, upstream: Upstream, path: str, body: dict[str, Any]
) -> None:
    limit = 4096
    ledger = await make_ledger(
        proxy={"base_url": upstream.url, "api_key": UPSTREAM_KEY, "max_answer_bytes": limit}
    )
    await ledger.grant("user_1", 10 * ledger.money.unit)
    upstream.extra = {"padding": "x" * limit}
    answer = await post(ledger, path, body)
    assert (answer.status_code, answer.json()["error"]["code"]) == (
        502,
        "upstream_answer_too_large",
    )
    assert len(upstream.requests) == 1
    assert await settled(ledger) == (10 * ledger.money.unit, 0)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "tool_calls", [5, [{"function": "x"}], [7], [{"function": {"arguments": 3}}]]
)
async def test_odd_tool_calls_are_relayed_and_billed_on_the_usage(
    proxied: Ledger, upstream: Upstream, stream: bool, tool_calls: Any
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    upstream.extra = {"tool_calls": tool_calls}
    body = {
        "model": MODEL,
        "messages": HI,
        "stream": stream,
        "stream_options": {"include_usage": True},
    }
    if not stream:
        del body["stream_options"]
    answer = await post(proxied, "/chat/completions", body)
    assert answer.status_code == 200
    assert await settled(proxied) == (10 * proxied.money.unit - FULL_PRICE, 0)


async def test_an_attribution_header_that_is_not_ascii_is_left_out(
    proxied: Ledger, upstream: Upstream
) -> None:

    await proxied.grant("user_1", 10 * proxied.money.unit)
    app = create_app(proxied, sweep=False)
    headers = [
        (b"authorization", f"Bearer {await create_key(proxied, 'app')}".encode()),
        (b"x-creditsd-account", b"user_1"),
        (b"x-title", "café".encode("latin-1")),
        (b"http-referer", b"https://app.example"),
    ]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        answer = await http.post(
            "http://t/openai/v1/chat/completions",
            json={"model": MODEL, "messages": HI},
            headers=headers,
        )
    await app.state.proxy.aclose()
    await app.state.stripe.close()
    assert answer.status_code == 200
    ((sent_headers, _sent),) = upstream.requests
    assert "X-Title" not in sent_headers and sent_headers["HTTP-Referer"] == "https://app.example"
    assert await settled(proxied) == (10 * proxied.money.unit - FULL_PRICE, 0)


async def test_an_upstream_402_is_creditsds_own_account_and_a_502(
    proxied: Ledger, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    upstream.behaviour = "refuse"
    upstream.refusal = 402
    answer = await post(proxied, "/chat/completions", {"model": MODEL, "messages": HI})
    assert (answer.status_code, answer.json()["error"]["code"]) == (502, "upstream_refused")
    assert await settled(proxied) == (10 * proxied.money.unit, 0)
