"""Turning request values into what the ledger takes: minor units, idempotency keys."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import Header, Query
from pydantic import BaseModel

from creditsd.api.http import ExactJSONResponse
from creditsd.api.schemas.pricing import PricedRequest
from creditsd.kit.errors import InvalidAmount, InvalidRequest
from creditsd.kit.fields import IdempotencyKey
from creditsd.kit.money import AmountError, Money
from creditsd.kit.pagination import MAX_LIMIT
from creditsd.pricing.catalog import Use

IdempotencyHeader = Annotated[
    IdempotencyKey | None,
    Header(alias="Idempotency-Key", description="Repeat it to repeat the request safely."),
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"At most {MAX_LIMIT}.")]
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of the last page.")]


def units(money: Money, value: Decimal, field: str, *, allow_zero: bool = False) -> int:
    """Credits from a request as minor units; 422 ``invalid_amount`` naming the field."""
    try:
        return money.to_minor(value, allow_zero=allow_zero)
    except AmountError as exc:
        raise InvalidAmount(field, str(exc)) from None


def priced(money: Money, body: PricedRequest) -> tuple[int | None, Use | None]:
    """A priced request's amount in minor units, or its use for the catalog to price."""
    return (None if body.amount is None else units(money, body.amount, "amount")), body.use()


def pick_key(header: str | None, body: str | None) -> str | None:
    """The idempotency key from the header or the body; both must agree when both are sent."""
    if header is not None and body is not None and header != body:
        raise InvalidRequest("the Idempotency-Key header and idempotency_key field differ")
    return header if header is not None else body


def respond(model: BaseModel, status: int = 200, *, replayed: bool = False) -> ExactJSONResponse:
    """A JSON response; a replayed write says so in ``Idempotent-Replayed``."""
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return ExactJSONResponse(model, status_code=status, headers=headers)
