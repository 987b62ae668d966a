"""The webhook inbox: every event a provider sends, stored once (unique on its id) and
marked when handled, so a retried or repeated delivery is handled at most once.

Stripe's and Clerk's endpoints store the verified event in one transaction and handle it
in the next (``creditsd.api.receiving``): an event whose handling fails stays stored for
the provider's next delivery. A gateway's usage post is stored and handled in one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.kit import jsonio
from creditsd.kit.pagination import InvalidCursor, Page, decode_cursor, encode_cursor
from creditsd.kit.rows import insert_or_skip
from creditsd.tables import webhook_events

_E = webhook_events.c


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A stored webhook event."""

    source: str
    event_id: str
    type: str
    payload: dict[str, Any]
    received_at: datetime
    handled_at: datetime | None
    outcome: str | None
    detail: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Handled:
    """What handling one event did, as the inbox records it."""

    name: str
    transfers: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def detail(self) -> dict[str, Any]:
        """The inbox's ``detail`` column."""
        return {"transfers": self.transfers, **self.notes}


async def handle_once(
    conn: AsyncConnection,
    source: str,
    event_id: str,
    now: datetime,
    handle: Callable[[], Awaitable[Handled]],
) -> str:
    """Handle a stored event unless it was already, and mark it handled, in the caller's
    transaction. Returns the outcome's name, or ``duplicate``."""
    if await claim(conn, source, event_id) is None:
        return "duplicate"
    outcome = await handle()
    await mark_handled(conn, source, event_id, outcome.name, outcome.detail(), now)
    return outcome.name


async def store(
    conn: AsyncConnection,
    source: str,
    event_id: str,
    type_: str,
    payload: dict[str, Any],
    now: datetime,
) -> bool:
    """Keep an event; False when it was already there."""
    insert = insert_or_skip(conn)
    result = await conn.execute(
        insert(webhook_events)
        .values(source=source, event_id=event_id, type=type_, payload=payload, received_at=now)
        .on_conflict_do_nothing(index_elements=[_E.source, _E.event_id])
        .returning(_E.event_id)
    )
    return result.first() is not None


async def get(conn: AsyncConnection, source: str, event_id: str) -> StoredEvent | None:
    """A stored event, handled or not."""
    query = select(webhook_events).where(_E.source == source, _E.event_id == event_id)
    row = (await conn.execute(query)).first()
    return None if row is None else StoredEvent(**row._asdict())


async def handled(conn: AsyncConnection, source: str, event_id: str) -> bool:
    """Whether a stored event was handled already."""
    query = select(_E.handled_at).where(_E.source == source, _E.event_id == event_id)
    return (await conn.execute(query)).scalar_one_or_none() is not None


async def note_refusal(conn: AsyncConnection, source: str, event_id: str, reason: str) -> None:
    """Record why a stored event was refused unhandled (its ``outcome`` until handled)."""
    await conn.execute(
        update(webhook_events)
        .where(_E.source == source, _E.event_id == event_id, _E.handled_at.is_(None))
        .values(outcome=reason)
    )


async def claim(conn: AsyncConnection, source: str, event_id: str) -> StoredEvent | None:
    """The stored event, locked for handling; None when it was handled already.

    Concurrent deliveries of one event queue on the lock, so only one handles it.
    """
    query = select(webhook_events).where(_E.source == source, _E.event_id == event_id)
    query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None or row.handled_at is not None:
        return None
    return StoredEvent(**row._asdict())


async def mark_handled(
    conn: AsyncConnection,
    source: str,
    event_id: str,
    outcome: str,
    detail: dict[str, Any] | None,
    now: datetime,
) -> None:
    """Record what handling an event did (in the transaction that did it)."""
    await conn.execute(
        update(webhook_events)
        .where(_E.source == source, _E.event_id == event_id)
        .values(handled_at=now, outcome=outcome, detail=detail)
    )


async def pages(
    conn: AsyncConnection, source: str, size: int = 500
) -> AsyncIterator[list[StoredEvent]]:
    """Every stored event of a source, in id order, a page at a time."""
    after = ""
    while True:
        rows = (
            await conn.execute(
                select(webhook_events)
                .where(_E.source == source, _E.event_id > after)
                .order_by(_E.event_id)
                .limit(size)
            )
        ).all()
        if not rows:
            return
        yield [StoredEvent(**row._asdict()) for row in rows]
        after = rows[-1].event_id


async def recent(
    conn: AsyncConnection, source: str, *, limit: int, cursor: str | None
) -> Page[StoredEvent]:
    """One page of a source's events, newest first (through its ``(source, received_at)``
    index)."""
    query = (
        select(webhook_events)
        .where(_E.source == source)
        .order_by(_E.received_at.desc(), _E.event_id.desc())
    )
    position = decode_cursor(cursor)
    if position is not None:
        try:
            moment, last_id = jsonio.loads(position)
            received = datetime.fromisoformat(moment)
        except (ValueError, TypeError) as exc:
            raise InvalidCursor from exc
        query = query.where(
            or_(
                _E.received_at < received,
                and_(_E.received_at == received, _E.event_id < last_id),
            )
        )
    rows = (await conn.execute(query.limit(limit + 1))).all()
    events = [StoredEvent(**row._asdict()) for row in rows[:limit]]
    if len(rows) <= limit:
        return Page(events, None)
    last = events[-1]
    return Page(events, encode_cursor(jsonio.dumps([last.received_at.isoformat(), last.event_id])))
