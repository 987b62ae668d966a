"""A ledger selling credit packs through the fake Stripe, and signed webhook delivery."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from creditsd.inprocess import Ledger
from creditsd.kit import db
from creditsd.stripe.reconcile import Mismatch, reconcile
from tests.conftest import LedgerFactory, client_for, create_key
from tests.stripe.fake import FakeStripe, sign

WEBHOOK_SECRET = "whsec_test_creditsd"
PRICES = {"price_1k": 1_000, "price_10k": 9_000, "price_100k": 80_000, "price_other": 500}
PACKS = {
    "1k": {"credits": 1_000, "price_id": "price_1k", "label": "Starter"},
    "10k": {"credits": 10_000, "price_id": "price_10k", "display_price": "$90"},
    "100k": {"credits": 100_000, "price_id": "price_100k"},
}
CREDIT = 10_000


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    """The Stripe API double, with the packs' prices and one price no pack sells."""
    with FakeStripe(prices=PRICES) as running:
        yield running


def refusing_port() -> int:
    """A local port where nothing listens: a connection to it is refused (Stripe out of
    reach)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def stripe_settings(fake: FakeStripe, **stripe: Any) -> dict[str, Any]:
    """``[stripe]`` pointed at the fake."""
    return {
        "secret_key": fake.api_key,
        "webhook_secret": WEBHOOK_SECRET,
        "publishable_key": "pk_test_creditsd",
        "api_base": fake.api_base,
        **stripe,
    }


@pytest.fixture
async def shop(make_ledger: LedgerFactory, fake: FakeStripe) -> Ledger:
    """A ledger selling the three packs, no sign-up grant."""
    return await make_ledger(stripe=stripe_settings(fake), packs=PACKS)


@pytest.fixture
async def shop_api(shop: Ledger) -> AsyncIterator[httpx.AsyncClient]:
    """The shop's HTTP API with an app key."""
    async with client_for(shop, await create_key(shop, "app", "web")) as client:
        yield client


async def deliver(
    api: httpx.AsyncClient,
    event: dict[str, Any],
    *,
    secret: str = WEBHOOK_SECRET,
    timestamp: int | None = None,
) -> httpx.Response:
    """POST an event to /webhooks/stripe signed as Stripe signs it."""
    payload = json.dumps(event).encode()
    signature = sign(payload, secret, timestamp=timestamp or int(time.time()))
    return await api.post(
        "/webhooks/stripe",
        content=payload,
        headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
    )


URLS = {"success_url": "https://app.example/ok", "cancel_url": "https://app.example/no"}


async def checkout(api: httpx.AsyncClient, account: str, pack: str) -> str:
    """Start a hosted checkout of a pack; the session id."""
    created = await api.post(
        "/v1/checkout-sessions", json={"account_id": account, "pack": pack, **URLS}
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def buy(api: httpx.AsyncClient, fake: FakeStripe, account: str, pack: str) -> dict[str, Any]:
    """Check out a pack and deliver the paid session's event; the completed session."""
    session = fake.complete_session(await checkout(api, account, pack))
    response = await deliver(api, fake.event("checkout.session.completed", session))
    assert response.status_code == 200 and response.json()["outcome"] == "granted", response.text
    return session


async def reconciled(ledger: Ledger) -> list[Mismatch]:
    """What ``creditsd stripe reconcile`` lists now."""
    return await db.run(ledger.engine, lambda conn: reconcile(conn, ledger.now()), readonly=True)
