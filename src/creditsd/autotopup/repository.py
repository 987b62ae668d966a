"""Every query about auto top-up rules and their attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.tables import accounts, auto_topup_attempts, auto_topups

_R = auto_topups.c
_A = auto_topup_attempts.c
COUNTED = ("queued", "processing", "succeeded")  # what the monthly cap counts


async def get_rule(conn: AsyncConnection, account_id: str, *, lock: bool = False) -> Any:
    """An account's auto top-up row; ``lock`` holds it until the transaction ends."""
    query = select(auto_topups).where(_R.account_id == account_id)
    if lock:
        query = query.with_for_update()
    return (await conn.execute(query)).first()


async def insert_rule(conn: AsyncConnection, values: dict[str, Any]) -> None:
    """Store an account's first rule."""
    await conn.execute(insert(auto_topups).values(**values))


async def update_rule(conn: AsyncConnection, account_id: str, values: dict[str, Any]) -> None:
    """Change an account's rule or state."""
    await conn.execute(update(auto_topups).where(_R.account_id == account_id).values(**values))


async def arm(conn: AsyncConnection, account_id: str) -> None:
    """Copy the rule's threshold to ``accounts.auto_topup_below`` while it can start an
    attempt (on, a card saved, active, none in flight), NULL otherwise: the posting engine
    reads it with the account, so a write that can start none costs nothing more. Called
    in every transaction that changes one of those."""
    row = await get_rule(conn, account_id)
    armed = row.enabled and row.payment_method_id is not None and row.state == "active"
    if armed:
        in_flight = select(_A.id).where(_A.in_flight == account_id).limit(1)
        armed = (await conn.execute(in_flight)).first() is None
    below = row.threshold if armed else None
    query = update(accounts).where(accounts.c.id == account_id)
    await conn.execute(query.values(auto_topup_below=below))


async def latest_attempt(conn: AsyncConnection, account_id: str) -> Any:
    """The account's most recent attempt."""
    query = (
        select(auto_topup_attempts)
        .where(_A.account_id == account_id)
        .order_by(_A.created_at.desc(), _A.id.desc())
        .limit(1)
    )
    return (await conn.execute(query)).first()


async def bought_since(conn: AsyncConnection, account_id: str, since: datetime) -> int:
    """Credits the account's attempts since ``since`` bought or are buying."""
    query = select(func.coalesce(func.sum(_A.credits), 0)).where(
        _A.account_id == account_id, _A.created_at >= since, _A.status.in_(COUNTED)
    )
    return int((await conn.execute(query)).scalar_one())
