"""Every query on holds."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.ledger.models import Hold
from creditsd.ledger.statements import HOLD_COLUMNS, hold_from_row
from creditsd.tables import holds

_H = holds.c


async def get_hold(conn: AsyncConnection, hold_id: str) -> Hold | None:
    """One hold."""
    query = select(*HOLD_COLUMNS).where(_H.id == hold_id)
    row = (await conn.execute(query)).first()
    return None if row is None else hold_from_row(row)


async def open_holds_of(conn: AsyncConnection, account_id: str, limit: int) -> list[Hold]:
    """Up to ``limit`` of an account's open holds, soonest to expire first."""
    query = (
        select(*HOLD_COLUMNS)
        .where(_H.account_id == account_id, _H.status == "open")
        .order_by(_H.expires_at, _H.id)
        .limit(limit)
    )
    return [hold_from_row(row) for row in await conn.execute(query)]


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
