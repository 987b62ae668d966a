"""JSON that keeps numbers exact: decimals in, decimals out, no floats anywhere."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import simplejson


class NonStandardNumber(ValueError):
    """NaN or Infinity written where JSON allows only finite numbers."""


class DuplicateKey(ValueError):
    """The same key twice in one JSON object, which would hide one of the values."""


def _refuse_constant(name: str) -> Any:
    raise NonStandardNumber(f"{name} is not a valid JSON number")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise DuplicateKey(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def loads(text: bytes | str) -> Any:
    """Parse JSON strictly: fractions as Decimal, NaN/Infinity and duplicate keys refused."""
    return simplejson.loads(
        text,
        use_decimal=True,
        parse_constant=_refuse_constant,
        object_pairs_hook=_unique_object,
        allow_nan=False,
    )


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return format_timestamp(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with microseconds and a Z, the one timestamp form we emit."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dumps(value: object, *, sort_keys: bool = False) -> str:
    """Serialize with Decimal written as an exact JSON number."""
    return simplejson.dumps(
        value,
        use_decimal=True,
        default=_default,
        separators=(",", ":"),
        allow_nan=False,
        sort_keys=sort_keys,
    )


__all__ = ["DuplicateKey", "NonStandardNumber", "dumps", "format_timestamp", "loads"]
