"""``POST /v1/usage``: a batch of usage events, each priced and charged once."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError

from creditsd.api.auth import AppKey, LedgerDep
from creditsd.api.errors import error_detail, error_responses
from creditsd.api.http import ExactJSONResponse, StrictJSONRoute
from creditsd.api.params import respond
from creditsd.api.schemas.usage import UsageBatch, UsageBatchOut, UsageEventIn, UsageResultOut
from creditsd.kit.errors import CreditsError
from creditsd.kit.money import Money
from creditsd.usage.models import UsageEvent, UsageResult

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute, tags=["usage"])


def _invalid(raw: Any, exc: ValidationError, money: Money) -> UsageResultOut:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = f"{where}: {first['msg']}" if where else first["msg"]
    event_id = raw.get("id") if isinstance(raw, dict) else None
    return UsageResultOut(
        id=event_id if isinstance(event_id, str) else None,
        status="invalid",
        transfer_id=None,
        error=error_detail("validation_error", message, money),
    )


def _result(result: UsageResult, money: Money) -> UsageResultOut:
    error = result.error
    return UsageResultOut(
        id=result.id,
        status=result.status,
        transfer_id=None if result.transfer is None else result.transfer.id,
        error=None
        if error is None
        else error_detail(error.code, error.message, money, error.details),
    )


@router.post("/usage", response_model=UsageBatchOut, responses=error_responses(403))
async def record_usage(body: UsageBatch, ledger: LedgerDep, key: AppKey) -> ExactJSONResponse:
    """Charge up to 1,000 usage events, each once by its ``id``; one bad event fails only itself.

    Answers 200 with one result per event, in input order: ``charged``, ``duplicate`` (this
    id was charged before; ``transfer_id`` is that charge), ``insufficient_credits``,
    ``limit_reached`` (a spend limit of its wallet, member or app: the error says which
    and when it resets) or ``invalid`` (with an ``error``).
    """
    money = ledger.money
    answers: list[UsageResultOut | None] = []
    events: list[UsageEvent] = []
    for raw in body.events:
        try:
            event = UsageEventIn.model_validate(raw)
        except ValidationError as exc:
            answers.append(_invalid(raw, exc, money))
            continue
        try:
            use = event.use()
        except CreditsError as exc:  # a provider's usage whose counts do not add up
            answers.append(_result(UsageResult(event.id, "invalid", error=exc), money))
            continue
        assert use is not None  # the schema requires feature or usage
        events.append(
            UsageEvent(
                event.id, event.account_id, use, event.timestamp, event.metadata, event.member
            )
        )
        answers.append(None)
    recorded = iter(await ledger.record_usage(events, app=key.name))
    results = [answer or _result(next(recorded), money) for answer in answers]
    return respond(UsageBatchOut(results=results))
