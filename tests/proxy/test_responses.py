"""OpenAI's Responses API through the proxy, driven by the official ``openai`` SDK against a
local upstream speaking the API's wire format: gated and billed as chat completions are,
on the response's own usage, whether streamed or not and however a stream ends."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from creditsd.inprocess import Ledger
from creditsd.proxy.responses import ResponsesRelay
from tests.conftest import LedgerFactory, create_key
from tests.proxy.conftest import (
    FULL_PRICE,
    MODEL,
    billed_as_hung_up,
    captures,
    post,
    sdk,
    served_sdk,
    settled,
)
from tests.proxy.test_keys import mint
from tests.proxy.upstream import UPSTREAM_KEY, Behaviour, Upstream

TEXT = "Hello! How can I help?"  # the upstream's answer, in seven pieces when streamed
# A minor unit is 10⁻⁴ credit, 10⁻⁶ USD: an input token costs 0.15 of one, an output
# token 0.6. A call's input is estimated offline at its body's size in bytes over 4, rounded
# up (see test_streams); "x" × 3,998 is 4,000 bytes of the body that carries it.
LONG = "x" * 3_998


async def stream_events(client: openai.AsyncOpenAI, **call: Any) -> list[ResponseStreamEvent]:
    """Every event of a streamed response, as the SDK reads them."""
    stream = await client.responses.create(model=MODEL, stream=True, **call)
    return [event async for event in stream]


def streamed_text(events: list[ResponseStreamEvent]) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


async def test_a_response_shows_its_text_and_usage_and_is_billed_on_the_usage(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    response = await client.responses.create(model=MODEL, input="Hi", max_output_tokens=1_000)
    assert response.output_text == TEXT
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (1_000, 500)
    # 1,000 × $0.15/M + 500 × $0.60/M = $0.00045 = 0.045 credits = 450 minor units.
    assert await settled(proxied) == (10 * proxied.money.unit - FULL_PRICE, 0)
    ((headers, sent),) = upstream.requests
    assert headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert (sent["input"], sent["max_output_tokens"]) == ("Hi", 1_000)
    (capture,) = await captures(proxied)
    assert capture.metadata is not None
    assert capture.metadata["proxy_billed_on"] == "usage"


async def test_a_streamed_response_relays_every_event_and_is_billed_on_its_completed_usage(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    events = await stream_events(client, input="Hi", max_output_tokens=1_000)
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert streamed_text(events) == TEXT
    last = events[-1]
    assert last.type == "response.completed"
    assert last.response.usage is not None and last.response.usage.output_tokens == 500
    assert await settled(proxied) == (10 * proxied.money.unit - FULL_PRICE, 0)
    (capture,) = await captures(proxied)
    assert capture.metadata is not None
    assert (capture.metadata["proxy_outcome"], capture.metadata["proxy_billed_on"]) == (
        "completed",
        "usage",
    )
    ((_headers, sent),) = upstream.requests
    assert "stream_options" not in sent  # a response's usage comes unasked


async def test_cached_and_reasoning_tokens_are_priced_as_chat_prices_them(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    upstream.response_usage = {
        "input_tokens": 1_000,
        "input_tokens_details": {"cached_tokens": 600, "cache_write_tokens": 0},
        "output_tokens": 500,
        "output_tokens_details": {"reasoning_tokens": 200},
        "total_tokens": 1_500,
    }
    upstream.usage = {
        "prompt_tokens": 1_000,
        "completion_tokens": 500,
        "total_tokens": 1_500,
        "prompt_tokens_details": {"cached_tokens": 600},
        "completion_tokens_details": {"reasoning_tokens": 200},
    }
    await client.responses.create(model=MODEL, input="Hi")
    # 400 input × 0.15 + 600 cached × 0.075 + 300 output × 0.6 + 200 reasoning × 0.6
    # (at the output price: the model has no reasoning price) = 60 + 45 + 180 + 120 = 405.
    assert await settled(proxied) == (10 * proxied.money.unit - 405, 0)
    await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert await settled(proxied) == (10 * proxied.money.unit - 2 * 405, 0)


@pytest.mark.parametrize(
    ("fields", "held"),
    [
        # '{"model":"openai/gpt-4o-mini","input":"Hi","max_output_tokens":100}' is 67 bytes,
        # 17 tokens (2.55), and 100 output tokens 60: 62.55, held as 63.
        ({}, 63),
        # Instructions add 4,016 bytes: 4,083, 1,021 tokens (153.15) and 60: 213.15.
        ({"instructions": LONG}, 213),
        # A tool adds 4,009 more: 8,092 bytes, 2,023 tokens (303.45) and 60: 363.45.
        (
            {
                "instructions": LONG,
                "tools": [{"type": "function", "name": "f", "description": "y" * 3_951}],
            },
            363,
        ),
        # Two input items make the body 126 bytes, 32 tokens (31.5 rounded up: 4.8) and
        # 60: 64.8, held as 65.
        ({"input": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Ho"}]}, 65),
    ],
)
async def test_the_hold_counts_the_input_instructions_and_tools_and_the_cap(
    proxied: Ledger, upstream: Upstream, fields: dict[str, Any], held: int
) -> None:
    await proxied.grant("user_1", 1)
    body = {"model": MODEL, "input": "Hi", "max_output_tokens": 100, **fields}
    refused = await post(proxied, "/responses", body)
    assert refused.status_code == 402, refused.text
    error = refused.json(parse_float=Decimal)["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_credits")
    assert error["required"] == Decimal(held) / proxied.money.unit
    assert upstream.requests == []
    await proxied.grant("user_1", held - 1)
    upstream.response_usage = {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}
    assert (await post(proxied, "/responses", body)).status_code == 200
    assert await settled(proxied) == (held - 1, 0)  # 0.15 + 0.6, rounded to 1


async def test_a_response_the_balance_cannot_cover_is_402_before_any_upstream_byte(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 1)
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as refused:
            await client.responses.create(model=MODEL, input="Hi", stream=stream)
        assert refused.value.status_code == 402
    assert upstream.requests == []
    assert await settled(proxied) == (1, 0)


async def test_a_model_not_in_the_catalog_is_404_and_never_reaches_the_upstream(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    with pytest.raises(openai.NotFoundError) as refused:
        await client.responses.create(model="acme/unpriced", input="Hi")
    assert refused.value.body == {
        "message": "model 'acme/unpriced' is not in the catalog",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"max_output_tokens": -1}, "max_output_tokens"),
        ({"max_output_tokens": 10.5}, "max_output_tokens"),
        ({"max_output_tokens": "100"}, "max_output_tokens"),
        ({"max_output_tokens": True}, "max_output_tokens"),
        ({"max_output_tokens": 10**8}, "max_output_tokens"),
        ({"stream": "yes"}, "stream"),
        ({"background": True}, "background"),
    ],
)
async def test_a_call_the_estimate_could_not_bound_is_400_before_any_hold(
    proxied: Ledger, upstream: Upstream, fields: dict[str, Any], param: str
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    answer = await post(proxied, "/responses", {"model": MODEL, "input": "Hi", **fields})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert upstream.requests == []
    assert await settled(proxied) == (10 * proxied.money.unit, 0)


async def test_the_default_cap_is_held_for_and_sent_upstream(
    make_ledger: LedgerFactory, upstream: Upstream
) -> None:
    ledger = await make_ledger(
        proxy={"base_url": upstream.url, "api_key": UPSTREAM_KEY, "default_max_tokens": 300}
    )
    # '{"model":"openai/gpt-4o-mini","input":"Hi"}' is 43 bytes, 11 tokens (1.65), and 300
    # output tokens 180: 181.65, held as 182.
    await ledger.grant("user_1", 182)
    assert (await post(ledger, "/responses", {"model": MODEL, "input": "Hi"})).status_code == 200
    ((_headers, sent),) = upstream.requests
    assert sent["max_output_tokens"] == 300


async def test_a_cap_the_balance_cannot_cover_is_clamped_when_the_call_asks(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    # The SDK's body, '{"model":"openai/gpt-4o-mini","input":"Hi","max_output_tokens":1000}',
    # is 68 bytes, 17 tokens (2.55): 59 covers 94 output tokens (56.4): 58.95, rounded to
    # 59; 95 would be 59.55, rounded to 60.
    await proxied.grant("user_1", 59)
    upstream.response_usage = {"input_tokens": 17, "output_tokens": 94, "total_tokens": 111}
    answer = await client.responses.with_raw_response.create(
        model=MODEL,
        input="Hi",
        max_output_tokens=1_000,
        extra_headers={"X-Creditsd-Clamp": "true"},
    )
    assert answer.headers["X-Creditsd-Max-Tokens"] == "94"
    ((_headers, sent),) = upstream.requests
    assert sent["max_output_tokens"] == 94
    assert await settled(proxied) == (0, 0)  # the usage is the estimate: 58.95, so 59


async def test_a_proxy_key_pays_for_its_own_account(
    proxied: Ledger, http: httpx.AsyncClient, upstream: Upstream
) -> None:
    await proxied.grant("user_2", 10 * proxied.money.unit)
    key = await mint(http, await create_key(proxied, "app"), "user_2")
    response = await sdk(http, key["secret"]).responses.create(model=MODEL, input="Hi")
    assert response.output_text == TEXT
    assert await settled(proxied, "user_2") == (10 * proxied.money.unit - FULL_PRICE, 0)
    with pytest.raises(openai.BadRequestError) as refused:  # an app key names who pays
        await sdk(http, await create_key(proxied, "app")).responses.create(model=MODEL, input="Hi")
    assert refused.value.code == "missing_account"
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("chained", ["previous_response_id", "conversation"])
async def test_an_end_users_key_cannot_chain_on_stored_responses(
    proxied: Ledger, http: httpx.AsyncClient, upstream: Upstream, chained: str
) -> None:
    """Every caller's responses are stored under the proxy's one upstream key: a proxy
    key's calls are not stored, and may not name a stored response or conversation (one
    end user could otherwise chain on another's); an app key's go as sent."""
    await proxied.grant("user_2", 10 * proxied.money.unit)
    key = await mint(http, await create_key(proxied, "app"), "user_2")
    end_user = sdk(http, key["secret"])
    with pytest.raises(openai.BadRequestError) as refused:
        await end_user.responses.create(
            model=MODEL, input="Hi", extra_body={chained: "resp_someone_elses"}
        )
    assert (refused.value.code, refused.value.param) == ("invalid_request", chained)
    assert upstream.requests == []
    await end_user.responses.create(model=MODEL, input="Hi", store=True)
    app = sdk(http, await create_key(proxied, "app"), **{"X-Creditsd-Account": "user_2"})
    await app.responses.create(model=MODEL, input="Hi", extra_body={chained: "resp_mine"})
    (_, by_key), (_, by_app) = upstream.requests
    assert by_key["store"] is False
    assert by_app[chained] == "resp_mine" and "store" not in by_app
    assert await settled(proxied, "user_2") == (10 * proxied.money.unit - 2 * FULL_PRICE, 0)


async def test_an_answer_without_usage_is_billed_on_what_was_delivered(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    upstream.response_usage = None
    response = await client.responses.create(model=MODEL, input=LONG)
    assert response.output_text == TEXT
    # The input's 1,010 tokens (a body of 4,039 bytes: 151.5) and 22 characters delivered
    # (6 tokens, 3.6): 155.1, rounded to 155.
    assert await settled(proxied) == (10 * proxied.money.unit - 155, 0)
    (capture,) = await captures(proxied)
    assert capture.metadata is not None
    assert capture.metadata["proxy_billed_on"] == "delivered"


@pytest.mark.parametrize(("rule", "price"), [("free", 0), ("bill", 150)])
async def test_an_empty_response_follows_its_rule(
    make_ledger: LedgerFactory, upstream: Upstream, rule: str, price: int
) -> None:
    ledger = await make_ledger(
        proxy={"base_url": upstream.url, "api_key": UPSTREAM_KEY, "empty_completion": rule}
    )
    await ledger.grant("user_1", 10 * ledger.money.unit)
    upstream.behaviour = "empty"
    for stream in (False, True):
        body = {"model": MODEL, "input": "Hi", "stream": stream, "max_output_tokens": 10}
        assert (await post(ledger, "/responses", body)).status_code == 200
    # 1,000 input tokens × 0.15 = 150 minor units a call when billed.
    assert await settled(ledger) == (10 * ledger.money.unit - 2 * price, 0)


async def test_a_stream_answered_whole_is_passed_on_and_billed_on_its_usage(
    proxied: Ledger, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    upstream.behaviour = "plain"
    answer = await post(proxied, "/responses", {"model": MODEL, "input": "Hi", "stream": True})
    assert answer.headers["content-type"] == "application/json"
    assert Response.model_validate(answer.json()).output_text == TEXT
    assert await settled(proxied) == (10 * proxied.money.unit - FULL_PRICE, 0)


@pytest.mark.parametrize(
    ("behaviour", "last"), [("fail_midstream", "response.failed"), ("drop_midstream", "error")]
)
async def test_an_upstream_failure_mid_stream_reaches_the_client_and_bills_what_was_delivered(
    proxied: Ledger,
    client: openai.AsyncOpenAI,
    upstream: Upstream,
    behaviour: Behaviour,
    last: str,
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    upstream.behaviour = behaviour
    events = await stream_events(client, input=LONG)
    assert streamed_text(events) == "Hello!"  # three pieces, then the failure
    assert events[-1].type == last
    # Delivered: the input's estimate (a body of 4,053 bytes with "stream":true, 1,014
    # tokens: 152.1) and "Hello!" (6 characters, 2 tokens: 1.2): 153.3, rounded to 153.
    assert await settled(proxied) == (10 * proxied.money.unit - 153, 0)
    (capture,) = await captures(proxied)
    assert capture.metadata is not None
    assert (capture.metadata["proxy_outcome"], capture.metadata["proxy_billed_on"]) == (
        "upstream_error",
        "delivered",
    )


async def test_an_upstream_refusal_is_passed_on_and_costs_nothing(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    upstream.behaviour = "refuse"
    with pytest.raises(openai.RateLimitError) as refused:
        await stream_events(client, input="Hi")
    assert refused.value.response.headers["retry-after"] == "7"
    assert await settled(proxied) == (10 * proxied.money.unit, 0)
    assert await captures(proxied) == []


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
        stream = await client.responses.create(model=MODEL, input=LONG, stream=True)
        text = ""
        async for event in stream:
            if event.type == "response.output_text.delta":
                text += event.delta
            if text == "Hello":
                break
        await stream.close()  # the client hangs up after two pieces
    # The input's 1,014 tokens (a body of 4,053 bytes: 152.1) and "Hello" (5 characters,
    # 2 tokens: 1.2): 153.3, rounded to 153.
    await billed_as_hung_up(ledger, upstream, upstream_finishes, delivered=153)


def test_the_fake_upstream_writes_what_the_sdk_reads() -> None:
    """The fake's answers and events validate as the ``openai`` SDK's own types."""
    upstream = Upstream()
    try:
        sent = {"model": MODEL, "input": "Hi", "max_output_tokens": 100}
        Response.model_validate(upstream.response(sent))
        reader: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)
        for behaviour in ("answer", "empty", "fail_midstream"):
            upstream.behaviour = behaviour
            for event in upstream.response_events(sent):
                name, data = event.decode().split("\n")[:2]
                assert reader.validate_python(json.loads(data.removeprefix("data: "))).type == (
                    name.removeprefix("event: ")
                )
    finally:
        upstream.close()


def event(kind: str, **fields: Any) -> bytes:
    """One Responses API event as the upstream writes it."""
    data = json.dumps({"type": kind, **fields, "sequence_number": 4})
    return f"event: {kind}\ndata: {data}\n\n".encode()


def test_every_kind_of_output_delta_counts_as_delivered() -> None:
    relay = ResponsesRelay()
    stream = b"".join(
        [
            event("response.output_text.delta", delta="Hello"),
            event("response.refusal.delta", delta="no"),
            event("response.function_call_arguments.delta", delta='{"a":1}'),
            event("response.reasoning_text.delta", delta="think"),
            event("response.reasoning_summary_text.delta", delta="sum"),
            event(
                "response.output_item.added",
                output_index=1,
                item={"type": "function_call", "name": "fn", "arguments": "", "call_id": "c"},
            ),
            event(
                "response.output_item.added",
                output_index=2,
                item={"type": "custom_tool_call", "name": "py", "input": "", "call_id": "d"},
            ),
            event("response.custom_tool_call_input.delta", delta="x=1"),
            event("response.output_audio_transcript.delta", delta="said"),
            event("response.output_text.done", text="Hello"),  # the whole again: not counted
            event("response.output_item.done", item={"type": "function_call", "name": "fn"}),
            event("response.custom_event.delta", delta=7),
        ]
    )
    assert relay.feed(stream) == (stream, len('Hellono{"a":1}thinksumfnpyx=1said'))
    assert not relay.failed and relay.usage is None


def test_the_usage_is_read_exactly_from_the_response_that_ends_the_stream() -> None:
    relay = ResponsesRelay()
    relay.feed(event("response.created", response={"usage": None}))  # none until the end
    completed = b'{"type": "response.completed", "response": {"usage": {"input_tokens": 1e3}}}'
    relay.feed(b"event: response.completed\ndata: " + completed + b"\n\n")
    assert str(relay.usage["input_tokens"]) == "1E+3"


@pytest.mark.parametrize(
    "failure",
    [
        event("response.failed", response={"error": {"message": "x"}, "usage": None}),
        event("error", code="server_error", message="overloaded", param=None),
        b'data: {"error": {"message": "overloaded", "code": 502}}\n\n',
    ],
)
def test_a_failure_event_marks_the_stream_failed_and_reaches_the_client(failure: bytes) -> None:
    relay = ResponsesRelay()
    assert relay.feed(failure) == (failure, 0)
    assert relay.failed


def test_a_stream_that_breaks_off_ends_with_an_error_event_next_in_sequence() -> None:
    relay = ResponsesRelay()
    relay.feed(event("response.output_text.delta", delta="Hi"))
    name, data = relay.interruption().decode().split("\n")[:2]
    assert name == "event: error"
    error = TypeAdapter(ResponseStreamEvent).validate_json(data.removeprefix("data: "))
    assert (error.type, error.sequence_number) == ("error", 5)


def test_a_whole_response_counts_its_output_items() -> None:
    output = [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "sum"}]},
        {"type": "function_call", "arguments": '{"a":1}', "name": "f", "call_id": "c"},
        {"type": "custom_tool_call", "input": "x=1", "name": "py", "call_id": "d"},
        {
            "type": "message",
            "content": [
                {"type": "output_text", "text": "Hello", "annotations": []},
                {"type": "refusal", "refusal": "no"},
            ],
        },
        {"type": "web_search_call", "status": "completed"},
        "odd",
    ]
    assert ResponsesRelay().answer_chars({"output": output}) == len('sumf{"a":1}pyx=1Hellono')
    assert ResponsesRelay().answer_chars({"output": 5}) == 0
