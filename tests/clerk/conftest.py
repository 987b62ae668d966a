"""A ledger that takes Clerk's webhooks, and Svix-signed delivery with the svix library."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from svix.webhooks import Webhook

from creditsd.config import load_settings
from creditsd.inprocess import Ledger
from tests.conftest import Clock, LedgerFactory, client_for

CLERK_SECRET = "whsec_" + "Y2xlcmstdGVzdC1zZWNyZXQtZm9yLWNyZWRpdHNk"  # base64, as Svix issues
PLANS = {"cplan_pro": {"credits": 5_000, "label": "Pro"}}

PAYLOADS = Path(__file__).parent / "payloads"
PUBLISHED_USER = "user_34D368EufHwugfYh4yyGNEheM0S"
PUBLISHED_PAYER = "cpayer_2g7np7Hrk0SN6kj5EDMLDaKNL0S"
PUBLISHED_PRO = "cplan_2g7np7Hrk0SN6kj5EDMLDaKNL0S"
PUBLISHED_FREE = "cplan_2free0SN6kj5EDMLDaKNL0S"
_PUBLISHED_START_MS = 1716883200000  # the catalog's examples start their periods here


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


@pytest.fixture
async def billing_ledger(database_url: str, clock: Clock, tmp_path: Path) -> AsyncIterator[Ledger]:
    """Clerk Billing's published plans: Pro grants 5,000 credits a month, and even the
    default free plan is listed (100 credits), so its open-ended period is handled.

    Clerk's plan ids are mixed case, which only the file keeps (variable names fold case).
    """
    config = tmp_path / "creditsd.toml"
    config.write_text(
        f'[clerk]\nwebhook_secret = "{CLERK_SECRET}"\n[accounts]\nsignup_grant = 100\n'
        f"[plans.{PUBLISHED_PRO}]\ncredits = 5000\n[plans.{PUBLISHED_FREE}]\ncredits = 100\n"
    )
    settings = load_settings(config, environ={"CREDITSD_DATABASE_URL": database_url})
    ledger = await Ledger.connect(settings, clock=clock)
    yield ledger
    await ledger.close()


@pytest.fixture
async def billing_api(billing_ledger: Ledger) -> AsyncIterator[httpx.AsyncClient]:
    """Clerk's side of ``billing_ledger``."""
    async with client_for(billing_ledger, "no-key") as client:
        yield client


def published(kind: str, now: datetime | None = None) -> dict[str, Any]:
    """Clerk's example payload of an event type, as its webhook event catalog publishes it
    (``payloads/``), with its billing periods moved to start at ``now`` when given."""
    event: dict[str, Any] = json.loads((PAYLOADS / f"{kind}.json").read_text())
    if now is not None:
        _shift_periods(event, int(now.timestamp() * 1000) - _PUBLISHED_START_MS)
    return event


def _shift_periods(value: Any, by_ms: int) -> None:
    if isinstance(value, list):
        for item in value:
            _shift_periods(item, by_ms)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key in {"period_start", "period_end"} and isinstance(item, int):
                value[key] = item + by_ms
            else:
                _shift_periods(item, by_ms)


def signed(
    event: Any,
    *,
    secret: str = CLERK_SECRET,
    message_id: str | None = None,
    sent_at: datetime | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A payload and the Svix headers Clerk sends with it; a ``str`` event is sent as is."""
    payload = event if isinstance(event, str) else json.dumps(event)
    message_id = message_id or f"msg_{uuid.uuid4().hex}"
    sent_at = sent_at or datetime.now(UTC)
    return payload.encode(), {
        "svix-id": message_id,
        "svix-timestamp": str(int(sent_at.timestamp())),
        "svix-signature": Webhook(secret).sign(message_id, sent_at, payload),
    }


async def deliver(api: httpx.AsyncClient, event: Any, **options: Any) -> httpx.Response:
    """POST a Clerk event to /webhooks/clerk."""
    payload, headers = signed(event, **options)
    return await api.post("/webhooks/clerk", content=payload, headers=headers)
