"""``/api/internal/*``: seed 000's two inbound calls, each behind its link's
``X-Internal-Secret``: usage from a gateway (``[gateway]``), balances from an app
(``[app_link]``)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request, Response
from prometheus_client import Counter

from creditsd.api.auth import LedgerDep
from creditsd.api.errors import error_responses
from creditsd.api.http import ExactJSONResponse, StrictJSONRoute
from creditsd.api.params import respond
from creditsd.api.schemas.gateway import (
    BalanceOut,
    BalanceSync,
    GatewayUsage,
    SyncedBalance,
    UsageReceipt,
)
from creditsd.gateway import service
from creditsd.inprocess import Ledger
from creditsd.kit.jsonio import format_timestamp

KEYED_BY_PAYLOAD = Counter(
    "creditsd_gateway_usage_without_request_id_total",
    "Gateway usage posts recorded with no request id (no requestId, Idempotency-Key or "
    "X-Request-Id): told apart from others by their payload alone.",
)
DEDUPLICATED_BY_PAYLOAD = Counter(
    "creditsd_gateway_usage_deduplicated_by_payload_total",
    "Of those, posts answered duplicate because an earlier post had the same payload: a "
    "resend, or real usage identical to the millisecond, which is then not charged.",
)


def _behind_secret(section: Literal["gateway", "app_link"]) -> type[StrictJSONRoute]:
    """A route class that checks the ``X-Internal-Secret`` of one link before the body is
    even read: a caller without it learns nothing, not even whether its body was valid."""

    class InternalRoute(StrictJSONRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def route(request: Request) -> Response:
                ledger: Ledger = request.app.state.ledger
                settings = getattr(ledger.settings, section)
                service.check_secret(settings, section, request.headers.get("x-internal-secret"))
                return await handler(request)

            return route

    return InternalRoute


# What a gateway (sub2api) calls on its app: the usage it billed. [gateway]'s secret.
from_gateway = APIRouter(
    prefix="/api/internal", route_class=_behind_secret("gateway"), tags=["gateway"]
)
# What an app written to seed 000 calls on its gateway: its balances. [app_link]'s secret.
from_app = APIRouter(
    prefix="/api/internal", route_class=_behind_secret("app_link"), tags=["gateway"]
)


@from_app.post("/balance/sync", response_model=BalanceOut, responses=error_responses(404))
async def balance_sync(body: BalanceSync, ledger: LedgerDep) -> ExactJSONResponse:
    """Set a user's balance (seed 000): the difference moves by a ``sync`` transfer.

    ``balance_points`` are divided by ``[app_link] points_to_usd``; dollars are rounded to
    4 places; negative balances are allowed. A repeat of the same figure moves nothing.
    The answer is sub2api's envelope (``code`` 0, ``message``, ``data``) with seed 000's
    ``user_id`` and ``balance`` also at the top, so a client of either reads it.
    """
    dollars = service.reported_dollars(
        ledger.settings.app_link,
        points=body.balance_points,
        usd_given=body.balance if body.balance_usd is None else body.balance_usd,
        field="balance" if body.balance_usd is None else "balance_usd",
    )
    rate = (await ledger.catalog()).settings.credits_per_usd
    target = service.to_units(dollars, rate, ledger.money, "balance")
    await ledger.database.write(
        lambda conn, now: service.sync_balance(
            conn, str(body.user_id), target, ledger.policy, now, metadata=body.kept()
        )
    )
    synced = SyncedBalance(user_id=body.user_id, balance=dollars)
    return respond(BalanceOut(data=synced, user_id=body.user_id, balance=dollars))


@from_gateway.post(
    "/webhooks/usage", response_model=UsageReceipt, responses=error_responses(404, 409)
)
async def usage_webhook(
    body: GatewayUsage,
    ledger: LedgerDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    x_request_id: Annotated[str | None, Header(max_length=255)] = None,
) -> ExactJSONResponse:
    """Charge what the gateway billed for one request (seed 000's usage payload, as sub2api
    sends it today).

    ``cost`` (dollars) is converted to credits exactly; what falls below a minor unit is
    carried on the account until it adds up to one (``status`` ``carried``). ``cost`` 0
    charges nothing. Idempotent by ``requestId``, else ``Idempotency-Key`` or
    ``X-Request-Id``, else the payload itself (every field but ``apiKey`` and
    ``sub2api_balance_usd``): a resent post charges once. Unknown fields are kept.
    """
    now = ledger.now()
    if body.cost == 0:
        return respond(_receipt("ignored", None, None, now))
    rate = (await ledger.catalog()).settings.credits_per_usd
    post = service.UsagePost(
        user_id=str(body.userId),
        model=body.model,
        cost=body.cost,
        gateway_balance_usd=body.sub2api_balance_usd,
        payload=body.kept(),
        request_id=body.requestId or idempotency_key or x_request_id,
    )
    recorded = await ledger.database.write(
        lambda conn, now: service.record_usage(conn, post, rate, ledger.money, ledger.policy, now)
    )
    if post.request_id is None:  # told apart from other posts by its payload alone
        KEYED_BY_PAYLOAD.inc()
        if recorded.status == "duplicate":
            DEDUPLICATED_BY_PAYLOAD.inc()
    balance = service.to_dollars(recorded.balance, rate, ledger.money)
    return respond(_receipt(recorded.status, recorded.transfer_id, balance, now))


def _receipt(
    status: str, transfer_id: str | None, balance: Decimal | None, now: datetime
) -> UsageReceipt:
    return UsageReceipt(
        timestamp=format_timestamp(now),
        status=status,
        transfer_id=transfer_id,
        balance=balance,
        balance_usd=balance,
    )
