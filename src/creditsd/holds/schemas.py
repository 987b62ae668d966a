"""Request and response bodies of the hold endpoints."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from creditsd.api.fields import (
    AccountId,
    AmountIn,
    AmountOut,
    IdempotencyKey,
    Metadata,
    Seconds,
    Text,
)
from creditsd.holds.models import Hold
from creditsd.ledger.schemas import TransferOut
from creditsd.money import Money


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class HoldCreate(_Request):
    """Reserve credits for a while."""

    account_id: AccountId
    amount: AmountIn
    expires_in: Seconds | None = Field(None, description="Lifetime in seconds (default 900).")
    description: Text | None = None
    metadata: Metadata | None = None
    idempotency_key: IdempotencyKey | None = None


class HoldCapture(_Request):
    """Charge against a hold."""

    amount: AmountIn
    final: bool = Field(
        True,
        description="True closes the hold and gives back the rest; false takes a slice and "
        "keeps the rest held.",
    )
    description: Text | None = None
    metadata: Metadata | None = None
    idempotency_key: IdempotencyKey | None = None


class HoldExtend(_Request):
    """Keep a hold alive (a heartbeat for long jobs)."""

    expires_in: Seconds | None = Field(None, description="New lifetime from now, in seconds.")
    idempotency_key: IdempotencyKey | None = None


class HoldRelease(_Request):
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
        )


class CaptureOut(BaseModel):
    """The hold after the capture and the transfer that charged it."""

    hold: HoldOut
    transfer: TransferOut
