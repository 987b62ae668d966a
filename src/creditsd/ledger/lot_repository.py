"""Reading grant lots (the posting engine fills and spends them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.ledger import statements
from creditsd.ledger.models import Expiry, Lot, LotPart
from creditsd.tables import accounts, lot_spends, lots, transfers

_L = lots.c
_S = lot_spends.c
_A = accounts.c
_LIVE = statements.LIVE


async def parts_of(conn: AsyncConnection, transfer_ids: list[str]) -> dict[str, list[LotPart]]:
    """Per transfer, the lots it spent from or the lot it filled."""
    return await statements.of(conn).lot_parts(conn, transfer_ids)


async def by_source(conn: AsyncConnection, account_ids: list[str]) -> dict[str, dict[str, int]]:
    """Per account, what its live lots hold, by source."""
    rows = await conn.execute(
        select(_L.account_id, _L.source, func.sum(_L.remaining))
        .where(_L.account_id.in_(account_ids), _LIVE)
        .group_by(_L.account_id, _L.source)
    )
    found: dict[str, dict[str, int]] = {}
    for account_id, source, total in rows:
        found.setdefault(account_id, {})[source] = int(total)
    return found


async def live_lots(conn: AsyncConnection, account_id: str, limit: int) -> list[Lot]:
    """Up to ``limit`` of an account's lots with credits left, in the order debits spend
    them (by priority, then soonest expiry, none last)."""
    query = (
        select(_L.id, _L.source, _L.amount, _L.remaining, _L.priority, _L.expires_at, _L.created_at)
        .where(_L.account_id == account_id, _LIVE)
        .order_by(_L.priority, _L.expires_at.is_(None), _L.expires_at, _L.id)
        .limit(limit)
    )
    return [Lot(*row) for row in await conn.execute(query)]


async def expiring(
    conn: AsyncConnection, account_id: str, now: datetime, limit: int
) -> list[Expiry]:
    """An account's live credits that lapse after ``now``, soonest first, summed per moment
    and source (read through the spend-order index)."""
    query = (
        select(_L.expires_at, _L.source, func.sum(_L.remaining))
        .where(_L.account_id == account_id, _LIVE, _L.expires_at > now)
        .group_by(_L.expires_at, _L.source)
        .order_by(_L.expires_at, _L.source)
        .limit(limit)
    )
    return [
        Expiry(moment, source, int(total)) for moment, source, total in await conn.execute(query)
    ]


async def due_accounts(conn: AsyncConnection, now: datetime, limit: int) -> list[str]:
    """Up to ``limit`` accounts that have live lots past their expiry."""
    query = (
        select(_L.account_id)
        .where(_LIVE, _L.expires_at <= now)
        .group_by(_L.account_id)
        .order_by(func.min(_L.expires_at))
        .limit(limit)
    )
    return list((await conn.execute(query)).scalars())


async def find_by_reference(conn: AsyncConnection, reference: str) -> Any | None:
    """The lot a payment or period filled, by its reference."""
    return (
        await conn.execute(select(lots).where(_L.reference == reference).order_by(_L.id).limit(1))
    ).first()


async def postpone(
    conn: AsyncConnection, transfer_id: str, expires_at: datetime, now: datetime
) -> bool:
    """Let the live lot a credit filled lapse at ``expires_at`` instead, if that is later
    and the lot has not lapsed yet; whether it moved."""
    moved = await conn.execute(
        update(lots)
        .where(
            _L.transfer_id == transfer_id,
            _LIVE,
            _L.expires_at > now,
            _L.expires_at < expires_at,
        )
        .values(expires_at=expires_at)
    )
    return bool(moved.rowcount)


async def remainders(conn: AsyncConnection, account_id: str) -> dict[str, int]:
    """What is left in each of an account's lots, spent ones included."""
    rows = await conn.execute(select(_L.id, _L.remaining).where(_L.account_id == account_id))
    return {lot_id: int(remaining) for lot_id, remaining in rows}


async def rebuild_remainders(conn: AsyncConnection, account_id: str) -> None:
    """Set each lot's remainder to what its credit put in less what debits spent of it.

    A credit fills its lot with the part that lifted the balance above zero (the
    transfer's balance after, at most its amount); lots without a transfer (balances
    from before lots) started full.
    """
    spent = select(func.coalesce(func.sum(_S.amount), 0)).where(_S.lot_id == _L.id)
    after = select(transfers.c.credit_balance_after).where(transfers.c.id == _L.transfer_id)
    put_in = case(
        (_L.transfer_id.is_(None), _L.amount),
        else_=func.coalesce(
            case(
                (after.scalar_subquery() < 0, 0),
                (after.scalar_subquery() > _L.amount, _L.amount),
                else_=after.scalar_subquery(),
            ),
            _L.amount,
        ),
    )
    await conn.execute(
        update(lots)
        .where(_L.account_id == account_id)
        .values(remaining=put_in - spent.scalar_subquery())
    )


async def soonest_expiry(conn: AsyncConnection, account_id: str) -> datetime | None:
    """The soonest expiry among an account's live lots."""
    query = select(func.min(_L.expires_at)).where(_L.account_id == account_id, _LIVE)
    soonest: datetime | None = (await conn.execute(query)).scalar_one_or_none()
    return soonest
