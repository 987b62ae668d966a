"""The gateway's bodies, field for field as seed 000 names them. Money is exact decimals."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from creditsd.kit.fields import NoNul, StrictRequest, WholeNumber, check_metadata, decimal_field

_NUMBER_SCHEMA = {
    "anyOf": [{"type": "number"}, {"type": "string", "pattern": r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$"}]
}
_LARGEST_DIGITS = 30


def _in_range(value: Decimal) -> Decimal:
    if value.adjusted() >= _LARGEST_DIGITS:  # no arithmetic: that could overflow
        raise ValueError("is out of range")
    return value


Exact = Annotated[
    Decimal,
    BeforeValidator(decimal_field),
    AfterValidator(_in_range),
    WithJsonSchema(_NUMBER_SCHEMA),
]
"""A finite number below 10³⁰, written exactly (NaN and Infinity are refused in any
spelling; a larger figure means nothing and would overflow the arithmetic)."""

DollarsOut = Annotated[
    Decimal, WithJsonSchema({"type": "number", "description": "US dollars, written exactly."})
]

UserId = Annotated[
    Annotated[int, WholeNumber]
    | Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+=-]{0,127}$")],
    Field(description="The gateway's user id: the account whose id or alias is this."),
]


def _zero_when_null(value: object) -> object:
    return 0 if value is None else value


Tokens = Annotated[int, Field(ge=0, le=10**12), WholeNumber]
NullableTokens = Annotated[Tokens, BeforeValidator(_zero_when_null)]


class BalanceSync(StrictRequest):
    """Set a user's balance: exactly one of points, USD, or ``balance`` (USD). Fields an
    app adds are accepted and kept on the sync transfer (as its metadata, when they fit
    metadata's limits)."""

    model_config = ConfigDict(extra="allow", strict=True)

    user_id: UserId
    balance_points: Exact | None = None
    balance_usd: Exact | None = None
    balance: Exact | None = Field(None, description="US dollars, like balance_usd.")

    def kept(self) -> dict[str, Any] | None:
        """The fields added to seed 000's, as the sync transfer keeps them (None: none, or
        beyond what metadata may hold)."""
        extra = self.model_extra or {}
        try:
            return check_metadata(extra) if extra else None
        except ValueError:
            return None

    @model_validator(mode="after")
    def _exactly_one_figure(self) -> BalanceSync:
        given = [self.balance_points, self.balance_usd, self.balance]
        if sum(value is not None for value in given) != 1:
            raise ValueError("give exactly one of balance_points, balance_usd, balance")
        return self


class SyncedBalance(BaseModel):
    """The balance after a sync, in US dollars (4 decimal places)."""

    user_id: int | str
    balance: DollarsOut


class BalanceOut(SyncedBalance):
    """sub2api's envelope around the synced balance, which seed 000's clients read at the
    top level."""

    code: Literal[0] = 0
    message: Literal["success"] = "success"
    data: SyncedBalance


class GatewayUsage(BaseModel):
    """One billed request, as the gateway posts it after billing succeeded: seed 000's
    payload as sub2api writes it today (``requestId``, fields tagged ``omitempty`` absent
    when zero, floats in exponent form). Fields added later are accepted and kept."""

    model_config = ConfigDict(extra="allow")

    requestId: str | None = Field(  # noqa: N815 - the sender's field name
        None,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="The event's id, repeated by the gateway's retries: its idempotency key.",
    )
    event: Literal["usage"]
    userId: UserId  # noqa: N815 - the seed's field name
    model: Annotated[str, Field(min_length=1, max_length=200), NoNul]
    inputTokens: NullableTokens = 0  # noqa: N815
    outputTokens: NullableTokens = 0  # noqa: N815
    cacheReadTokens: NullableTokens = 0  # noqa: N815
    cacheWriteTokens: NullableTokens = 0  # noqa: N815
    cost: Exact = Field(description="US dollars the gateway billed; 0 charges nothing.")
    totalCost: Exact  # noqa: N815
    rateMultiplier: Exact = Decimal(1)  # noqa: N815
    timestamp: Annotated[int, Field(ge=0, description="Milliseconds since the epoch."), WholeNumber]
    apiKey: str | None = Field(None, max_length=200)  # noqa: N815 - never kept
    sub2api_balance_usd: Exact | None = None

    @model_validator(mode="after")
    def _costs_not_negative(self) -> GatewayUsage:
        if self.cost < 0 or self.totalCost < 0:
            raise ValueError("cost and totalCost must not be negative")
        return self

    def kept(self) -> dict[str, Any]:
        """What is kept with the record: every field sent but the API key."""
        return self.model_dump(exclude={"apiKey"}, exclude_none=True)


class UsageReceipt(BaseModel):
    """What recording one usage post did, in the shape the gateway reads (``success``,
    ``timestamp``, ``balance_usd``) beside creditsd's own fields."""

    success: bool = Field(True, description="Always true on a 200: the usage is recorded.")
    timestamp: str = Field(description="When it was recorded (RFC 3339).")
    status: Literal["charged", "carried", "duplicate", "ignored"] = Field(
        description="charged: a transfer was made; carried: the cost was below one minor "
        "unit and was added to the account's carried fraction; duplicate: a repeat; "
        "ignored: cost 0."
    )
    transfer_id: str | None
    balance: DollarsOut | None = Field(description="The user's balance after, in US dollars.")
    balance_usd: DollarsOut | None = Field(description="The same, as the gateway names it.")
