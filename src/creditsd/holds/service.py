"""The hold lifecycle: open (a pending transfer) → capture (in slices or once) | release
| extend | expire.

Each step is a command of the posting engine (:mod:`creditsd.ledger.commands`), applied
under its account's lock in a batch of its own or in a group commit's; what is here is
what the commands leave to their service: the longest a hold may live, reading holds,
and the sweep of expired ones.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.holds import repository as repo
from creditsd.holds.errors import ExpiryTooLong
from creditsd.ledger import posting
from creditsd.ledger import service as ledger_service
from creditsd.ledger.errors import HoldNotFound
from creditsd.ledger.models import Hold


def check_expiry(expires_in: int, maximum: int) -> int:
    """``expires_in``, a hold's lifetime in seconds, refused past ``maximum``."""
    if expires_in > maximum:
        raise ExpiryTooLong(maximum)
    return expires_in


async def get_hold(conn: AsyncConnection, hold_id: str) -> Hold:
    """One hold by id."""
    hold = await repo.get_hold(conn, hold_id)
    if hold is None:
        raise HoldNotFound(hold_id)
    return hold


async def expire_due(
    conn: AsyncConnection, now: datetime, *, policy: ledger_service.Policy, limit: int = 500
) -> int:
    """Close the expired holds (and lapse the due lots) of up to ``limit`` accounts; how
    many holds it closed."""
    owners = await repo.accounts_with_expired_holds(conn, now, limit)
    swept = await posting.sweep(conn, owners, policy, now)
    return len({hold.hold_id for account in swept for hold in account.expired_holds})
