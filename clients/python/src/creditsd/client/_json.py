"""JSON without floats: Decimal written as exact numbers, fractions read back as Decimal."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any


def dumps(value: object) -> bytes:
    """Encode a request body; Decimal becomes an exact JSON number, a float is refused."""
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts).encode()


def loads(content: bytes) -> Any:
    """Decode a response body, every fraction as a Decimal so nothing passes through a float."""
    return json.loads(content, parse_float=Decimal)


def _encode(value: object, parts: list[str]) -> None:
    if value is None or isinstance(value, bool | str):
        parts.append(json.dumps(value))
    elif isinstance(value, int):
        parts.append(int.__repr__(value))  # an IntEnum's str() would be its name
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a finite number")
        parts.append(format(value, "f"))
    elif isinstance(value, float):
        raise TypeError(
            f"floats are inexact ({value!r}); send credits and quantities as Decimal, int or str"
        )
    elif isinstance(value, Mapping):
        parts.append("{")
        for index, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys are strings, not {type(key).__name__}")
            parts.append(("," if index else "") + json.dumps(key) + ":")
            _encode(item, parts)
        parts.append("}")
    elif isinstance(value, list | tuple):
        parts.append("[")
        for index, item in enumerate(value):
            if index:
                parts.append(",")
            _encode(item, parts)
        parts.append("]")
    else:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
