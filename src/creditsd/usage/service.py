"""Recording usage: price every event, then charge each once, in one batch of the posting
engine."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.kit.errors import CreditsError
from creditsd.kit.idempotency import resolve_key
from creditsd.kit.money import Money
from creditsd.ledger import posting
from creditsd.ledger import service as ledger_service
from creditsd.ledger.commands import Movement
from creditsd.ledger.errors import InsufficientCredits
from creditsd.ledger.limits import LimitReached
from creditsd.ledger.models import Transfer
from creditsd.pricing.catalog import Catalog, FeatureUse
from creditsd.usage.models import UsageEvent, UsageResult

KEY_PREFIX = "usage:"  # event ids are idempotency keys of their own namespace


def _charge(
    event: UsageEvent, catalog: Catalog, money: Money, *, app: str, now: datetime
) -> Movement:
    price = catalog.price(event.use, money)
    use = event.use
    return ledger_service.Charge(
        account_id=event.account_id,
        amount=price.amount,
        app=app,
        idempotency_key=resolve_key(KEY_PREFIX + event.id),
        description=use.feature if isinstance(use, FeatureUse) else use.model,
        metadata=event.metadata,
        pricing={
            **price.breakdown,
            "event_id": event.id,
            "occurred_at": event.occurred_at or now,
        },
        use=use.request(),
        member=event.member,
    ).movement()


def _result(event_id: str, outcome: posting.EntryOutcome) -> UsageResult:
    if isinstance(outcome, InsufficientCredits):
        return UsageResult(event_id, "insufficient_credits", error=outcome)
    if isinstance(outcome, LimitReached):
        return UsageResult(event_id, "limit_reached", error=outcome)
    if isinstance(outcome, CreditsError):
        return UsageResult(event_id, "invalid", error=outcome)
    assert isinstance(outcome, Transfer)
    return UsageResult(event_id, "duplicate" if outcome.replayed else "charged", transfer=outcome)


async def record(
    conn: AsyncConnection,
    events: list[UsageEvent],
    catalog: Catalog,
    money: Money,
    policy: ledger_service.Policy,
    now: datetime,
    *,
    app: str,
) -> list[UsageResult]:
    """Charge every event once (by its id), as one batch of the posting engine in the
    caller's transaction; answers in input order.

    An event the catalog cannot price is ``invalid`` and charges nothing; the rest still go.
    """
    answers: dict[int, UsageResult] = {}
    pending: list[tuple[int, str, Movement]] = []
    for index, event in enumerate(events):
        try:
            pending.append((index, event.id, _charge(event, catalog, money, app=app, now=now)))
        except CreditsError as exc:
            answers[index] = UsageResult(event.id, "invalid", error=exc)
    outcomes = await posting.post(conn, [entry for _, _, entry in pending], policy, now)
    for (index, event_id, _), outcome in zip(pending, outcomes, strict=True):
        answers[index] = _result(event_id, outcome)
    return [answers[index] for index in range(len(events))]
