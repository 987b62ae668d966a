"""``/v1/webhook-endpoints`` and ``/v1/webhook-deliveries`` (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from creditsd.api.auth import AdminKey, LedgerDep, actor
from creditsd.api.errors import error_responses
from creditsd.api.http import ExactJSONResponse, StrictJSONRoute
from creditsd.api.params import IdempotencyHeader, respond
from creditsd.api.schemas.webhooks import (
    DeliveryOut,
    DeliveryPage,
    EndpointCreate,
    EndpointList,
    EndpointOut,
)
from creditsd.kit.idempotency import resolve_key
from creditsd.kit.money import INT64_MAX
from creditsd.kit.pagination import MAX_LIMIT
from creditsd.webhooks import repository as repo
from creditsd.webhooks import service

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute, tags=["webhooks"])
EndpointId = Annotated[str, Path(max_length=32, pattern=r"^we_[0-9a-z]+$")]


@router.post(
    "/webhook-endpoints",
    response_model=EndpointOut,
    status_code=201,
    responses=error_responses(403, 409),
)
async def create_endpoint(
    body: EndpointCreate,
    ledger: LedgerDep,
    key: AdminKey,
    idempotency_key: IdempotencyHeader = None,
) -> ExactJSONResponse:
    """Register an endpoint; the answer carries its signing secret.

    Deliveries are signed with the Standard Webhooks scheme (``webhook-id``,
    ``webhook-timestamp``, ``webhook-signature``). Every process sends to it within a few
    seconds. The same idempotency key answers the same endpoint (and secret).
    """
    request_key = resolve_key(idempotency_key)
    endpoint, created = await ledger.database.write(
        lambda conn, now: service.register(
            conn,
            body.url,
            list(body.events),
            body.description,
            now,
            actor=actor(key),
            idempotency_key=f"{key.name}:{request_key}",
        )
    )
    ledger.outbox.forget()
    return respond(EndpointOut.of(endpoint, reveal=True), 201, replayed=not created)


@router.get("/webhook-endpoints", response_model=EndpointList, responses=error_responses(403))
async def list_endpoints(ledger: LedgerDep, _key: AdminKey) -> ExactJSONResponse:
    """Every endpoint, disabled ones included, secrets masked."""
    found = await ledger.database.read(lambda conn, _now: repo.endpoints(conn, enabled_only=False))
    return respond(EndpointList(data=[EndpointOut.of(endpoint) for endpoint in found]))


@router.delete(
    "/webhook-endpoints/{endpoint_id}",
    response_model=EndpointOut,
    responses=error_responses(403, 404),
)
async def disable_endpoint(
    endpoint_id: EndpointId, ledger: LedgerDep, key: AdminKey
) -> ExactJSONResponse:
    """Stop sending to an endpoint; its past deliveries stay listed."""
    endpoint = await ledger.database.write(
        lambda conn, now: service.disable(conn, endpoint_id, now, actor=actor(key))
    )
    ledger.outbox.forget()
    return respond(EndpointOut.of(endpoint))


@router.get("/webhook-deliveries", response_model=DeliveryPage, responses=error_responses(403))
async def list_deliveries(
    ledger: LedgerDep,
    _key: AdminKey,
    destination: Annotated[str | None, Query(max_length=32)] = None,
    status: Annotated[str | None, Query(pattern="^(pending|delivered|dead)$")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ExactJSONResponse:
    """Outbox messages, newest first: to one endpoint (or ``gateway``, ``app``), in one status."""
    page = await ledger.database.read(
        lambda conn, _now: service.deliveries(
            conn, destination=destination, status=status, limit=limit, cursor=cursor
        )
    )
    return respond(
        DeliveryPage(
            data=[DeliveryOut.of(message) for message in page.items],
            next_cursor=page.next_cursor,
        )
    )


@router.post(
    "/webhook-deliveries/{delivery_id}/retry",
    response_model=DeliveryOut,
    responses=error_responses(403, 404),
)
async def retry_delivery(
    delivery_id: Annotated[int, Path(ge=1, le=INT64_MAX)], ledger: LedgerDep, key: AdminKey
) -> ExactJSONResponse:
    """Deliver a message again (a dead one, or one delivered that the receiver lost)."""
    message = await ledger.database.write(
        lambda conn, now: service.retry(conn, delivery_id, now, actor=actor(key))
    )
    return respond(DeliveryOut.of(message))
