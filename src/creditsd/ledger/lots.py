"""Grant lots: where each credit came from, which debits spent it, and when it expires.

Every credit into a customer account fills a lot, but for what pays back debt; every debit
spends lots in a fixed order (see :func:`posting._spend_order`), in the same transaction.
Together the live lots hold the account's balance when it is positive (more, while lots
past expiry still back open holds), and nothing when not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# Lower spends first: free credits that lapse go before credits that were paid for.
DEFAULT_PRIORITY = {"promotion": 10, "signup": 10, "subscription": 20, "adjustment": 40}
PURCHASE_PRIORITY = 50
_SOURCE_OF_KIND = {"purchase": "purchase", "grant": "promotion"}


@dataclass(frozen=True, slots=True)
class LotSpec:
    """The lot a credit fills: where it came from, when it lapses, and what it pays for."""

    source: str
    expires_at: datetime | None = None
    priority: int | None = None
    reference: str | None = None  # e.g. the payment or subscription period behind it

    @property
    def spend_priority(self) -> int:
        """The priority given, or the source's default."""
        if self.priority is not None:
            return self.priority
        return DEFAULT_PRIORITY.get(self.source, PURCHASE_PRIORITY)


def default_spec(kind: str) -> LotSpec:
    """The lot a credit of this transfer kind fills when its caller names none."""
    return LotSpec(_SOURCE_OF_KIND.get(kind, "adjustment"))
