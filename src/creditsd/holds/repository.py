"""Every query on holds."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.holds.models import Hold
from creditsd.ledger.repository import AnyRow, insert_ignoring_duplicates
from creditsd.tables import holds

_H = holds.c
_COLUMNS = (
    _H.id,
    _H.account_id,
    _H.amount,
    _H.captured,
    _H.status,
    _H.expires_at,
    _H.app,
    _H.idempotency_key,
    _H.description,
    _H.metadata,
    _H.created_at,
    _H.updated_at,
    _H.pricing,
)


def _hold(row: AnyRow, *, replayed: bool = False) -> Hold:
    values = row._asdict()
    values.pop("fingerprint", None)
    return Hold(**values, replayed=replayed)


async def insert_hold(conn: AsyncConnection, hold: Hold, fingerprint: str) -> bool:
    """Insert a hold; False when its idempotency key is already taken."""
    insert = insert_ignoring_duplicates(conn)
    values = {column.key: getattr(hold, column.key) for column in _COLUMNS}
    result = await conn.execute(
        insert(holds)
        .values(**values, fingerprint=fingerprint)
        .on_conflict_do_nothing(index_elements=[_H.app, _H.idempotency_key])
        .returning(_H.id)
    )
    return result.first() is not None


async def find_hold_by_key(conn: AsyncConnection, app: str, key: str) -> tuple[Hold, str] | None:
    """The hold an app already opened under this idempotency key, and its fingerprint."""
    row = (
        await conn.execute(
            select(*_COLUMNS, _H.fingerprint).where(_H.app == app, _H.idempotency_key == key)
        )
    ).first()
    return None if row is None else (_hold(row, replayed=True), str(row.fingerprint))


async def get_hold(conn: AsyncConnection, hold_id: str, *, lock: bool = False) -> Hold | None:
    """One hold; ``lock`` takes its row lock so a capture, release or extend runs alone."""
    query = select(*_COLUMNS).where(_H.id == hold_id)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else _hold(row)


async def set_hold(conn: AsyncConnection, hold_id: str, values: dict[str, Any]) -> Hold:
    """Change a locked hold and return it as it is now."""
    row = (
        await conn.execute(
            update(holds).where(_H.id == hold_id).values(**values).returning(*_COLUMNS)
        )
    ).one()
    return _hold(row)
