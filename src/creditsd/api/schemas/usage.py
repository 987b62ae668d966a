"""The usage batch: events in, one result per event out, in the same order."""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import AwareDatetime, BaseModel, Field, model_validator

from creditsd.api.schemas.pricing import PricedUse
from creditsd.kit.fields import AccountId, Metadata, StrictRequest

MAX_EVENTS = 1000
EVENT_ID_PATTERN = r"[\x21-\x7e]{1,200}"


class UsageEventIn(PricedUse):
    """Something billable that happened; ``id`` makes it count once (per app)."""

    id: str = Field(pattern=f"^{EVENT_ID_PATTERN}$", description="Your unique id for the event.")
    account_id: AccountId
    member: AccountId | None = Field(
        None, description="The wallet's member it is for: counted against its limits."
    )
    timestamp: Annotated[AwareDatetime | None, Field(strict=False)] = Field(
        None, description="When it happened (RFC 3339 with a zone); default: when received."
    )
    metadata: Metadata | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if len(self._given()) != 1:
            raise ValueError("give exactly one of feature or usage")
        return self


class UsageBatch(StrictRequest):
    """Up to 1,000 events. Each is checked on its own: one bad event fails only itself."""

    events: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_EVENTS)


class UsageResultOut(BaseModel):
    """One event's outcome: ``charged``, ``duplicate``, ``insufficient_credits``,
    ``limit_reached``, ``invalid``."""

    id: str | None
    status: str
    transfer_id: str | None
    error: dict[str, Any] | None


class UsageBatchOut(BaseModel):
    """One result per event, in input order."""

    results: list[UsageResultOut]
