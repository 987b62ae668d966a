"""A provider's webhook as an entry point: the verified event is kept in one transaction,
then handled once in the next, so an event whose handling fails stays kept for the
provider's next delivery (and for reconciliation).

```python
async with receiving.kept(ledger, source, event_id, kind, event) as delivery:
    if not delivery.duplicate:
        delivery.handle(lambda conn, now: ...)  # run, once, as the block ends
return delivery.outcome
```
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd import inbox
from creditsd.inbox import Handled
from creditsd.inprocess import Ledger

Handler = Callable[[AsyncConnection, datetime], Awaitable[Handled]]


@dataclass(slots=True)
class Delivery:
    """One delivery of a kept event: whether the event was handled already (a repeat), and
    the name of what handling it did (``duplicate`` for a repeat)."""

    duplicate: bool
    outcome: str = "duplicate"
    handler: Handler | None = None

    def handle(self, handler: Handler) -> None:
        """Handle the event with ``handler`` as the block ends, once, in the transaction
        that marks it handled."""
        self.handler = handler


@asynccontextmanager
async def kept(
    ledger: Ledger,
    source: str,
    event_id: str,
    kind: str,
    event: Any,
    *,
    refusal: str | None = None,
) -> AsyncIterator[Delivery]:
    """Keep a verified event (a repeat stores nothing), then, as the block ends, handle it
    once with the handler the block gave. A block that gives none, or fails, leaves the
    event kept and unhandled. ``refusal``: why this delivery is refused unhandled,
    recorded on the stored event."""

    async def store(conn: AsyncConnection, now: datetime) -> bool:
        await inbox.store(conn, source, event_id, kind, event, now)
        if refusal is not None:
            await inbox.note_refusal(conn, source, event_id, refusal)
        return await inbox.handled(conn, source, event_id)

    delivery = Delivery(duplicate=await ledger.database.write(store))
    yield delivery
    handler = delivery.handler
    if handler is not None:
        delivery.outcome = await ledger.database.write(
            lambda conn, now: inbox.handle_once(
                conn, source, event_id, now, lambda: handler(conn, now)
            )
        )
