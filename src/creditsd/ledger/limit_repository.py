"""What a batch reads and writes of its accounts' members and spend limits (see
:mod:`creditsd.ledger.limits`). Only accounts with spend controls are read."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.kit.rows import insert_or_skip
from creditsd.ledger.limits import AccountLimits, SpendLimit, Tally
from creditsd.ledger.windows import Window, window_of
from creditsd.tables import holds, limit_windows, members, spend_limits

_M = members.c
_L = spend_limits.c
_W = limit_windows.c
_H = holds.c


async def _members(
    conn: AsyncConnection, account_ids: list[str], named: Collection[str]
) -> set[tuple[str, str]]:
    """Which of the ``named`` members each account has, as ``(account, member)``."""
    if not named:
        return set()
    rows = await conn.execute(
        select(_M.account_id, _M.member_id).where(
            _M.account_id.in_(account_ids), _M.member_id.in_(sorted(named))
        )
    )
    return {(account_id, member_id) for account_id, member_id in rows}


async def _spent(
    conn: AsyncConnection, limits: list[SpendLimit], windows: dict[str, Window]
) -> dict[str, int]:
    """What each limit's current window has spent, by limit id."""
    keys = [(limit.account_id, limit.id, windows[limit.id].start) for limit in limits]
    rows = await conn.execute(
        select(_W.limit_id, _W.spent).where(
            tuple_(_W.account_id, _W.limit_id, _W.window_start).in_(keys)
        )
    )
    return {limit_id: int(amount) for limit_id, amount in rows}


async def _held(
    conn: AsyncConnection, account_ids: list[str], now: datetime
) -> list[tuple[str, dict[str, str | None], int]]:
    """What open holds reserve, by account and by who they are for."""
    rows = await conn.execute(
        select(
            _H.account_id, _H.member_id, _H.app, _H.proxy_key_id, func.sum(_H.amount - _H.captured)
        )
        .where(_H.account_id.in_(account_ids), _H.status == "open", _H.expires_at > now)
        .group_by(_H.account_id, _H.member_id, _H.app, _H.proxy_key_id)
    )
    return [(row[0], {"member": row[1], "app": row[2], "key": row[3]}, int(row[4])) for row in rows]


async def read(
    conn: AsyncConnection,
    zones: dict[str, str | None],
    named: Collection[str],
    now: datetime,
) -> dict[str, AccountLimits]:
    """The members (of those ``named``) and limits of the accounts in ``zones`` (each
    with its time zone), each limit with its current window's spend and what the
    subject's open holds reserve. The caller holds the accounts' locks and has closed
    their expired holds."""
    account_ids = sorted(zones)
    members_of = await _members(conn, account_ids, named)
    found = {
        account_id: AccountLimits(
            account_id, {member for owner, member in members_of if owner == account_id}
        )
        for account_id in account_ids
    }
    rows = await conn.execute(
        select(
            _L.id, _L.account_id, _L.scope, _L.subject, _L.period, _L.amount, _L.mode, _L.since
        ).where(_L.account_id.in_(account_ids))
    )
    limits = [SpendLimit(**row._asdict()) for row in rows]
    if not limits:
        return found
    windows = {
        limit.id: window_of(
            limit.period, now, ZoneInfo(zones[limit.account_id] or "UTC"), limit.since
        )
        for limit in limits
    }
    spent = await _spent(conn, limits, windows)
    groups = await _held(conn, account_ids, now)
    for limit in limits:
        reserved = sum(
            amount
            for account_id, subjects, amount in groups
            if account_id == limit.account_id
            and (limit.scope == "wallet" or subjects[limit.scope] == limit.subject)
        )
        used = spent.get(limit.id, 0)
        found[limit.account_id].tallies.append(
            Tally(limit, windows[limit.id], spent=used, held=reserved, read=used)
        )
    return found


async def count(conn: AsyncConnection, tallies: Iterable[Tally]) -> None:
    """Add what a batch spent to each limit's window (a new window starts its counter)."""
    rows = [
        {
            "account_id": tally.limit.account_id,
            "limit_id": tally.limit.id,
            "window_start": tally.window.start,
            "spent": tally.spent - tally.read,
        }
        for tally in tallies
    ]
    if not rows:
        return
    insert = insert_or_skip(conn)(limit_windows).values(rows)
    await conn.execute(
        insert.on_conflict_do_update(
            index_elements=[_W.account_id, _W.limit_id, _W.window_start],
            set_={"spent": _W.spent + insert.excluded.spent},
        )
    )
