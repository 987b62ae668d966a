"""Every query about grant lots: filling, spending in order, expiring, and reading them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.ledger.models import LotPart, Transfer
from creditsd.prepared import Prepared, Raw
from creditsd.tables import accounts, lot_spends, lots

_L = lots.c
_S = lot_spends.c
_A = accounts.c
# Written out, not bound: only a literal lets the planner use the partial indexes on live lots.
_LIVE = _L.remaining > literal_column("0")


async def insert_lot(conn: AsyncConnection, values: dict[str, Any]) -> None:
    """Add a lot (the caller has the account's row locked)."""
    await conn.execute(insert(lots).values(**values))


async def note_expiry(conn: AsyncConnection, account_id: str, expires_at: datetime) -> None:
    """Make the account's soonest lot expiry no later than ``expires_at``."""
    await conn.execute(
        update(accounts)
        .where(
            _A.id == account_id,
            or_(_A.lots_expire_at.is_(None), _A.lots_expire_at > expires_at),
        )
        .values(lots_expire_at=expires_at)
    )


async def refresh_expiry(conn: AsyncConnection, account_id: str, now: datetime) -> None:
    """Set the account's soonest expiry to that of its live lots not yet due.

    Due lots an open hold still keeps from expiring are left out: the hold's capture
    spends them first, and the sweeper takes the rest once the hold settles.
    """
    soonest = (
        select(func.min(_L.expires_at))
        .where(_L.account_id == account_id, _LIVE, _L.expires_at > now)
        .scalar_subquery()
    )
    await conn.execute(update(accounts).where(_A.id == account_id).values(lots_expire_at=soonest))


def _spend_order(now: Any, first: Any) -> list[Any]:
    """``first`` (a lot a refund or expiry targets), then lots already due, then by
    priority, soonest expiry (none last) and age."""
    return [
        case((_L.id == first, 0), else_=1),
        case((and_(_L.expires_at.is_not(None), _L.expires_at <= now), 0), else_=1),
        _L.priority,
        _L.expires_at.asc().nulls_last(),
        _L.id,
    ]


async def spend_order(
    conn: AsyncConnection, account_id: str, now: datetime, first: str | None
) -> list[Any]:
    """The account's live lots in the order debits spend them."""
    query = (
        select(_L.id, _L.source, _L.remaining, _L.expires_at)
        .where(_L.account_id == account_id, _LIVE)
        .order_by(*_spend_order(now, first))
    )
    return list(await conn.execute(query))


def _spend_in_one_statement() -> Any:
    """PostgreSQL: pick the lots a debit spends, lower them and record the spends at once.

    Run after the debit's account update, which holds the account's row lock: every
    change to an account's lots takes that lock first, so this statement's snapshot
    sees them all. (Parameters are prefixed: ones named like a column of ``lots`` would
    join the UPDATE's SET.)
    """
    amount = bindparam("spend_amount", type_=BigInteger)
    # What the lots before this one hold (the order ends in the unique id: no ties).
    before = (
        func.sum(_L.remaining).over(
            order_by=_spend_order(bindparam("spend_now"), bindparam("spend_first"))
        )
        - _L.remaining
    )
    ordered = (
        select(_L.id, _L.source, _L.remaining, _L.expires_at, before.label("before"))
        .where(_L.account_id == bindparam("spend_account_id"), _LIVE)
        .cte("ordered")
    )
    taken = (
        select(
            ordered.c.id,
            ordered.c.source,
            ordered.c.expires_at,
            cast(func.least(ordered.c.remaining, amount - ordered.c.before), BigInteger).label(
                "amount"
            ),
        )
        .where(ordered.c.before < amount)
        .cte("taken")
    )
    lowered = (
        update(lots)
        .where(_L.id == taken.c.id)
        .values(remaining=_L.remaining - taken.c.amount)
        .returning(_L.id)
        .cte("lowered")
    )
    recorded = (
        insert(lot_spends)
        .from_select(
            ["transfer_id", "lot_id", "amount"],
            select(bindparam("spend_transfer_id", type_=String), taken.c.id, taken.c.amount),
        )
        .returning(lot_spends.c.lot_id)
        .cte("recorded")
    )
    return (
        select(taken.c.id, taken.c.source, taken.c.amount, taken.c.expires_at)
        .add_cte(lowered, recorded)
        .order_by(taken.c.id)
    )


_SPEND_IN_ONE_STATEMENT = _spend_in_one_statement()
_SPEND_IN_ONE_STATEMENT_RAW = Prepared(_SPEND_IN_ONE_STATEMENT)


def _spend_values(transfer: Transfer, now: datetime, first: str | None) -> dict[str, Any]:
    return {
        "spend_account_id": transfer.debit_account_id,
        "spend_transfer_id": transfer.id,
        "spend_amount": transfer.amount,
        "spend_now": now,
        "spend_first": first,
    }


def _parts(rows: Any) -> list[LotPart]:
    return [LotPart(lot_id, source, int(taken), expires) for lot_id, source, taken, expires in rows]


async def spend_in_one_statement(
    conn: AsyncConnection, transfer: Transfer, now: datetime, first: str | None
) -> list[LotPart]:
    """What :func:`lots.spend` does, in one round trip (PostgreSQL)."""
    return _parts(await conn.execute(_SPEND_IN_ONE_STATEMENT, _spend_values(transfer, now, first)))


async def spend_on_raw(raw: Raw, transfer: Transfer, now: datetime) -> list[LotPart]:
    """:func:`spend_in_one_statement` on asyncpg itself."""
    return _parts(await _SPEND_IN_ONE_STATEMENT_RAW.fetch(raw, _spend_values(transfer, now, None)))


async def take(conn: AsyncConnection, lot_id: str, amount: int) -> None:
    """Lower a lot's remainder by ``amount`` (the caller has checked it is there)."""
    await conn.execute(update(lots).where(_L.id == lot_id).values(remaining=_L.remaining - amount))


async def insert_spends(conn: AsyncConnection, transfer_id: str, parts: list[LotPart]) -> None:
    """Record which lots paid for a debit."""
    await conn.execute(
        insert(lot_spends),
        [
            {"transfer_id": transfer_id, "lot_id": part.lot_id, "amount": part.amount}
            for part in parts
        ],
    )


async def parts_of(conn: AsyncConnection, transfer_ids: list[str]) -> dict[str, list[LotPart]]:
    """Per transfer, the lots it spent from or the lot it filled."""
    if not transfer_ids:
        return {}
    spent = (
        select(_S.transfer_id, _S.lot_id, _L.source, _S.amount, _L.expires_at)
        .join(lots, _L.id == _S.lot_id)
        .where(_S.transfer_id.in_(transfer_ids))
    )
    filled = select(_L.transfer_id, _L.id, _L.source, _L.amount, _L.expires_at).where(
        _L.transfer_id.in_(transfer_ids)
    )
    found: dict[str, list[LotPart]] = {}
    for query in (spent, filled):
        for transfer_id, lot_id, source, amount, expires_at in await conn.execute(query):
            found.setdefault(transfer_id, []).append(LotPart(lot_id, source, amount, expires_at))
    for parts in found.values():
        parts.sort(key=lambda part: part.lot_id)
    return found


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


async def due(conn: AsyncConnection, now: datetime, account_id: str) -> list[Any]:
    """An account's live lots past their expiry: ``(id, remaining)``, soonest first."""
    query = select(_L.id, _L.remaining).where(
        _L.account_id == account_id, _LIVE, _L.expires_at <= now
    )
    return list(await conn.execute(query.order_by(_L.expires_at, _L.id)))


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
