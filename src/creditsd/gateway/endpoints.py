"""``/api/internal/*``: the gateway's side of seed 000, behind ``X-Internal-Secret``."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response

from creditsd import db
from creditsd.api.auth import LedgerDep
from creditsd.api.errors import error_responses
from creditsd.api.http import ExactJSONResponse, StrictJSONRoute
from creditsd.api.params import respond
from creditsd.gateway import service
from creditsd.gateway.schemas import BalanceOut, BalanceSync, GatewayUsage, UsageReceipt
from creditsd.inprocess import Ledger


class InternalRoute(StrictJSONRoute):
    """Checks ``X-Internal-Secret`` before the body is even read: a caller without it
    learns nothing, not even whether its body would have been valid."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            ledger: Ledger = request.app.state.ledger
            service.check_secret(ledger.settings.gateway, request.headers.get("x-internal-secret"))
            return await handler(request)

        return route


router = APIRouter(prefix="/api/internal", route_class=InternalRoute, tags=["gateway"])


@router.post("/balance/sync", response_model=BalanceOut, responses=error_responses(404))
async def balance_sync(body: BalanceSync, ledger: LedgerDep) -> ExactJSONResponse:
    """Set a user's balance (seed 000): the difference moves by an audited ``sync`` transfer.

    ``balance_points`` are divided by ``[gateway] points_to_usd``; dollars are rounded to
    4 places; negative balances are allowed. A repeat of the same figure moves nothing.
    """
    settings = ledger.settings
    if body.balance_points is not None:
        dollars = service.usd(
            body.balance_points / settings.gateway.points_to_usd, "balance_points"
        )
    else:
        figure = body.balance_usd if body.balance_usd is not None else body.balance
        assert figure is not None
        dollars = service.usd(figure, "balance_usd" if body.balance_usd is not None else "balance")
    rate = (await ledger.catalog()).settings.credits_per_usd
    target = service.to_units(dollars, rate, ledger.money, "balance")
    await db.run(
        ledger.engine,
        lambda conn: service.sync_balance(
            conn, str(body.user_id), target, ledger.policy, ledger.now()
        ),
    )
    return respond(BalanceOut(user_id=body.user_id, balance=dollars))


@router.post("/webhooks/usage", response_model=UsageReceipt, responses=error_responses(404, 409))
async def usage_webhook(
    body: GatewayUsage,
    ledger: LedgerDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    x_request_id: Annotated[str | None, Header(max_length=255)] = None,
) -> ExactJSONResponse:
    """Charge what the gateway billed for one request (seed 000's usage payload).

    ``cost`` (dollars) is charged in credits; ``cost`` 0 charges nothing. Idempotent by
    ``Idempotency-Key`` or ``X-Request-Id`` when sent, else by the payload itself (every
    field but ``apiKey`` and ``sub2api_balance_usd``): a resent post charges once.
    """
    if body.cost == 0:
        return respond(UsageReceipt(status="ignored", transfer_id=None, balance=None))
    rate = (await ledger.catalog()).settings.credits_per_usd
    dollars = service.usd(body.cost, "cost")
    units = service.to_units(dollars, rate, ledger.money, "cost")
    fields = body.model_dump(exclude={"apiKey", "sub2api_balance_usd"})
    request = service.usage_fingerprint(fields)
    sent = idempotency_key or x_request_id
    key = f"gateway-usage:{sent or request}"
    pricing = {
        "source": "gateway",
        **fields,
        "cost_usd": dollars,
        "credits_per_usd": rate,
        "gateway_balance_usd": body.sub2api_balance_usd,
    }
    transfer = await db.run(
        ledger.engine,
        lambda conn: service.record_usage(
            conn,
            str(body.userId),
            units,
            key=key,
            request=request,
            description=f"{body.model} via the gateway",
            pricing=pricing,
            policy=ledger.policy,
            now=ledger.now(),
        ),
    )
    balance = transfer.debit_balance_after
    return respond(
        UsageReceipt(
            status="duplicate" if transfer.replayed else "charged",
            transfer_id=transfer.id,
            balance=None if balance is None else service.to_dollars(balance, rate, ledger.money),
        )
    )
