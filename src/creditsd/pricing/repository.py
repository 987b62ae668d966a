"""Every query on published catalog versions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.kit.rows import AnyRow, insert_or_skip
from creditsd.tables import price_catalogs

_P = price_catalogs.c


async def latest(conn: AsyncConnection) -> AnyRow | None:
    """The newest version's number and digest, or None before the first is published."""
    query = select(_P.version, _P.digest).order_by(_P.version.desc()).limit(1)
    return (await conn.execute(query)).first()


async def versions(conn: AsyncConnection, before: int | None, limit: int) -> list[AnyRow]:
    """Up to ``limit`` published versions below ``before``, newest first (no contents)."""
    query = (
        select(_P.version, _P.digest, _P.published_by, _P.created_at)
        .order_by(_P.version.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(_P.version < before)
    return list(await conn.execute(query))


async def get_version(conn: AsyncConnection, version: int) -> AnyRow | None:
    """One published version in full."""
    return (await conn.execute(select(price_catalogs).where(_P.version == version))).first()


async def insert_version(
    conn: AsyncConnection,
    version: int,
    digest: str,
    catalog: dict[str, Any],
    *,
    published_by: str,
    now: datetime,
) -> bool:
    """Publish ``version``; False when another publisher took that number first."""
    insert = insert_or_skip(conn)
    result = await conn.execute(
        insert(price_catalogs)
        .values(
            version=version,
            digest=digest,
            catalog=catalog,
            published_by=published_by,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=[_P.version])
        .returning(_P.version)
    )
    return result.first() is not None
