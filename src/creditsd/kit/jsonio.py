"""JSON that keeps numbers exact: decimals in, decimals out, no floats anywhere.

Three codecs, each where it measured best (bench/http/README.md):

- :func:`loads` reads with the standard library's C scanner, one decoder built once:
  ``{"amount": 10.5}`` gives ``{"amount": Decimal("10.5")}``, integers stay ``int``.
- :func:`render` writes HTTP responses with orjson, Decimals as their exact digits
  (``10.5``, never a float), about three times faster than :func:`dumps`.
- :func:`dumps` is the canonical text (ASCII only, keys sortable) that idempotency and
  catalog hashes are taken over and that the database and webhooks store; it stays on
  simplejson so those bytes never change. :func:`canonical` gives the same text with keys
  sorted, through orjson whenever orjson provably writes the same bytes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, cast

import orjson
import simplejson

# Python refuses to read longer integers (int parsing is quadratic); we refuse them first,
# whatever sys.set_int_max_str_digits says, so a long literal is a 422 and never a hang.
MAX_INTEGER_DIGITS = 4300


class JSONError(ValueError):
    """Text that :func:`loads` refuses."""


class MalformedJSON(JSONError):
    """Not a JSON text: a syntax error, bytes that are not UTF-8, or nesting too deep."""


class NonStandardNumber(JSONError):
    """NaN or Infinity written where JSON allows only finite numbers, or a number too long
    or too large to hold exactly."""


class DuplicateKey(JSONError):
    """The same key twice in one JSON object, which would hide one of the values."""


def _refuse_constant(name: str) -> Any:
    raise NonStandardNumber(f"{name} is not a valid JSON number")


def _integer(text: str) -> int:
    if len(text) - text.startswith("-") > MAX_INTEGER_DIGITS:
        raise NonStandardNumber(f"integers have at most {MAX_INTEGER_DIGITS} digits")
    try:
        return int(text)
    except ValueError:  # the interpreter's own limit, if set lower than ours
        raise NonStandardNumber(f"integers have at most {MAX_INTEGER_DIGITS} digits") from None


def _fraction(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:  # an exponent beyond what a Decimal holds: 1e999999999999999999
        raise NonStandardNumber(f"{text[:40]} is out of range") from None


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise DuplicateKey(f"duplicate key {key!r}")
        obj[key] = value
    return obj


_decoder = json.JSONDecoder(
    parse_float=_fraction,
    parse_int=_integer,
    parse_constant=_refuse_constant,
    object_pairs_hook=_unique_object,
)


def loads(text: bytes | str) -> Any:
    """Parse JSON strictly: fractions as Decimal, integers as int; NaN/Infinity, duplicate
    keys, integers over 4300 digits and bytes that are not UTF-8 refused (:class:`JSONError`).
    """
    try:
        # A leading byte order mark is allowed (RFC 8259 §8.1), as it always was here.
        return _decoder.decode(text.decode("utf-8-sig") if isinstance(text, bytes) else text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedJSON(str(exc)) from None


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with microseconds and a Z, the one timestamp form we emit."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return format_timestamp(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: object, *, sort_keys: bool = False) -> str:
    """Serialize with Decimal written as an exact JSON number: the canonical, ASCII form."""
    return simplejson.dumps(
        value,
        use_decimal=True,
        default=_default,
        separators=(",", ":"),
        allow_nan=False,
        sort_keys=sort_keys,
    )


def _render_default(value: object) -> object:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError("NaN and Infinity are not JSON numbers")
        return orjson.Fragment(str(value))  # the exact digits, written as a number
    if isinstance(value, datetime):
        return format_timestamp(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# Values orjson writes byte for byte as dumps does: JSON's own types but floats (whose
# digits and NaN orjson writes its own way), and the Decimals and datetimes both write
# through the same default.
_SAME_IN_BOTH = frozenset({str, int, bool, type(None), Decimal, datetime})


def _same_in_both(value: object) -> bool:
    found = [value]
    for item in found:  # the list grows by the items of each container met
        kind = type(item)
        if kind is dict:
            mapping = cast("dict[object, object]", item)
            if not set(map(type, mapping)) <= {str}:
                return False
            found += mapping.values()
        elif kind is list or kind is tuple:
            found += cast("list[object]", item)
        elif kind not in _SAME_IN_BOTH:
            return False
    return True


def canonical(value: object) -> str:
    """``dumps(value, sort_keys=True)``, twice as fast where orjson writes it the
    same: ``{"b": [1, Decimal("2.5")], "a": None}`` gives ``'{"a":null,"b":[1,2.5]}'``."""
    if _same_in_both(value):
        try:
            text = orjson.dumps(
                value,
                default=_render_default,
                option=orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME,
            )
        except orjson.JSONEncodeError:  # an integer beyond 64 bits, NaN: dumps decides
            pass
        else:
            # Text that needed no escape (orjson escapes control characters, and ASCII has
            # no others but DEL) has no escape written differently.
            if text.isascii() and b"\\" not in text and b"\x7f" not in text:
                return text.decode()
    return dumps(value, sort_keys=True)


def render(value: object) -> bytes:
    """The same JSON value as :func:`dumps`, as UTF-8 bytes, for an HTTP response.

    ``{"amount": Decimal("10.5"), "at": datetime(2026, 1, 1, tzinfo=UTC)}`` gives
    ``b'{"amount":10.5,"at":"2026-01-01T00:00:00.000000Z"}'``. Text is written as UTF-8
    rather than ``\\u`` escapes. The rare value orjson cannot write (an integer beyond 64
    bits, a lone surrogate) falls back to :func:`dumps`.
    """
    try:
        return orjson.dumps(value, default=_render_default, option=orjson.OPT_PASSTHROUGH_DATETIME)
    except orjson.JSONEncodeError:
        return dumps(value).encode()


__all__ = [
    "MAX_INTEGER_DIGITS",
    "DuplicateKey",
    "JSONError",
    "MalformedJSON",
    "NonStandardNumber",
    "canonical",
    "dumps",
    "format_timestamp",
    "loads",
    "render",
]
