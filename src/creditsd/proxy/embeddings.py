"""OpenAI's Embeddings API through the proxy: held for the input's estimated tokens at the
catalog's input price, billed on the input tokens the upstream counted.

An embedding has no output, so no cap: the estimate is the input alone, a text's
characters over ``CHARS_PER_TOKEN`` (rounded up) and a token array's length.
"""

from __future__ import annotations

import math
from typing import Any

from creditsd.pricing.catalog import TokenUse
from creditsd.proxy.service import CHARS_PER_TOKEN, InvalidCall


def embeddings_call(payload: dict[str, Any]) -> TokenUse:
    """The estimate of ``payload``'s embeddings: its input's tokens, at its model's
    prices. Raises :class:`InvalidCall` (400) for an input OpenAI does not take."""
    return TokenUse(payload["model"], input_tokens=input_tokens(payload.get("input")))


def input_tokens(value: Any) -> int:
    """An input's estimated tokens, summed over a list of inputs:
    ``input_tokens(["Hello, world", [9906, 11, 1917]])`` is 3 + 3 = 6."""
    listed = isinstance(value, list) and any(isinstance(item, str | list) for item in value)
    return sum(_tokens(item) for item in (value if listed else [value]))


def _tokens(item: Any) -> int:
    if isinstance(item, str):
        return math.ceil(len(item) / CHARS_PER_TOKEN)
    if isinstance(item, list) and all(_token(token) for token in item):
        return len(item)
    raise InvalidCall("input", "must be text, an array of tokens, or a list of either")


def _token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
