"""Malformed input is a 4xx naming the problem on every backend, never a 500 or a 503, and
it writes nothing (issue 10's findings, each failing before its fix)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from creditsd.inprocess import Ledger
from tests.conftest import LedgerFactory, body, client_for, create_key
from tests.gateway.conftest import INTERNAL_SECRET

NUL = "a\u0000b"


@pytest.mark.parametrize(
    ("method", "path", "payload", "field"),
    [
        (
            "POST",
            "/v1/charges",
            {"account_id": "u", "amount": 1, "description": NUL},
            "description",
        ),
        ("POST", "/v1/grants", {"account_id": "u", "amount": 1, "reason": NUL}, "reason"),
        ("POST", "/v1/holds", {"account_id": "u", "amount": 1, "description": NUL}, "description"),
        (
            "POST",
            "/v1/charges",
            {"account_id": "u", "amount": 1, "metadata": {"k": NUL}},
            "metadata",
        ),
        ("POST", "/v1/charges", {"account_id": "u", "amount": 1, "metadata": {NUL: 1}}, "metadata"),
        ("PUT", "/v1/accounts/u", {"metadata": {"k": NUL}}, "metadata"),
    ],
)
async def test_a_nul_character_is_refused_by_name_and_nothing_moves(
    api: httpx.AsyncClient, method: str, path: str, payload: dict[str, Any], field: str
) -> None:
    await api.post("/v1/grants", json={"account_id": "u", "amount": 100})
    before = body(await api.get("/v1/accounts/u"))
    answer = await api.request(method, path, json=payload)
    assert answer.status_code == 422, answer.text
    error = body(answer)["error"]
    assert error["code"] == "validation_error"
    assert field in error["message"] and "NUL" in error["message"]
    after = body(await api.get("/v1/accounts/u"))
    assert (after["balance"], after["held"], after["metadata"]) == (
        before["balance"],
        before["held"],
        before["metadata"],
    )


async def test_a_nul_in_a_search_is_a_422_not_an_outage(api: httpx.AsyncClient) -> None:
    answer = await api.get("/v1/accounts", params={"search": NUL})
    assert answer.status_code == 422, answer.text
    assert "search" in body(answer)["error"]["message"]


async def test_a_quantity_beyond_any_price_is_a_422(api: httpx.AsyncClient) -> None:
    for quantity in ("1e100", "1e999999999"):
        answer = await api.post(
            "/v1/quotes",
            content='{"feature": "video_generation", "quantity": ' + quantity + "}",
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code == 422, answer.text
        assert body(answer)["error"]["code"] in {"invalid_quantity", "invalid_number"}


async def test_one_unpriceable_usage_event_fails_alone(api: httpx.AsyncClient) -> None:
    await api.post("/v1/grants", json={"account_id": "u", "amount": 100})
    batch = (
        '{"events": ['
        '{"id": "huge", "account_id": "u", "feature": "video_generation", "quantity": 1e100},'
        '{"id": "fine", "account_id": "u", "feature": "chat_message"}]}'
    )
    answer = await api.post(
        "/v1/usage", content=batch, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 200, answer.text
    huge, fine = body(answer)["results"]
    assert huge["status"] == "invalid" and huge["error"]["code"] == "invalid_quantity"
    assert fine["status"] == "charged"
    assert body(await api.get("/v1/accounts/u"))["balance"] == 90


@pytest.fixture
async def gateway(make_ledger: LedgerFactory) -> Any:
    ledger: Ledger = await make_ledger(
        gateway={"internal_secret": INTERNAL_SECRET}, app_link={"internal_secret": INTERNAL_SECRET}
    )
    async with client_for(ledger, await create_key(ledger, "admin")) as client:
        client.headers["X-Internal-Secret"] = INTERNAL_SECRET
        yield client


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/api/internal/balance/sync", '{"user_id": 1, "balance_points": 1e999999999}'),
        ("/api/internal/balance/sync", '{"user_id": 1, "balance_usd": -1e999999999}'),
        (
            "/api/internal/webhooks/usage",
            '{"event": "usage", "userId": 1, "model": "m", "cost": 1e999999999,'
            ' "totalCost": 1, "timestamp": 1}',
        ),
        (
            "/api/internal/webhooks/usage",
            '{"event": "usage", "userId": 1, "model": "a\\u0000b", "cost": 1,'
            ' "totalCost": 1, "timestamp": 1}',
        ),
    ],
)
async def test_the_gateway_link_answers_absurd_figures_with_a_422(
    gateway: httpx.AsyncClient, path: str, payload: str
) -> None:
    answer = await gateway.post(path, content=payload, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert body(answer)["error"]["code"] in {"validation_error", "invalid_request"}


@pytest.mark.parametrize(
    ("path", "limit"),
    [("/v1/charges", 64 * 1024), ("/webhooks/stripe", 16 * 1024), ("/webhooks/clerk", 16 * 1024)],
)
async def test_a_body_past_the_limit_is_refused_while_it_streams(
    make_ledger: LedgerFactory, path: str, limit: int
) -> None:
    ledger = await make_ledger(
        server={"max_body_bytes": str(64 * 1024), "max_webhook_body_bytes": str(16 * 1024)},
        stripe={"secret_key": "sk_test_x", "webhook_secret": "whsec_x"},
        clerk={"webhook_secret": "whsec_eA=="},
    )
    sent = 0

    async def chunked() -> Any:  # no Content-Length: 300 MiB, a MiB at a time
        nonlocal sent
        for _ in range(300):
            sent += 1
            yield b'{"pad": "' + b"x" * (1 << 20)

    async with client_for(ledger, await create_key(ledger, "admin")) as client:
        answer = await client.post(
            path, content=chunked(), headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 413, answer.text
    assert body(answer)["error"]["code"] == "body_too_large"
    assert str(limit) in body(answer)["error"]["message"]
    assert sent <= 2  # refused at the first chunk past the limit, not after reading it all
