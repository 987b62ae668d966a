"""Every query on holds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.ledger.models import Hold, Transfer
from creditsd.ledger.statements import HOLD_COLUMNS, TRANSFER_COLUMNS, hold_from_row
from creditsd.tables import holds, transfers

_H = holds.c
_T = transfers.c

_STORED = (*TRANSFER_COLUMNS, _T.fingerprint)
# The hold, row locked, beside the transfer stored under the capture's key (if any).
_LOCK_FOR_CAPTURE = (
    select(*HOLD_COLUMNS, *(column.label(f"stored_{column.key}") for column in _STORED))
    .select_from(
        holds.outerjoin(
            transfers,
            and_(_T.app == bindparam("app"), _T.idempotency_key == bindparam("key")),
        )
    )
    .where(_H.id == bindparam("hold_id"))
    .with_for_update(of=holds)
)
# Built once: the columns to set come with each call's parameters.
_SET_HOLD = update(holds).where(_H.id == bindparam("b_hold_id")).returning(*HOLD_COLUMNS)


async def get_hold(conn: AsyncConnection, hold_id: str, *, lock: bool = False) -> Hold | None:
    """One hold; ``lock`` takes its row lock so a capture, release or extend runs alone."""
    query = select(*HOLD_COLUMNS).where(_H.id == hold_id)
    if lock:
        query = query.with_for_update()
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


async def lock_for_capture(
    conn: AsyncConnection, hold_id: str, app: str, key: str
) -> tuple[Hold, tuple[Transfer, str] | None] | None:
    """A hold, row locked, and the transfer stored under the capture's ``(app, key)``
    with its fingerprint (None when the key is free), in one statement."""
    row = (
        await conn.execute(_LOCK_FOR_CAPTURE, {"hold_id": hold_id, "app": app, "key": key})
    ).first()
    if row is None:
        return None
    values = tuple(row)
    split = len(HOLD_COLUMNS)
    hold = Hold(**{column.key: value for column, value in zip(HOLD_COLUMNS, values, strict=False)})
    if values[split] is None:
        return hold, None
    stored = dict(zip((column.key for column in _STORED), values[split:], strict=True))
    print_ = str(stored.pop("fingerprint"))
    return hold, (Transfer(**stored, replayed=True), print_)


async def set_hold(conn: AsyncConnection, hold_id: str, values: dict[str, Any]) -> Hold:
    """Change a locked hold and return it as it is now."""
    row = (await conn.execute(_SET_HOLD, {"b_hold_id": hold_id, **values})).one()
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
