"""The fast lane answers ``POST /v1/charges`` exactly as FastAPI's route does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from creditsd.api.app import create_app
from creditsd.inprocess import Ledger
from tests.conftest import body, create_key

JSON = {"Content-Type": "application/json"}
CHARGE = b'{"account_id": "rich", "amount": 1}'

# (headers, body) pairs; "APP", "READ" and "ADMIN" in a header stand for keys of that scope.
REQUESTS: list[tuple[dict[str, str], bytes]] = [
    ({"Authorization": "Bearer APP", **JSON}, b'{"account_id": "u", "amount": 1, "x": 1}'),
    ({"Authorization": "Bearer APP", **JSON}, b'{"account_id": "u"}'),
    ({"Authorization": "Bearer APP", **JSON}, b'{"account_id": 7, "amount": "1"}'),
    ({"Authorization": "Bearer APP", **JSON}, b'{"account_id": "u", "amount": NaN}'),
    ({"Authorization": "Bearer APP", **JSON}, b'{"account_id": "u", "amount": 1e400}'),
    ({"Authorization": "Bearer APP", **JSON}, b'{"account_id": "u", "amount": -1}'),
    ({"Authorization": "Bearer APP", **JSON}, b'{"account_id": "u", "amount": 0.0000001}'),
    ({"Authorization": "Bearer APP", **JSON}, b'{"account_id": "u", "amount": 1, "amount": 2}'),
    ({"Authorization": "Bearer APP", **JSON}, b'{"account_id": "u\\u0000", "amount": 1}'),
    ({"Authorization": "Bearer APP", **JSON}, b'{"account_id": "u", "description": "\xff"}'),
    ({"Authorization": "Bearer APP", **JSON}, b"[]"),
    ({"Authorization": "Bearer APP", **JSON}, b"null"),
    ({"Authorization": "Bearer APP", **JSON}, b""),
    ({"Authorization": "Bearer APP", **JSON}, b'{"account_id": "u", "feature": "teleport"}'),
    ({"Authorization": "Bearer APP", **JSON}, b'{"account_id": "u", "amount": 1, "feature": "x"}'),
    ({"Authorization": "Bearer APP", **JSON}, b'{"account_id": "poor", "amount": 5}'),
    ({"Authorization": "Bearer APP", "Content-Type": "text/plain"}, CHARGE),
    ({"Authorization": "Bearer APP", **JSON, "Content-Length": str(2 << 20)}, CHARGE),
    ({"Authorization": "Bearer APP", **JSON, "Idempotency-Key": "has space"}, CHARGE),
    ({"Authorization": "Bearer APP", **JSON, "Idempotency-Key": "k" * 256}, b"{}"),
    (
        {"Authorization": "Bearer APP", **JSON, "Idempotency-Key": "a"},
        b'{"account_id": "rich", "amount": 1, "idempotency_key": "b"}',
    ),
    ({"Authorization": "Bearer READ", **JSON}, CHARGE),
    ({"Authorization": "Bearer cdk_unknown", **JSON}, CHARGE),
    ({"Authorization": "Basic APP", **JSON}, CHARGE),
    ({"Authorization": "Bearer", **JSON}, CHARGE),
    (JSON, b"not json"),
    (JSON, CHARGE),
]


@pytest.fixture
async def pair(ledger: Ledger) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Clients of the app with its fast lane and of the app without it, on one ledger."""
    apps = [create_app(ledger, sweep=False, fast_lane=lane) for lane in (True, False)]
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://creditsd.test")
        for app in apps
    ]
    yield clients[0], clients[1]
    for client, app in zip(clients, apps, strict=True):
        await client.aclose()
        await app.state.stripe.close()


def _comparable(response: httpx.Response) -> tuple[int, dict[str, str | None], Any]:
    """What a caller sees of a response, without what differs between two charges."""
    content = body(response) if response.content else None
    if isinstance(content, dict) and "id" in content:
        content = {k: v for k, v in content.items() if k not in {"id", "created_at", "balance"}}
        content.update(idempotency_key=None, available=None, lots=len(content["lots"]))
    headers = {
        name: response.headers.get(name)
        for name in ("content-type", "www-authenticate", "idempotent-replayed")
    }
    return response.status_code, headers, content


async def test_every_request_gets_the_same_answer_from_both(
    ledger: Ledger, pair: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    secrets = {scope.upper(): await create_key(ledger, scope) for scope in ("app", "read")}
    await ledger.grant("rich", 1_000_000)
    await ledger.grant("poor", 10_000)
    lane, route = pair
    for headers, content in REQUESTS:
        sent = {
            name: " ".join(secrets.get(word, word) for word in value.split(" "))
            for name, value in headers.items()
        }
        answers = [
            await client.post("/v1/charges", headers=sent, content=content) for client in pair
        ]
        assert _comparable(answers[0]) == _comparable(answers[1]), (headers, content)
    assert (await lane.get("/v1/accounts/rich")).status_code == 401  # the rest is FastAPI's
    assert (await route.get("/openapi.json")).json() == (await lane.get("/openapi.json")).json()


async def test_a_charge_and_its_replay_through_the_lane(
    ledger: Ledger, pair: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    await ledger.grant("rich", 1_000_000)
    lane, _route = pair
    headers = {
        "Authorization": f"Bearer {await create_key(ledger, 'app')}",
        "Idempotency-Key": "k1",
    }
    first = await lane.post(
        "/v1/charges", headers=headers, json={"account_id": "rich", "amount": 1}
    )
    again = await lane.post(
        "/v1/charges", headers=headers, json={"account_id": "rich", "amount": 1}
    )
    other = await lane.post(
        "/v1/charges", headers=headers, json={"account_id": "rich", "amount": 2}
    )
    assert first.status_code == again.status_code == 201
    assert body(again) == body(first) and again.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 409 and body(other)["error"]["code"] == "idempotency_conflict"
    assert (await ledger.get_account("rich")).balance == 1_000_000 - ledger.money.unit


async def test_an_unexpected_failure_is_our_500(
    ledger: Ledger,
    pair: tuple[httpx.AsyncClient, httpx.AsyncClient],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lane, _route = pair
    headers = {"Authorization": f"Bearer {await create_key(ledger, 'app')}"}

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(ledger, "charge", broken)
    headers["X-Request-Id"] = "trace-me-7"
    answer = await lane.post("/v1/charges", headers=headers, json={"account_id": "u", "amount": 1})
    assert answer.status_code == 500
    assert body(answer)["error"]["code"] == "internal_error"
    assert "secret internals" not in answer.text
    assert "secret internals" in caplog.text
    assert "request trace-me-7" in caplog.text  # the operator finds the client's request
