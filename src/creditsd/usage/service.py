"""Recording usage: price every event, then charge each once, a few hundred per transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from creditsd import db
from creditsd.errors import CreditsError
from creditsd.idempotency import resolve_key
from creditsd.ledger import service as ledger
from creditsd.ledger.errors import InsufficientCredits
from creditsd.money import Money
from creditsd.prepared import raw_transaction
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


async def _charge(
    conn: AsyncConnection,
    *,
    pending: list[Pending],
    policy: ledger.Policy,
    clock: Callable[[], datetime],
) -> list[tuple[int, UsageResult]]:
    """Charge each pending event in order inside one transaction; a refusal undoes only itself."""
    now = clock()
    results = []
    for index, event_id, posting in pending:
        try:
            transfer = await ledger.post_quickly(conn, posting, policy, now)
        except InsufficientCredits as exc:
            result = UsageResult(event_id, "insufficient_credits", error=exc)
        except CreditsError as exc:
            result = UsageResult(event_id, "invalid", error=exc)
        else:
            result = UsageResult(
                event_id, "duplicate" if transfer.replayed else "charged", transfer=transfer
            )
        results.append((index, result))
    return results


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
        if engine.dialect.name == "postgresql" and not ledger.may_notify(policy):
            charged, chunk = await _charge_plainly(engine, chunk, clock())
            answers.update(charged)
        if chunk:
            answers.update(
                await db.run(engine, partial(_charge, pending=chunk, policy=policy, clock=clock))
            )
    return [answers[index] for index in range(len(events))]


async def _charge_plainly(
    engine: AsyncEngine, pending: list[Pending], now: datetime
) -> tuple[list[tuple[int, UsageResult]], list[Pending]]:
    """PostgreSQL: charge events on asyncpg itself, in one transaction, up to the first
    it cannot (a replay, a new account, a refusal); that one and the rest are left for
    :func:`_charge`, in order, which says why."""
    charged: list[tuple[int, UsageResult]] = []
    try:
        async with raw_transaction(engine) as raw:
            for index, event_id, posting in pending:
                transfer = await ledger.charge_on_raw(raw, posting, now)
                if transfer is None:
                    break
                charged.append((index, UsageResult(event_id, "charged", transfer=transfer)))
    except asyncpg.TransactionRollbackError:
        return [], pending
    return charged, pending[len(charged) :]
