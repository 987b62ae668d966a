"""What was delivered, billed when an answer carries no usage: every output field counts,
streamed or whole (text, as a string or as parts; a legacy ``function_call``; tool calls'
names and arguments, or a custom tool's input; reasoning under either name; a refusal; an
audio answer's transcript), and what only repeats another field or is not text
(``reasoning_details``, audio data) does not."""

from __future__ import annotations

from typing import Any

import pytest

from creditsd.inprocess import Ledger
from tests.proxy.conftest import MODEL, captures, post, settled
from tests.proxy.upstream import Upstream

HI = [{"role": "user", "content": "Hi"}]
HALF = "twelve chars"  # 12 characters: every shape below delivers 24, 6 tokens
NAME, ARGUMENTS = "get_time", '{"tz":"UTC"}xxxx'  # 8 and 16 characters
SHAPES: dict[str, dict[str, Any]] = {
    "content": {"content": HALF + HALF},
    "content parts": {"content": [{"type": "text", "text": HALF}] * 2},
    "function_call": {"content": None, "function_call": {"name": NAME, "arguments": ARGUMENTS}},
    "tool_calls": {
        "content": None,
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": NAME, "arguments": ARGUMENTS},
            }
        ],
    },
    "custom tool_calls": {
        "content": None,
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "custom",
                "custom": {"name": NAME, "input": ARGUMENTS},
            }
        ],
    },
    "reasoning": {"content": HALF, "reasoning": HALF},
    "reasoning_content": {"content": HALF, "reasoning_content": HALF},
    "reasoning_details": {
        "content": HALF,
        "reasoning": HALF,
        "reasoning_details": [{"type": "reasoning.text", "text": HALF, "index": 0}],
    },
    "refusal": {"content": None, "refusal": HALF + HALF},
    "audio": {
        "content": None,
        "audio": {"id": "audio_1", "data": "UklGRiQA" * 1_000, "transcript": HALF + HALF},
    },
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("shape", list(SHAPES))
async def test_every_output_field_counts_once_as_delivered(
    proxied: Ledger, upstream: Upstream, shape: str, stream: bool
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    upstream.usage = None
    upstream.output = SHAPES[shape]
    answer = await post(
        proxied, "/chat/completions", {"model": MODEL, "messages": HI, "stream": stream}
    )
    assert answer.status_code == 200, answer.text
    # The input's 22 or 23 tokens (a body of 88 or 89 bytes: 3.3 or 3.45 minor units) and
    # 24 characters of output (6 tokens: 3.6): 6.9 or 7.05, 7 either way.
    assert await settled(proxied) == (10 * proxied.money.unit - 7, 0)
    (capture,) = await captures(proxied)
    assert capture.metadata is not None
    assert (capture.metadata["proxy_outcome"], capture.metadata["proxy_billed_on"]) == (
        "completed",
        "delivered",
    )
