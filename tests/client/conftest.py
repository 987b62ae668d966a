"""Fixtures for the SDK tests: SDK clients on the real app in-process, and canned answers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from creditsd.api.app import create_app
from creditsd.client import AsyncClient
from creditsd.inprocess import Ledger
from creditsd.kit import jsonio

BASE_URL = "http://creditsd.test"

Connect = Callable[..., AsyncClient]


@pytest.fixture
def app(ledger: Ledger) -> FastAPI:
    """The API over the test's ledger, without the hold sweeper."""
    return create_app(ledger, sweep=False)


@pytest.fixture
async def connect(app: FastAPI) -> AsyncIterator[Connect]:
    """Open AsyncClients on the in-process app with a key's secret; no backoff pauses."""
    opened: list[AsyncClient] = []

    def factory(
        secret: str, *, transport: httpx.AsyncBaseTransport | None = None, **options: Any
    ) -> AsyncClient:
        options.setdefault("backoff", 0)
        client = AsyncClient(
            BASE_URL, secret, transport=transport or httpx.ASGITransport(app=app), **options
        )
        opened.append(client)
        return client

    yield factory
    for client in opened:
        await client.aclose()


def account_json(**fields: Any) -> dict[str, Any]:
    """An account as the server writes it."""
    return {
        "id": "u",
        "balance": 100,
        "held": 0,
        "available": 100,
        "overdraft_limit": 0,
        "status": "active",
        "balance_by_source": {"promotion": 100},
        "aliases": [],
        "metadata": None,
        "created_at": "2026-11-22T10:00:00.000000Z",
        "updated_at": "2026-11-22T10:00:00.000000Z",
        **fields,
    }


def transfer_json(**fields: Any) -> dict[str, Any]:
    """A charge as the server writes it."""
    return {
        "id": "tr_1",
        "kind": "charge",
        "account_id": "u",
        "amount": 10,
        "change": -10,
        "balance": 90,
        "available": 90,
        "debit_account_id": "u",
        "credit_account_id": "@revenue",
        "description": None,
        "metadata": None,
        "hold_id": None,
        "app": "chat",
        "idempotency_key": "k",
        "created_at": "2026-11-22T10:00:00.000000Z",
        "pricing": None,
        "lots": [{"lot_id": "lot_1", "source": "promotion", "amount": 10, "expires_at": None}],
        "paid": 0,
        "free": 10,
        **fields,
    }


def hold_json(**fields: Any) -> dict[str, Any]:
    """An open hold as the server writes it."""
    return {
        "id": "hold_1",
        "account_id": "u",
        "status": "open",
        "amount": 50,
        "captured": 0,
        "held": 50,
        "expires_at": "2026-11-22T10:15:00.000000Z",
        "description": None,
        "metadata": None,
        "idempotency_key": "k",
        "created_at": "2026-11-22T10:00:00.000000Z",
        "updated_at": "2026-11-22T10:00:00.000000Z",
        **fields,
    }


def limit_json(**fields: Any) -> dict[str, Any]:
    """A member's day limit, part spent, as the server writes it."""
    return {
        "scope": "member",
        "subject": "ada",
        "period": "day",
        "mode": "hard",
        "amount": 1000,
        "spent": 600,
        "held": Decimal("50.5"),
        "remaining": Decimal("349.5"),
        "window_start": "2026-12-07T00:00:00.000000Z",
        "resets_at": "2026-12-08T00:00:00.000000Z",
        "since": "2026-11-22T10:00:00.000000Z",
        **fields,
    }


def member_json(**fields: Any) -> dict[str, Any]:
    """A wallet's member with one limit, as the server writes it."""
    return {
        "account_id": "org:acme",
        "member_id": "ada",
        "display_name": "Ada",
        "limits": [limit_json()],
        "created_at": "2026-11-22T10:00:00.000000Z",
        "updated_at": "2026-11-22T10:00:00.000000Z",
        **fields,
    }


def endpoint_json(**fields: Any) -> dict[str, Any]:
    """A webhook endpoint as the server lists it (its secret masked)."""
    return {
        "id": "we_1",
        "url": "https://app.example/hooks",
        "events": ["balance.low", "charge.succeeded"],
        "secret": "whsec_…Zx9Q",
        "description": None,
        "created_at": "2026-11-22T10:00:00.000000Z",
        "disabled_at": None,
        **fields,
    }


def delivery_json(**fields: Any) -> dict[str, Any]:
    """A webhook delivery, not yet delivered, as the server writes it."""
    return {
        "id": 7,
        "destination": "we_1",
        "message_id": "msg_1",
        "event_type": "balance.low",
        "account_id": "u",
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": "2026-11-22T10:00:05.000000Z",
        "last_error": None,
        "created_at": "2026-11-22T10:00:00.000000Z",
        "delivered_at": None,
        "payload": {
            "type": "balance.low",
            "timestamp": "2026-11-22T10:00:00.000000Z",
            "data": {"account_id": "u", "balance": 40, "threshold": 50, "transfer_id": "tr_1"},
        },
        **fields,
    }


def audit_json(**fields: Any) -> dict[str, Any]:
    """An audit record of a grant as the server writes it."""
    return {
        "id": 42,
        "actor": "key:key_1:billing",
        "action": "grant",
        "target": "u",
        "before": {"balance": 0},
        "after": {"balance": 1000000, "transfer_id": "tr_1"},
        "created_at": "2026-11-22T10:00:00.000000Z",
        **fields,
    }


def error_json(code: str, message: str = "refused", **details: Any) -> dict[str, Any]:
    """An error answer in the server's shape."""
    return {"error": {"code": code, "message": message, **details}}


def answer(status: int, body: Any = None, **headers: str) -> httpx.Response:
    """A JSON answer, written as the server writes it (decimals as exact numbers)."""
    return httpx.Response(
        status,
        content=jsonio.dumps(body),
        headers={"Content-Type": "application/json", **headers},
    )
