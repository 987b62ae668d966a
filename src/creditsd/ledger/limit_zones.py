"""A wallet's spend limits moved to another time zone: what a change of zone does to the
day, week and month windows in progress (see :func:`rezone`)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.ledger.limits import SpendLimit
from creditsd.ledger.statements.shared import LIMIT_FIELDS
from creditsd.tables import limit_windows, spend_limits

_L = spend_limits.c
_W = limit_windows.c


async def rezone(
    conn: AsyncConnection, account_id: str, before: ZoneInfo, after: ZoneInfo, now: datetime
) -> dict[str, int]:
    """Move a locked account's limits from the time zone ``before`` to ``after``; what
    each limit whose current window moved had spent in it, by limit id.

    A day, week or month limit whose window starts elsewhere in the new zone gets a
    window that starts now and ends at the new zone's next boundary, carrying what its
    window had spent (and the warnings it sent) so far: nothing counted is lost, nothing
    counted twice, and no window ever lets more than the limit through. (Its ``since``
    moves to now, as a changed limit's does.) A limit whose window starts at the same
    instant in both zones keeps it; lifetime limits have no zone.
    """
    rows = await conn.execute(
        select(*(_L[name] for name in LIMIT_FIELDS)).where(
            _L.account_id == account_id, _L.period != "lifetime"
        )
    )
    starts: dict[str, tuple[datetime, datetime]] = {}  # each moved limit's (old, new) start
    for row in rows:
        limit = SpendLimit(**row._asdict())
        start = limit.window(before, now).start
        if limit.window(after, now).start != start:
            starts[limit.id] = (start, max(now, limit.since))
    if not starts:
        return {}
    found = await conn.execute(
        select(_W.limit_id, _W.spent, _W.warned).where(
            tuple_(_W.account_id, _W.limit_id, _W.window_start).in_(
                [(account_id, limit_id, start) for limit_id, (start, _) in starts.items()]
            )
        )
    )
    counted = {limit_id: (int(spent), int(warned)) for limit_id, spent, warned in found}
    for limit_id, (_, restarted) in starts.items():
        await conn.execute(
            update(spend_limits)
            .where(_L.account_id == account_id, _L.id == limit_id)
            .values(since=restarted)
        )
    carried = [
        {
            "account_id": account_id,
            "limit_id": limit_id,
            "window_start": starts[limit_id][1],
            "spent": spent,
            "warned": warned,
        }
        for limit_id, (spent, warned) in counted.items()
        if starts[limit_id][0] != starts[limit_id][1]  # else its window is the one kept
    ]
    if carried:
        await conn.execute(limit_windows.insert().values(carried))
    return {limit_id: counted.get(limit_id, (0, 0))[0] for limit_id in starts}
