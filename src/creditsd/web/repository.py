"""Every query on the pages' tokens: admin console sessions and opened portal links.

A token is kept as its SHA-256, never as itself, so the table signs no one in.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.kit.rows import insert_or_skip
from creditsd.tables import web_tokens

_W = web_tokens.c


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def keep(
    conn: AsyncConnection,
    kind: str,
    token: str,
    subject: str,
    now: datetime,
    expires_at: datetime,
) -> bool:
    """Remember a token until ``expires_at``; False when it was remembered already (a
    portal link opened before). Tokens past their time are forgotten first."""
    await conn.execute(delete(web_tokens).where(_W.expires_at <= now))
    insert = insert_or_skip(conn)
    kept = await conn.execute(
        insert(web_tokens)
        .values(
            token_hash=_hash(token),
            kind=kind,
            subject=subject,
            created_at=now,
            expires_at=expires_at,
        )
        .on_conflict_do_nothing()
    )
    return bool(kept.rowcount)


async def subject_of(conn: AsyncConnection, kind: str, token: str, now: datetime) -> str | None:
    """Whose live token of ``kind`` this is, if it is one."""
    query = select(_W.subject).where(
        _W.token_hash == _hash(token), _W.kind == kind, _W.expires_at > now
    )
    found: str | None = (await conn.execute(query)).scalar_one_or_none()
    return found


async def forget(conn: AsyncConnection, kind: str, token: str) -> None:
    """End a token of ``kind`` (a session signed out)."""
    await conn.execute(delete(web_tokens).where(_W.token_hash == _hash(token), _W.kind == kind))
