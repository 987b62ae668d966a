"""A provider's webhook as an entry point: the verified event is kept in one transaction,
then handled once in the next, so an event whose handling fails stays kept for the
provider's next delivery (and for reconciliation)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd import inbox
from creditsd.inbox import Outcome
from creditsd.inprocess import Ledger

Handler = Callable[[AsyncConnection, datetime], Awaitable[Outcome]]


async def keep(
    ledger: Ledger,
    source: str,
    event_id: str,
    kind: str,
    event: Any,
    *,
    refusal: str | None = None,
) -> bool:
    """Store a verified event (a repeat stores nothing); True when it was handled already.

    ``refusal``: why this delivery is refused unhandled, recorded on the stored event.
    """

    async def store(conn: AsyncConnection, now: datetime) -> bool:
        await inbox.store(conn, source, event_id, kind, event, now)
        if refusal is not None:
            await inbox.note_refusal(conn, source, event_id, refusal)
        return await inbox.handled(conn, source, event_id)

    return await ledger.database.write(store)


async def handle_once(ledger: Ledger, source: str, event_id: str, handle: Handler) -> str:
    """Handle a kept event unless it was already; the outcome's name, or ``duplicate``."""

    async def once(conn: AsyncConnection, now: datetime) -> str:
        return await inbox.handle_once(conn, source, event_id, now, lambda: handle(conn, now))

    return await ledger.database.write(once)
