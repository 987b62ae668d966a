"""A proxy key as creditsd keeps it: never the secret, only a hint of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ProxyKey:
    """A key for one account's calls to ``/openai/v1``; amounts in minor units."""

    id: str
    account_id: str
    member_id: str | None  # the account's member every call through it is for; None: none
    app: str  # the name of the app key that minted it; its holds and captures carry it
    name: str | None
    hint: str
    spend_limit: int | None  # None: only the account's balance limits it
    spent: int  # what its captures charged
    rate_limit: int | None  # requests a minute; None: [proxy] rate_limit_per_minute
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    held: int = 0  # what its open holds reserved when it was read

    def expired(self, now: datetime) -> bool:
        """Whether the key has stopped working because its expiry has come."""
        return self.expires_at is not None and self.expires_at <= now
