"""Recording usage: price every event, then charge each once, a batch of the posting engine
per few hundred events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from creditsd import db
from creditsd.errors import CreditsError
from creditsd.idempotency import resolve_key
from creditsd.ledger import posting
from creditsd.ledger import service as ledger
from creditsd.ledger.errors import InsufficientCredits
from creditsd.ledger.models import Transfer
from creditsd.money import Money
from creditsd.pricing.catalog import Catalog, FeatureUse
from creditsd.usage.models import UsageEvent, UsageResult

CHUNK = 250  # events per transaction: bounds how long one batch holds account rows
KEY_PREFIX = "usage:"  # event ids are idempotency keys of their own namespace

Pending = tuple[int, str, ledger.Posting]


def _posting(
    event: UsageEvent, catalog: Catalog, money: Money, *, app: str, now: datetime
) -> ledger.Posting:
    price = catalog.price(event.use, money)
    use = event.use
    return ledger.charge_posting(
        event.account_id,
        price.amount,
        app=app,
        idempotency_key=resolve_key(KEY_PREFIX + event.id),
        description=use.feature if isinstance(use, FeatureUse) else use.model,
        metadata=event.metadata,
        pricing={
            **price.breakdown,
            "event_id": event.id,
            "occurred_at": event.occurred_at or now,
        },
        asked=use.request(),
    )


async def _post(
    conn: AsyncConnection,
    *,
    entries: list[ledger.Posting],
    policy: ledger.Policy,
    clock: Callable[[], datetime],
) -> list[posting.Outcome]:
    return await posting.post(conn, entries, policy, clock())


def _result(event_id: str, outcome: posting.Outcome) -> UsageResult:
    if isinstance(outcome, InsufficientCredits):
        return UsageResult(event_id, "insufficient_credits", error=outcome)
    if isinstance(outcome, CreditsError):
        return UsageResult(event_id, "invalid", error=outcome)
    assert isinstance(outcome, Transfer)
    return UsageResult(event_id, "duplicate" if outcome.replayed else "charged", transfer=outcome)


async def record(
    engine: AsyncEngine,
    events: list[UsageEvent],
    catalog: Catalog,
    money: Money,
    policy: ledger.Policy,
    clock: Callable[[], datetime],
    *,
    app: str,
) -> list[UsageResult]:
    """Charge every event once (by its id), in input order; answers in input order.

    An event the catalog cannot price is ``invalid`` and charges nothing; the rest still go.
    """
    answers: dict[int, UsageResult] = {}
    pending: list[Pending] = []
    now = clock()
    for index, event in enumerate(events):
        try:
            pending.append((index, event.id, _posting(event, catalog, money, app=app, now=now)))
        except CreditsError as exc:
            answers[index] = UsageResult(event.id, "invalid", error=exc)
    for start in range(0, len(pending), CHUNK):
        chunk = pending[start : start + CHUNK]
        entries = [entry for _, _, entry in chunk]
        outcomes = await db.run(engine, partial(_post, entries=entries, policy=policy, clock=clock))
        for (index, event_id, _), outcome in zip(chunk, outcomes, strict=True):
            answers[index] = _result(event_id, outcome)
    return [answers[index] for index in range(len(events))]
