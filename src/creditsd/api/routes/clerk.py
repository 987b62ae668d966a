"""``/webhooks/clerk``: Clerk's user, organization and subscription events (Svix)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from creditsd.api import receiving
from creditsd.api.auth import LedgerDep
from creditsd.api.errors import error_responses
from creditsd.api.http import bounded_body
from creditsd.api.schemas.stripe import WebhookReceipt
from creditsd.clerk.service import SOURCE, handle, verify

webhooks = APIRouter(tags=["webhooks"])


@webhooks.post("/webhooks/clerk", response_model=WebhookReceipt, responses=error_responses())
async def clerk_webhook(request: Request, ledger: LedgerDep) -> WebhookReceipt:
    """Clerk events, verified by their ``svix-id``, ``svix-timestamp`` and ``svix-signature``.

    ``user.created`` opens the account with its sign-up grant (once, whether this or the
    app's first request comes first) and, with ``user.updated``, keeps the primary email in
    its ``clerk_email`` metadata; ``user.deleted`` closes it; subscription events grant
    each period's allowance once. Repeats answer 200 with ``duplicate``; a signed body that
    is not an event is 400 ``invalid_event``.
    """
    headers = {name.lower(): value for name, value in request.headers.items()}
    payload = await bounded_body(request, ledger.settings.server.max_webhook_body_bytes)
    message_id, kind, event = verify(ledger.settings.clerk, payload, headers)
    async with receiving.kept(ledger, SOURCE, message_id, kind, event) as delivery:
        if not delivery.duplicate:
            delivery.handle(lambda conn, now: handle(conn, kind, event["data"], ledger, now))
    return WebhookReceipt(event_id=message_id, type=kind, outcome=delivery.outcome)
