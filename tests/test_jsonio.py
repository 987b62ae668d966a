"""JSON in and out: exact numbers, hostile input refused, responses equal to the canonical form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditsd.kit import jsonio


def test_numbers_are_read_exactly() -> None:
    parsed = jsonio.loads(b'{"a": 10.5, "b": 0.1000000000000000055511151231257827, "c": 7}')
    assert parsed == {
        "a": Decimal("10.5"),
        "b": Decimal("0.1000000000000000055511151231257827"),
        "c": 7,
    }
    assert type(parsed["c"]) is int
    assert jsonio.loads('{"a": 1E+2}')["a"] == Decimal("1E+2")
    assert type(jsonio.loads(b'{"a": 18446744073709551616}')["a"]) is int


@pytest.mark.parametrize(
    "text",
    [
        b'{"a": 1' + b"0" * jsonio.MAX_INTEGER_DIGITS + b"}",
        b'{"a": -1' + b"0" * 900_000 + b"}",
        b'{"a": 1e999999999999999999999}',
        b'{"a": -1E-999999999999999999999}',
    ],
)
def test_numbers_too_long_or_too_large_are_refused_at_once(text: bytes) -> None:
    with pytest.raises(jsonio.NonStandardNumber):
        jsonio.loads(text)


def test_the_longest_integer_allowed_is_still_an_int() -> None:
    assert jsonio.loads("-" + "9" * jsonio.MAX_INTEGER_DIGITS) == -int("9" * 4300)


@pytest.mark.parametrize(
    "text",
    [
        b'{"a": "\xff"}',  # not UTF-8
        b'{"a": "\xed\xa0\x80"}',  # a UTF-8-encoded surrogate
        '{"a": 1}'.encode("utf-16"),
        '{"a": 1}'.encode("utf-32"),
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a": 1,}',
        b"",
    ],
)
def test_malformed_text_is_refused(text: bytes) -> None:
    with pytest.raises(jsonio.MalformedJSON):
        jsonio.loads(text)


def test_a_leading_byte_order_mark_is_allowed() -> None:
    assert jsonio.loads(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


def test_responses_are_the_canonical_json_as_utf8() -> None:
    at = datetime(2026, 12, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    value = {"balance": Decimal("90"), "change": Decimal("-10.5"), "at": at, "n": None}
    assert jsonio.render(value) == jsonio.dumps(value).encode()
    assert jsonio.render(value) == (
        b'{"balance":90,"change":-10.5,"at":"2026-12-01T00:00:00.000000Z","n":null}'
    )
    assert jsonio.render({"name": "café"}) == '{"name":"café"}'.encode()


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**4000, "\ud800"])
def test_what_orjson_cannot_write_falls_back_to_the_canonical_form(value: object) -> None:
    assert jsonio.render({"a": value}) == jsonio.dumps({"a": value}).encode()


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("-Infinity"), object()])
def test_responses_refuse_what_is_not_json(value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        jsonio.render({"a": value})


_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.datetimes(timezones=st.just(UTC))
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(_values)
def test_render_and_dumps_write_the_same_value(value: Any) -> None:
    assert jsonio.loads(jsonio.render(value)) == jsonio.loads(jsonio.dumps(value))


_canonical_scalars = (
    _scalars
    | st.floats()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.decimals()
    | st.text(st.characters(codec="ascii"))
)
_canonical_values = st.recursive(
    _canonical_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(st.characters(codec="ascii")) | st.text(), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(_canonical_values)
def test_canonical_is_dumps_with_sorted_keys_byte_for_byte(value: Any) -> None:
    try:
        expected = jsonio.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as refused:
        with pytest.raises(type(refused)):
            jsonio.canonical(value)
    else:
        assert jsonio.canonical(value) == expected


def test_canonical_writes_what_orjson_would_write_otherwise_as_dumps_does() -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    assert jsonio.canonical({"b": (1, Decimal("2.5E+3")), "a": [None, True, at]}) == (
        '{"a":[null,true,"2026-12-01T00:00:00.000000Z"],"b":[1,2.5E+3]}'
    )
    for value in [1e-07, 1e16, "café", "tab\there", 'quote"', "\x7f", 2**64, {1: "a"}]:
        assert jsonio.canonical({"v": value}) == jsonio.dumps({"v": value}, sort_keys=True)
