"""Exact amounts: integer minor units inside, decimals only at the edges."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
MAX_SCALE = 6  # beyond six places str(Decimal) switches to exponent notation

_DECIMAL_TEXT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")


class AmountError(ValueError):
    """A value that is not an exact amount at the deployment's scale."""


def parse_decimal(value: object) -> Decimal:
    """Read an int, a Decimal or a plain decimal string as a finite Decimal.

    Floats and booleans are refused: a float has already lost exactness, and a
    boolean is not a number even though Python says it is an int.
    """
    if isinstance(value, (bool, float)):
        raise AmountError("must be a number written exactly, not a float or boolean")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, str):
        if len(value) > 40 or not _DECIMAL_TEXT.fullmatch(value):
            raise AmountError("must be a decimal number such as 10 or 10.5")
        try:
            number = Decimal(value)
        except InvalidOperation as exc:  # pragma: no cover - the pattern admits only valid text
            raise AmountError("must be a decimal number") from exc
    else:
        raise AmountError("must be a number")
    if not number.is_finite():
        raise AmountError("must be finite (NaN and Infinity are not amounts)")
    return number


@dataclass(frozen=True, slots=True)
class Money:
    """Converts between credits (Decimal) and minor units (int) at a fixed scale."""

    scale: int = 4

    def __post_init__(self) -> None:
        if not 0 <= self.scale <= MAX_SCALE:
            raise ValueError(f"scale must be between 0 and {MAX_SCALE}")

    @property
    def unit(self) -> int:
        """Minor units in one credit."""
        return int(10**self.scale)

    def to_minor(
        self, value: object, *, allow_zero: bool = False, allow_negative: bool = False
    ) -> int:
        """Parse a credit amount into minor units, refusing anything inexact or out of range."""
        number = parse_decimal(value)
        sign, digits, exponent = number.as_tuple()
        assert isinstance(exponent, int)  # finite, checked by parse_decimal
        if number.adjusted() > 30 or len(digits) > 60:
            raise AmountError("is out of range")
        trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0") or "0")
        shift = exponent + self.scale
        if shift + trailing_zeros < 0 and any(digits):
            raise AmountError(f"has more than {self.scale} decimal places")
        magnitude = int("".join(map(str, digits)))
        minor = magnitude * int(10**shift) if shift >= 0 else magnitude // int(10**-shift)
        if sign:
            minor = -minor
        if abs(minor) > INT64_MAX:
            raise AmountError("is out of range")
        if minor < 0 and not allow_negative:
            raise AmountError("must not be negative")
        if minor == 0 and not allow_zero:
            raise AmountError("must be greater than zero")
        return minor

    def to_decimal(self, minor: int) -> Decimal:
        """Render minor units as the shortest exact Decimal (90, 10.5, -3.25)."""
        return plain(Decimal(minor).scaleb(-self.scale))


def plain(number: Decimal) -> Decimal:
    """The shortest exact form of a number, never in exponent notation (300, not 3E+2)."""
    number = number.normalize()
    if number.as_tuple().exponent > 0:  # type: ignore[operator]
        number = number.quantize(Decimal(1))
    return number
