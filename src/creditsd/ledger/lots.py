"""Grant lots: where each credit came from, which debits spent it, and when it expires.

Every credit into a customer account fills a lot; every debit spends lots in a fixed
order (see :func:`lot_repository.spend_order`), in the same transaction. Together the
live lots hold exactly the account's balance when it is positive, and nothing when not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd import ids
from creditsd.ledger import lot_repository as repo
from creditsd.ledger.models import LotPart, Transfer

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


async def fill(conn: AsyncConnection, transfer: Transfer, spec: LotSpec, now: datetime) -> LotPart:
    """Put a credit into a new lot.

    What a negative balance swallows (debt, an overdraft) is not in any lot, so the lot
    keeps only the part of the credit that lifted the balance above zero.
    """
    balance_after = transfer.credit_balance_after or 0
    lot_id = ids.new_id("lot")
    await repo.insert_lot(
        conn,
        {
            "id": lot_id,
            "account_id": transfer.credit_account_id,
            "source": spec.source,
            "amount": transfer.amount,
            "remaining": min(transfer.amount, max(balance_after, 0)),
            "priority": spec.spend_priority,
            "expires_at": spec.expires_at,
            "transfer_id": transfer.id,
            "reference": spec.reference,
            "created_at": now,
        },
    )
    if spec.expires_at is not None:
        await repo.note_expiry(conn, transfer.credit_account_id, spec.expires_at)
    return LotPart(lot_id, spec.source, transfer.amount, spec.expires_at)


async def spend(
    conn: AsyncConnection, transfer: Transfer, now: datetime, *, first: str | None = None
) -> list[LotPart]:
    """Spend a debit from the account's lots in order; what no lot covers goes below zero.

    Returns the parts oldest lot first.
    """
    if conn.dialect.name == "postgresql":
        return await repo.spend_in_one_statement(conn, transfer, now, first)
    left = transfer.amount
    parts: list[LotPart] = []
    for lot_id, source, remaining, expires_at in await repo.spend_order(
        conn, transfer.debit_account_id, now, first
    ):
        taken = min(left, int(remaining))
        await repo.take(conn, lot_id, taken)
        parts.append(LotPart(lot_id, source, taken, expires_at))
        left -= taken
        if not left:
            break
    if parts:
        await repo.insert_spends(conn, transfer.id, parts)
    return sorted(parts, key=lambda part: part.lot_id)  # as read back: oldest lot first
