"""A hold as the ledger hands it back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from creditsd.ledger.models import Metadata


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation of ``amount`` on an account until ``expires_at``."""

    id: str
    account_id: str
    amount: int
    captured: int
    status: str
    expires_at: datetime
    app: str
    idempotency_key: str
    description: str | None
    metadata: Metadata | None
    created_at: datetime
    updated_at: datetime
    pricing: Metadata | None = None  # how a priced estimate was computed
    replayed: bool = field(default=False, compare=False)

    def status_at(self, now: datetime) -> str:
        """The status as callers see it: an open hold past its expiry is expired already."""
        if self.status == "open" and self.expires_at <= now:
            return "expired"
        return self.status

    def held_at(self, now: datetime) -> int:
        """What the hold still reserves at ``now``."""
        return self.amount - self.captured if self.status_at(now) == "open" else 0
