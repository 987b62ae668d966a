"""Every query on proxy keys, and the sum of what their open holds reserve."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.proxy_keys.models import ProxyKey
from creditsd.tables import holds, proxy_keys

_P = proxy_keys.c
_H = holds.c
COLUMNS = (
    _P.id,
    _P.account_id,
    _P.member_id,
    _P.app,
    _P.name,
    _P.hint,
    _P.spend_limit,
    _P.spent,
    _P.rate_limit,
    _P.created_at,
    _P.expires_at,
    _P.revoked_at,
)


async def insert_key(conn: AsyncConnection, key: ProxyKey, digest: str) -> None:
    """Store a new key under the digest of its secret."""
    await conn.execute(
        insert(proxy_keys).values(
            **{column.key: getattr(key, column.key) for column in COLUMNS}, secret_hash=digest
        )
    )


async def get_key(conn: AsyncConnection, key_id: str) -> ProxyKey | None:
    """One key."""
    query = select(*COLUMNS).where(_P.id == key_id)
    row = (await conn.execute(query)).first()
    return None if row is None else ProxyKey(**row._mapping)


async def keys_page(
    conn: AsyncConnection, account_id: str | None, before: str | None, limit: int
) -> list[ProxyKey]:
    """Up to ``limit`` keys, newest first: of one account if given, older than ``before``."""
    query = select(*COLUMNS).order_by(_P.id.desc()).limit(limit)
    if account_id is not None:
        query = query.where(_P.account_id == account_id)
    if before is not None:
        query = query.where(_P.id < before)
    return [ProxyKey(**row._mapping) for row in await conn.execute(query)]


async def held(conn: AsyncConnection, key_ids: list[str], now: datetime) -> dict[str, int]:
    """What the open, unexpired holds of each key reserve (keys with none left out)."""
    if not key_ids:
        return {}
    rows = await conn.execute(
        select(_H.proxy_key_id, func.sum(_H.amount - _H.captured))
        .where(_H.proxy_key_id.in_(key_ids), _H.status == "open", _H.expires_at > now)
        .group_by(_H.proxy_key_id)
    )
    return {key_id: int(total) for key_id, total in rows}


async def revoke(conn: AsyncConnection, key_id: str, now: datetime) -> bool:
    """Mark a key revoked; False when it already was (or does not exist)."""
    row = (
        await conn.execute(
            update(proxy_keys)
            .where(_P.id == key_id, _P.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(_P.id)
        )
    ).first()
    return row is not None
