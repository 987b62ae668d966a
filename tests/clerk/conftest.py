"""A ledger that takes Clerk's webhooks, and Svix-signed delivery with the svix library."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from svix.webhooks import Webhook

from creditsd.inprocess import Ledger
from tests.conftest import LedgerFactory, client_for

CLERK_SECRET = "whsec_" + "Y2xlcmstdGVzdC1zZWNyZXQtZm9yLWNyZWRpdHNk"  # base64, as Svix issues
PLANS = {"cplan_pro": {"credits": 5_000, "label": "Pro"}}


@pytest.fixture
async def clerk_ledger(make_ledger: LedgerFactory) -> Ledger:
    """Clerk webhooks on, 100 sign-up credits, a Pro plan of 5,000 credits a month."""
    return await make_ledger(
        clerk={"webhook_secret": CLERK_SECRET}, accounts={"signup_grant": 100}, plans=PLANS
    )


@pytest.fixture
async def clerk_api(clerk_ledger: Ledger) -> AsyncIterator[httpx.AsyncClient]:
    """The app; webhooks need no API key."""
    async with client_for(clerk_ledger, "no-key") as client:
        yield client


def signed(
    event: dict[str, Any],
    *,
    secret: str = CLERK_SECRET,
    message_id: str | None = None,
    sent_at: datetime | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A payload and the Svix headers Clerk sends with it."""
    payload = json.dumps(event)
    message_id = message_id or f"msg_{uuid.uuid4().hex}"
    sent_at = sent_at or datetime.now(UTC)
    return payload.encode(), {
        "svix-id": message_id,
        "svix-timestamp": str(int(sent_at.timestamp())),
        "svix-signature": Webhook(secret).sign(message_id, sent_at, payload),
    }


async def deliver(api: httpx.AsyncClient, event: dict[str, Any], **options: Any) -> httpx.Response:
    """POST a Clerk event to /webhooks/clerk."""
    payload, headers = signed(event, **options)
    return await api.post("/webhooks/clerk", content=payload, headers=headers)
