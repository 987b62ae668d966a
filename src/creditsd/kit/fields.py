"""Field types shared by the request and response schemas of every domain."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from creditsd.kit.idempotency import KEY_PATTERN
from creditsd.kit.ids import ACCOUNT_ID_PATTERN
from creditsd.kit.money import AmountError, parse_decimal

MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_LENGTH = 64
MAX_TEXT_LENGTH = 500


class StrictRequest(BaseModel):
    """A request body: unknown fields refused, no type coercion (``"5"`` is not 5)."""

    model_config = ConfigDict(extra="forbid", strict=True)


def decimal_field(value: object) -> Decimal:
    """A number or decimal string as an exact Decimal; a ``ValueError`` names what is wrong."""
    try:
        return parse_decimal(value)
    except AmountError as exc:
        raise ValueError(str(exc)) from exc


_DIGITS = "at most the deployment's scale of decimal places (default 4)"
_SETTING_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": r"^(0|[1-9][0-9]*)(\.[0-9]+)?$"},
    ],
    "description": f"Credits, exact: a JSON number or a decimal string, zero or more, {_DIGITS}.",
    "examples": [0, "100.5"],
}
_AMOUNT_SCHEMA = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0},
        {"type": "string", "pattern": r"^([1-9][0-9]*(\.[0-9]+)?|0\.[0-9]*[1-9][0-9]*)$"},
    ],
    "description": f"Credits, exact: a JSON number or a decimal string above zero, {_DIGITS}.",
    "examples": [10, "10.5"],
}

Instant = Annotated[AwareDatetime, Field(strict=False)]
"""A moment as an RFC 3339 string with its offset (``2026-12-01T00:00:00Z``)."""

AmountIn = Annotated[Decimal, BeforeValidator(decimal_field), WithJsonSchema(_AMOUNT_SCHEMA)]
"""An amount of credits to move, as a caller writes it (above zero, which the ledger checks
when it converts it to minor units)."""

SettingIn = Annotated[Decimal, BeforeValidator(decimal_field), WithJsonSchema(_SETTING_SCHEMA)]
"""A figure of credits an account is set to (a grant on creation, a limit, a threshold):
zero or more."""

AmountOut = Annotated[
    Decimal,
    WithJsonSchema({"type": "number", "description": "Credits, written exactly."}),
]

AccountId = Annotated[
    str,
    Field(
        pattern=f"^{ACCOUNT_ID_PATTERN}$",
        description="An account's external id or alias: 1-128 letters, digits, _ - . : @ + =.",
        examples=["user_2abc", "123", "org:acme"],
    ),
]

IdempotencyKey = Annotated[
    str,
    Field(pattern=f"^{KEY_PATTERN}$", description="Repeat it to repeat the request safely."),
]

TimeZoneName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$",
        description="An IANA time zone (the server's time zone database says which exist).",
        examples=["Europe/Berlin", "Asia/Tokyo", "UTC"],
    ),
]

_NUL = "must not contain the NUL character (\\u0000)"


def _without_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError(_NUL)
    return value


NoNul = AfterValidator(_without_nul)
"""Text never holds U+0000: PostgreSQL cannot store it, so neither database takes it."""

Text = Annotated[str, Field(max_length=MAX_TEXT_LENGTH), NoNul]


def _whole_number(value: object) -> object:
    """A JSON number without a fraction (``60.0``, ``6E+1``) as the int it is."""
    # Past 18 digits the bounds refuse it anyway; converting 1E+999999999 would take long.
    if isinstance(value, Decimal) and value.is_finite() and value.adjusted() < 19:
        whole = value.to_integral_value()
        if whole == value:
            return int(whole)
    return value


WholeNumber = BeforeValidator(_whole_number)
"""Put after an int's bounds (so the schema keeps them): ``60``, ``60.0`` and ``6E+1`` are
all 60, as JSON Schema counts integers; ``60.5`` and ``"60"`` stay refused."""

Seconds = Annotated[int, Field(gt=0, le=10 * 365 * 24 * 3600, description="Seconds."), WholeNumber]


def check_metadata(value: dict[str, Any]) -> dict[str, Any]:
    """Metadata within its limits (keys, lengths, no NUL, finite numbers), else ValueError."""
    if len(value) > MAX_METADATA_KEYS:
        raise ValueError(f"at most {MAX_METADATA_KEYS} keys")
    for key, item in value.items():
        if not key or len(key) > MAX_METADATA_KEY_LENGTH:
            raise ValueError(f"keys are 1-{MAX_METADATA_KEY_LENGTH} characters")
        if isinstance(item, str) and len(item) > MAX_TEXT_LENGTH:
            raise ValueError(f"string values are at most {MAX_TEXT_LENGTH} characters")
        if "\x00" in key or (isinstance(item, str) and "\x00" in item):
            raise ValueError(f"keys and values {_NUL}")
        if isinstance(item, Decimal) and not item.is_finite():
            raise ValueError("numbers must be finite")
    return value


# A metadata number is kept exactly and written back as a JSON number, both ways.
_MetadataNumber = Annotated[Decimal, WithJsonSchema({"type": "number"})]
Metadata = Annotated[
    dict[str, str | int | _MetadataNumber | bool | None],
    AfterValidator(check_metadata),
    Field(description="Your own flat key-value data, stored and returned as given."),
]
