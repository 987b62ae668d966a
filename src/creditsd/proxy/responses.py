"""OpenAI's Responses API through the proxy, held for and settled as a chat completion is.

A response's cost is bounded by ``max_output_tokens`` (``[proxy] default_max_tokens`` when
the call names none, and then sent upstream). Its usage is ``response.usage``: in the
answer, or in the ``response.completed`` event that ends a stream (``.incomplete`` when
the cap cut it short); ``response.failed`` and ``error`` events are an upstream failure.
What was delivered is counted in text, refusal, function-call argument and reasoning
(text and summary) characters.
"""

from __future__ import annotations

from typing import Any

from creditsd import jsonio
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
    }
)


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
        return event + b"\n\n", delivered

    def answer_chars(self, answer: dict[str, Any]) -> int:
        """The output characters of a whole response: its items' text, refusals,
        function-call arguments, reasoning text and summaries."""
        count = 0
        items = answer.get("output")
        for item in items if isinstance(items, list) else ():
            if not isinstance(item, dict):
                continue
            arguments = item.get("arguments")
            if item.get("type") == "function_call" and isinstance(arguments, str):
                count += len(arguments)
            for name in ("content", "summary"):  # a message's parts, a reasoning item's
                parts = item.get(name)
                for part in parts if isinstance(parts, list) else ():
                    for field in ("text", "refusal"):
                        text = part.get(field) if isinstance(part, dict) else None
                        if isinstance(text, str):
                            count += len(text)
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
