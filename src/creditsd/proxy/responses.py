"""OpenAI's Responses API through the proxy, held for and settled as a chat completion is.

A response's cost is bounded by ``max_output_tokens`` (``[proxy] default_max_tokens`` when
the call names none, and then sent upstream). Its usage is ``response.usage``: in the
answer, or in the ``response.completed`` event that ends a stream (``.incomplete`` when
the cap cut it short); ``response.failed`` and ``error`` events are an upstream failure.
What was delivered is counted in text, refusal, reasoning (text and summary) and audio
transcript characters, and each function or custom tool call's name and input.
"""

from __future__ import annotations

from typing import Any

from creditsd.kit import jsonio
from creditsd.pricing.catalog import TokenUse
from creditsd.proxy.service import (
    MAX_CAP,
    InvalidCall,
    ModelCall,
    estimate_input_tokens,
    streamed,
    whole_number,
)
from creditsd.proxy.streams import Relay, exactly

CAP_FIELD = "max_output_tokens"
FAILURES = frozenset({"response.failed", "error"})
DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
        "response.custom_tool_call_input.delta",
        "response.output_audio_transcript.delta",
    }
)
CALLS = {"function_call": "arguments", "custom_tool_call": "input"}  # a call item's input


def responses_call(payload: dict[str, Any], body: bytes, default_cap: int) -> ModelCall:
    """``payload``'s call (``body`` as it arrived), its cost bounded: its input's estimate
    and its ``max_output_tokens`` (``default_cap`` when it names none). Raises
    :class:`InvalidCall` (400) for a cap or ``stream`` that is not what OpenAI takes, and
    for a background response, whose usage only a later fetch would show."""
    if payload.get("background") not in (None, False):
        raise InvalidCall("background", "is not supported: a response is billed as it ends")
    cap = whole_number(payload, CAP_FIELD, MAX_CAP) or default_cap
    use = TokenUse(payload["model"], input_tokens=estimate_input_tokens(body), output_tokens=cap)
    return ModelCall(use, 1, streamed(payload))


CHAINS = ("previous_response_id", "conversation")  # what names responses stored before


def for_end_user(payload: dict[str, Any]) -> None:
    """Keep a call an end user's proxy key pays for to itself: every caller's responses
    would be stored under the proxy's one upstream key, so it is sent with ``store:
    false``, and naming a stored response or conversation is :class:`InvalidCall` (400)."""
    for name in CHAINS:
        if payload.get(name) is not None:
            raise InvalidCall(name, "is not available to proxy keys: stored responses are shared")
    payload["store"] = False


class ResponsesRelay(Relay):
    """A Responses stream's events, passed on as sent (a response's usage is part of it)."""

    def __init__(self) -> None:
        super().__init__(keep_usage=True)
        self.sequence = 0  # the last event's sequence_number

    def _chunk(
        self, event: bytes, payload: bytes, chunk: dict[str, Any]
    ) -> tuple[bytes | None, int]:
        kind = chunk.get("type")
        if not isinstance(kind, str):
            kind = ""
        if isinstance(number := chunk.get("sequence_number"), int):
            self.sequence = number
        if kind in FAILURES or chunk.get("error"):  # or a chat-shaped error, as some send
            self.failed = True
        response = chunk.get("response")
        if isinstance(response, dict) and response.get("usage"):
            self.usage = exactly(payload, chunk)["response"]["usage"]
        delta = chunk.get("delta")
        delivered = len(delta) if kind in DELTAS and isinstance(delta, str) else 0
        if kind == "response.output_item.added":  # a call's name; its input comes in deltas
            item = chunk.get("item")
            if isinstance(item, dict) and item.get("type") in CALLS:
                delivered += _chars(item.get("name"))
        return event + b"\n\n", delivered

    def answer_chars(self, answer: dict[str, Any]) -> int:
        """The output characters of a whole response: its items' text, refusals,
        reasoning text and summaries, and each function or custom tool call's name and
        input."""
        count = 0
        items = answer.get("output")
        for item in items if isinstance(items, list) else ():
            if not isinstance(item, dict):
                continue
            if (given := CALLS.get(str(item.get("type")))) is not None:
                count += _chars(item.get("name")) + _chars(item.get(given))
            for name in ("content", "summary"):  # a message's parts, a reasoning item's
                parts = item.get(name)
                for part in parts if isinstance(parts, list) else ():
                    if isinstance(part, dict):
                        count += _chars(part.get("text")) + _chars(part.get("refusal"))
        return count

    def interruption(self) -> bytes:
        """An ``error`` event in the Responses API's shape, next in the stream's sequence."""
        error = {
            "type": "error",
            "code": "upstream_interrupted",
            "message": "the model provider's stream broke off",
            "param": None,
            "sequence_number": self.sequence + 1,
        }
        return b"event: error\ndata: " + jsonio.render(error) + b"\n\n"


def _chars(text: Any) -> int:
    """The characters of ``text`` when it is a string (a model's output), else none."""
    return len(text) if isinstance(text, str) else 0
