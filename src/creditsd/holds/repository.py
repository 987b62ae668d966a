"""Every query on holds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.ledger.models import Hold
from creditsd.ledger.statements import HOLD_COLUMNS, hold_from_row
from creditsd.tables import holds

_H = holds.c


async def get_hold(conn: AsyncConnection, hold_id: str, *, lock: bool = False) -> Hold | None:
    """One hold; ``lock`` takes its row lock so a capture, release or extend runs alone."""
    query = select(*HOLD_COLUMNS).where(_H.id == hold_id)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else hold_from_row(row)


async def set_hold(conn: AsyncConnection, hold_id: str, values: dict[str, Any]) -> Hold:
    """Change a locked hold and return it as it is now."""
    row = (
        await conn.execute(
            update(holds).where(_H.id == hold_id).values(**values).returning(*HOLD_COLUMNS)
        )
    ).one()
    return hold_from_row(row)


async def accounts_with_expired_holds(
    conn: AsyncConnection, now: datetime, limit: int
) -> list[str]:
    """Up to ``limit`` accounts with an open hold past its expiry, soonest first."""
    query = (
        select(_H.account_id)
        .where(_H.status == "open", _H.expires_at <= now)
        .group_by(_H.account_id)
        .order_by(func.min(_H.expires_at))
        .limit(limit)
    )
    return list((await conn.execute(query)).scalars())
