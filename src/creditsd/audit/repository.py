"""The audit log: who did what to which target, with the state before and after."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.tables import audit_log


async def record(
    conn: AsyncConnection,
    *,
    actor: str,
    action: str,
    target: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    now: datetime,
) -> None:
    """Write an audit record inside the caller's transaction, so it lands with the change."""
    await conn.execute(
        insert(audit_log).values(
            actor=actor, action=action, target=target, before=before, after=after, created_at=now
        )
    )
