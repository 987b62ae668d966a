"""The audit log: who did what to which target, with the state before and after."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.audit.models import AuditFilter, AuditRecord
from creditsd.tables import audit_log

_A = audit_log.c


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


async def records(
    conn: AsyncConnection, wanted: AuditFilter, *, before: int | None, limit: int
) -> list[AuditRecord]:
    """Records that match ``wanted``, newest first, with ids below ``before`` if given."""
    query = select(
        _A.id, _A.actor, _A.action, _A.target, _A.before, _A.after, _A.created_at
    ).order_by(_A.id.desc())
    for column, value in (
        (_A.target, wanted.target),
        (_A.actor, wanted.actor),
        (_A.action, wanted.action),
    ):
        if value is not None:
            query = query.where(column == value)
    if wanted.since is not None:
        query = query.where(_A.created_at >= wanted.since)
    if wanted.until is not None:
        query = query.where(_A.created_at < wanted.until)
    if before is not None:
        query = query.where(_A.id < before)
    return [AuditRecord(*row) for row in await conn.execute(query.limit(limit))]
