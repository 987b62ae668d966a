"""The webhook inbox as operators read it: a source's events newest first, a page at a time."""

from __future__ import annotations

from functools import partial

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd import inbox
from creditsd.inprocess import Ledger
from creditsd.kit import db
from creditsd.kit.pagination import InvalidCursor
from tests.conftest import Clock


async def test_received_events_page_newest_first(ledger: Ledger, clock: Clock) -> None:
    async def receive(*events: tuple[str, str]) -> None:
        async def store(conn: AsyncConnection) -> None:
            for source, event_id in events:
                await inbox.store(conn, source, event_id, "some.event", {}, clock.now)

        await db.run(ledger.engine, store)

    await receive(("stripe", "evt_0"), ("stripe", "evt_1"), ("stripe", "evt_2"))  # at once
    clock.advance(60)
    await receive(("clerk", "msg_a"), ("stripe", "evt_late"))

    async def listed(source: str) -> list[str]:
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page = await db.run(
                ledger.engine,
                partial(inbox.recent, source=source, limit=2, cursor=cursor),
                readonly=True,
            )
            seen += [event.event_id for event in page.items]
            if page.next_cursor is None:
                return seen
            cursor = page.next_cursor

    assert await listed("stripe") == ["evt_late", "evt_2", "evt_1", "evt_0"]
    assert await listed("clerk") == ["msg_a"]
    with pytest.raises(InvalidCursor):
        await db.run(
            ledger.engine, lambda conn: inbox.recent(conn, "stripe", limit=2, cursor="eyJ4Ijox")
        )
