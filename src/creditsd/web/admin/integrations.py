"""The console's integrations: what providers sent (the inbox) and what goes out (the
outbox's deliveries)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from creditsd import inbox
from creditsd.api.auth import ledger_of
from creditsd.clerk.service import SOURCE as CLERK_SOURCE
from creditsd.gateway.service import GATEWAY_APP
from creditsd.kit.money import INT64_MAX
from creditsd.stripe.events import SOURCE as STRIPE_SOURCE
from creditsd.tables import OUTBOX_STATUSES
from creditsd.web.admin.console import (
    PAGE_SIZE,
    SECTION,
    AdminRoute,
    Posted,
    Signed,
    done,
    render,
)
from creditsd.webhooks import service as webhooks

INBOX_SOURCES = {STRIPE_SOURCE: "Stripe", CLERK_SOURCE: "Clerk", GATEWAY_APP: "Gateway"}

router = APIRouter(route_class=AdminRoute)


# Webhooks: what came in, what goes out


@router.get("/inbox")
async def inbox_page(
    request: Request, op: Signed, source: str = STRIPE_SOURCE, cursor: str | None = None
) -> Response:
    """What Stripe, Clerk or the gateway sent, newest first, with what handling it did."""
    chosen = source if source in INBOX_SOURCES else STRIPE_SOURCE
    ledger = ledger_of(request)
    found = await ledger.database.read(
        lambda conn, _now: inbox.recent(conn, chosen, limit=PAGE_SIZE, cursor=cursor)
    )
    return await render(
        request,
        op,
        "inbox.html",
        events=found.items,
        next_cursor=found.next_cursor,
        source=chosen,
        sources=INBOX_SOURCES,
    )


@router.get("/deliveries")
async def deliveries(
    request: Request, op: Signed, status: str | None = None, cursor: str | None = None
) -> Response:
    """Webhooks creditsd sends, newest first, with how their delivery went."""
    chosen = status if status in OUTBOX_STATUSES else None
    ledger = ledger_of(request)
    found = await ledger.database.read(
        lambda conn, _now: webhooks.deliveries(
            conn, destination=None, status=chosen, limit=PAGE_SIZE, cursor=cursor
        )
    )
    return await render(
        request,
        op,
        "deliveries.html",
        messages=found.items,
        next_cursor=found.next_cursor,
        state=chosen,
    )


@router.post("/deliveries/{delivery_id}/redeliver")
async def redeliver(
    request: Request, posted: Posted, delivery_id: Annotated[int, Path(ge=1, le=INT64_MAX)]
) -> Response:
    """Send a delivery again (audited)."""
    ledger = ledger_of(request)
    message = await ledger.database.write(
        lambda conn, now: webhooks.retry(conn, delivery_id, now, actor=posted.operator.actor)
    )
    back = posted.text("back", 200)
    url = back if back.startswith(f"/{SECTION}/") else f"/{SECTION}/deliveries"
    return await done(
        request,
        url,
        f"Delivery {message.id} ({message.event_type}) is queued to be sent again.",
    )
