"""What the integrity tests share: raw SQL behind creditsd's back, and what a run left."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select, text

from creditsd.inprocess import Ledger
from creditsd.kit import db
from creditsd.tables import audit_log, integrity_drifts, outbox


async def execute(ledger: Ledger, sql: str, **values: Any) -> None:
    """Change the database as someone with its password might, creditsd unaware."""
    async with db.transaction(ledger.engine) as conn:
        await conn.execute(text(sql), values)


async def drifts(ledger: Ledger) -> list[Any]:
    """Every drift recorded, oldest first."""
    async with db.transaction(ledger.engine, readonly=True) as conn:
        query = select(integrity_drifts).order_by(integrity_drifts.c.detected_at)
        return list(await conn.execute(query))


async def drift_messages(ledger: Ledger) -> list[Any]:
    """The ledger.drift_detected messages in the outbox."""
    async with db.transaction(ledger.engine, readonly=True) as conn:
        query = select(outbox).where(outbox.c.event_type == "ledger.drift_detected")
        return list(await conn.execute(query.order_by(outbox.c.id)))


async def audit_actions(ledger: Ledger, target: str) -> list[tuple[str, str]]:
    """``(actor, action)`` of a target's audit records, oldest first."""
    async with db.transaction(ledger.engine, readonly=True) as conn:
        query = select(audit_log.c.actor, audit_log.c.action).where(audit_log.c.target == target)
        return [
            (actor, action) for actor, action in await conn.execute(query.order_by(audit_log.c.id))
        ]


async def scraped(api: httpx.AsyncClient) -> dict[str, float]:
    """The integrity lines of ``GET /metrics``, by name and labels."""
    response = await api.get("/metrics")
    assert response.status_code == 200
    figures = {}
    for line in response.text.splitlines():
        if line.startswith(("creditsd_invariant", "creditsd_reconcile", "creditsd_holds")):
            name, value = line.rsplit(" ", 1)
            figures[name] = float(value)
    return figures
