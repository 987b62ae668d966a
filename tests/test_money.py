"""Exact amounts: parsing at the edges, formatting back."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditsd.kit import jsonio
from creditsd.kit.money import INT64_MAX, AmountError, Money

money = Money(4)


@pytest.mark.parametrize(
    ("value", "minor"),
    [
        (10, 100_000),
        ("10.5", 105_000),
        (Decimal("0.0001"), 1),
        (Decimal("10.50000"), 105_000),
        (Decimal("100E-2"), 10_000),
        ("922337203685477.5807", INT64_MAX),
    ],
)
def test_exact_amounts_become_minor_units(value: object, minor: int) -> None:
    assert money.to_minor(value) == minor


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (Decimal("NaN"), "finite"),
        (Decimal("Infinity"), "finite"),
        (Decimal("1E+400"), "range"),
        (Decimal("1E-400"), "decimal places"),
        ("0.00001", "decimal places"),
        (Decimal("1.00000000000000000000000000001"), "decimal places"),
        ("922337203685477.5808", "range"),
        (-1, "negative"),
        (0, "greater than zero"),
        (True, "float or boolean"),
        (1.5, "float or boolean"),
        ("1e3", "decimal number"),
        (" 1", "decimal number"),
        ("1_000", "decimal number"),
        ("", "decimal number"),
        (None, "must be a number"),
        ([1], "must be a number"),
    ],
)
def test_inexact_or_odd_amounts_are_refused(value: object, reason: str) -> None:
    with pytest.raises(AmountError, match=reason):
        money.to_minor(value)


def test_zero_and_negative_only_when_asked() -> None:
    assert money.to_minor(0, allow_zero=True) == 0
    assert money.to_minor("-3.25", allow_negative=True) == -32_500


@given(st.integers(min_value=-INT64_MAX, max_value=INT64_MAX), st.integers(0, 6))
def test_formatting_round_trips_exactly(minor: int, scale: int) -> None:
    converter = Money(scale)
    shown = converter.to_decimal(minor)
    assert "E" not in str(shown)
    text = jsonio.dumps({"amount": shown})
    parsed = jsonio.loads(text)["amount"]
    assert converter.to_minor(parsed, allow_zero=True, allow_negative=True) == minor


@pytest.mark.parametrize("scale", [-1, 7])
def test_scales_outside_zero_to_six_are_refused(scale: int) -> None:
    with pytest.raises(ValueError, match="scale"):
        Money(scale)


def test_json_numbers_are_written_exactly() -> None:
    assert money.to_decimal(105_000) == Decimal("10.5")
    assert jsonio.dumps({"a": money.to_decimal(900_000), "b": money.to_decimal(-32_500)}) == (
        '{"a":90,"b":-3.25}'
    )


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": Infinity}', '{"a": -Infinity}'])
def test_non_standard_numbers_are_refused(text: str) -> None:
    with pytest.raises(jsonio.NonStandardNumber):
        jsonio.loads(text)


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(jsonio.DuplicateKey):
        jsonio.loads('{"amount": 1, "amount": 1000}')
