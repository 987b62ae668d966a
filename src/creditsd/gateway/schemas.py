"""The gateway's bodies, field for field as seed 000 names them. Money is exact decimals."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    WithJsonSchema,
    model_validator,
)

from creditsd.fields import NoNul, StrictRequest, WholeNumber, decimal_field

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
Tokens = Annotated[int, Field(ge=0, le=10**12), WholeNumber]


class BalanceSync(StrictRequest):
    """Set a user's balance: exactly one of points, USD, or ``balance`` (USD)."""

    user_id: UserId
    balance_points: Exact | None = None
    balance_usd: Exact | None = None
    balance: Exact | None = Field(None, description="US dollars, like balance_usd.")

    @model_validator(mode="after")
    def _exactly_one_figure(self) -> BalanceSync:
        given = [self.balance_points, self.balance_usd, self.balance]
        if sum(value is not None for value in given) != 1:
            raise ValueError("give exactly one of balance_points, balance_usd, balance")
        return self


class BalanceOut(BaseModel):
    """The balance after a sync, in US dollars (4 decimal places)."""

    user_id: int | str
    balance: DollarsOut


class GatewayUsage(StrictRequest):
    """One billed request, as the gateway posts it after billing succeeded."""

    event: Literal["usage"]
    userId: UserId  # noqa: N815 - the seed's field name
    model: Annotated[str, Field(min_length=1, max_length=200), NoNul]
    inputTokens: Tokens = 0  # noqa: N815
    outputTokens: Tokens = 0  # noqa: N815
    cacheReadTokens: Tokens = 0  # noqa: N815
    cacheWriteTokens: Tokens = 0  # noqa: N815
    cost: Exact = Field(description="US dollars the gateway billed; 0 charges nothing.")
    totalCost: Exact  # noqa: N815
    rateMultiplier: Exact = Decimal(1)  # noqa: N815
    timestamp: Annotated[int, Field(ge=0, description="Milliseconds since the epoch."), WholeNumber]
    apiKey: str | None = Field(None, max_length=200)  # noqa: N815 - empty from creditsd
    sub2api_balance_usd: Exact | None = None

    @model_validator(mode="after")
    def _costs_not_negative(self) -> GatewayUsage:
        if self.cost < 0 or self.totalCost < 0:
            raise ValueError("cost and totalCost must not be negative")
        return self


class UsageReceipt(BaseModel):
    """What recording one usage post did."""

    status: Literal["charged", "duplicate", "ignored"]
    transfer_id: str | None
    balance: DollarsOut | None = Field(description="The user's balance after, in US dollars.")
