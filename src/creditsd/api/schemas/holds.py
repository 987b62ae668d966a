"""Request and response bodies of the hold endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from creditsd.api.schemas.ledger import TransferOut
from creditsd.api.schemas.pricing import PricedRequest
from creditsd.kit.fields import (
    AccountId,
    AmountOut,
    IdempotencyKey,
    Metadata,
    Seconds,
    StrictRequest,
    Text,
)
from creditsd.kit.money import Money
from creditsd.ledger.models import Hold


class HoldCreate(PricedRequest):
    """Reserve credits for a while: an ``amount``, or the estimate of a ``feature`` or ``usage``."""

    account_id: AccountId
    member: AccountId | None = Field(
        None, description="The wallet's member it is for: held and spent against its limits."
    )
    expires_in: Seconds | None = Field(None, description="Lifetime in seconds (default 900).")
    description: Text | None = None
    metadata: Metadata | None = None
    idempotency_key: IdempotencyKey | None = None


class HoldCapture(PricedRequest):
    """Charge the actual cost against a hold: an ``amount``, or a ``feature`` or ``usage``."""

    final: bool = Field(
        True,
        description="True closes the hold and gives back the rest; false takes a slice and "
        "keeps the rest held.",
    )
    description: Text | None = None
    metadata: Metadata | None = None
    idempotency_key: IdempotencyKey | None = None


class HoldExtend(StrictRequest):
    """Keep a hold alive (a heartbeat for long jobs)."""

    expires_in: Seconds | None = Field(None, description="New lifetime from now, in seconds.")
    idempotency_key: IdempotencyKey | None = None


class HoldRelease(StrictRequest):
    """Give back what a hold reserves."""

    idempotency_key: IdempotencyKey | None = None


class HoldOut(BaseModel):
    """A hold; ``held`` is what it still reserves."""

    id: str
    account_id: str
    status: str = Field(description="open, captured, released or expired.")
    amount: AmountOut
    captured: AmountOut
    held: AmountOut
    expires_at: datetime
    description: str | None
    metadata: Metadata | None
    idempotency_key: str
    created_at: datetime
    updated_at: datetime
    pricing: dict[str, Any] | None = Field(description="How a priced estimate was computed.")
    proxy_key_id: str | None = Field(
        description="The proxy key whose call the hold is for (None for every other)."
    )
    member: str | None = Field(description="The wallet's member it is for, if any.")

    @classmethod
    def of(cls, hold: Hold, money: Money, now: datetime) -> HoldOut:
        """Render a hold as it stands at ``now``."""
        return cls(
            id=hold.id,
            account_id=hold.account_id,
            status=hold.status_at(now),
            amount=money.to_decimal(hold.amount),
            captured=money.to_decimal(hold.captured),
            held=money.to_decimal(hold.held_at(now)),
            expires_at=hold.expires_at,
            description=hold.description,
            metadata=hold.metadata,
            idempotency_key=hold.idempotency_key,
            created_at=hold.created_at,
            updated_at=hold.updated_at,
            pricing=hold.pricing,
            proxy_key_id=hold.proxy_key_id,
            member=hold.member_id,
        )


class CaptureOut(BaseModel):
    """The hold after the capture and the transfer that charged it."""

    hold: HoldOut
    transfer: TransferOut
