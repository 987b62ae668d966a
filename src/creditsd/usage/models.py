"""Usage events and what became of each."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from creditsd.kit.errors import CreditsError
from creditsd.ledger.models import Metadata, Transfer
from creditsd.pricing.catalog import Use

Status = Literal["charged", "duplicate", "insufficient_credits", "limit_reached", "invalid"]


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """Something billable that happened: ``id`` makes it count once."""

    id: str
    account_id: str
    use: Use
    occurred_at: datetime | None = None
    metadata: Metadata | None = None
    member: str | None = None  # the wallet's member it is for


@dataclass(frozen=True, slots=True)
class UsageResult:
    """One event's outcome: a transfer when charged (or charged before), else the error."""

    id: str
    status: Status
    transfer: Transfer | None = None
    error: CreditsError | None = None
