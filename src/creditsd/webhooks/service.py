"""Registering endpoints and retrying deliveries. Each runs in its caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.audit import repository as audit
from creditsd.kit import ids
from creditsd.kit.errors import NotFound
from creditsd.kit.idempotency import fingerprint_of
from creditsd.kit.pagination import Page, decode_id_cursor, encode_cursor
from creditsd.ledger.errors import IdempotencyConflict
from creditsd.webhooks import repository as repo
from creditsd.webhooks.models import Endpoint, Message
from creditsd.webhooks.signing import new_secret


class EndpointNotFound(NotFound):
    """No webhook endpoint has this id."""

    code = "endpoint_not_found"

    def __init__(self, endpoint_id: str) -> None:
        super().__init__(f"no webhook endpoint {endpoint_id!r}", endpoint_id=endpoint_id)


class DeliveryNotFound(NotFound):
    """No outbox message has this id."""

    code = "delivery_not_found"

    def __init__(self, delivery_id: int) -> None:
        super().__init__(f"no webhook delivery {delivery_id}", delivery_id=delivery_id)


@dataclass(frozen=True, slots=True)
class EndpointRequest:
    """What registering an endpoint asks: where to send which events (sorted, once each)."""

    operation: ClassVar[str] = "webhook_endpoint"
    url: str
    events: list[str]
    description: str | None


async def register(
    conn: AsyncConnection,
    url: str,
    events: list[str],
    description: str | None,
    now: datetime,
    *,
    actor: str,
    idempotency_key: str,
) -> tuple[Endpoint, bool]:
    """A new endpoint with a fresh signing secret (audited, the secret left out); True when
    this call made it. The same key again answers the same endpoint, secret included."""
    events = sorted(set(events))
    request = fingerprint_of(EndpointRequest(url=url, events=events, description=description))
    endpoint = Endpoint(
        id=ids.new_id("we"),
        url=url,
        events=events,
        secret=new_secret(),
        description=description,
        created_at=now,
        disabled_at=None,
    )
    if not await repo.insert_endpoint(conn, endpoint, idempotency_key, request):
        found = await repo.endpoint_by_key(conn, idempotency_key)
        assert found is not None  # the key was taken in this very statement's view
        earlier, asked = found
        if asked != request:  # the key was used to register another endpoint
            raise IdempotencyConflict(idempotency_key)
        return earlier, False
    await audit.record(
        conn,
        actor=actor,
        action="webhook_endpoint.create",
        target=endpoint.id,
        before=None,
        after={"url": url, "events": endpoint.events},
        now=now,
    )
    return endpoint, True


async def disable(
    conn: AsyncConnection, endpoint_id: str, now: datetime, *, actor: str
) -> Endpoint:
    """Stop sending to an endpoint (audited)."""
    endpoint = await repo.get_endpoint(conn, endpoint_id)
    if endpoint is None:
        raise EndpointNotFound(endpoint_id)
    if endpoint.disabled_at is None:
        await repo.disable_endpoint(conn, endpoint_id, now)
        await audit.record(
            conn,
            actor=actor,
            action="webhook_endpoint.disable",
            target=endpoint_id,
            before={"url": endpoint.url},
            after=None,
            now=now,
        )
    found = await repo.get_endpoint(conn, endpoint_id)
    assert found is not None
    return found


async def retry(conn: AsyncConnection, delivery_id: int, now: datetime, *, actor: str) -> Message:
    """Deliver a message again as soon as the worker gets to it (audited)."""
    message = await repo.retry(conn, delivery_id, now)
    if message is None:
        raise DeliveryNotFound(delivery_id)
    await audit.record(
        conn,
        actor=actor,
        action="webhook_delivery.retry",
        target=str(delivery_id),
        before=None,
        after={"destination": message.destination, "event_type": message.event_type},
        now=now,
    )
    return message


async def deliveries(
    conn: AsyncConnection,
    *,
    destination: str | None,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> Page[Message]:
    """One page of outbox messages, newest first: to one destination, in one status."""
    found = await repo.messages(
        conn,
        destination=destination,
        status=status,
        before=decode_id_cursor(cursor),
        limit=limit + 1,
    )
    page = found[:limit]
    return Page(page, encode_cursor(str(page[-1].id)) if len(found) > limit else None)
