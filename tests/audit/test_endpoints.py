"""``GET /v1/audit-log``: what admins did, newest first, filtered, and never a write."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from creditsd.inprocess import Ledger
from creditsd.kit import db
from creditsd.kit.pagination import encode_cursor
from creditsd.tables import audit_log
from tests.conftest import Clock, body, client_for, create_key

CREDIT = 10_000


async def audit_count(ledger: Ledger) -> int:
    return await db.run(
        ledger.engine,
        lambda conn: _scalar(conn.execute(select(func.count()).select_from(audit_log))),
        readonly=True,
    )


async def _scalar(result: Any) -> int:
    return int((await result).scalar_one())


async def test_an_admin_reads_what_was_done_newest_first_page_by_page(
    ledger: Ledger, api: httpx.AsyncClient, clock: Clock
) -> None:
    clock.advance(60)
    granted = await api.post(
        "/v1/grants", json={"account_id": "ann", "amount": 100, "reason": "welcome"}
    )
    assert granted.status_code == 201, granted.text
    clock.advance(60)
    frozen = await api.put("/v1/accounts/ann", json={"status": "frozen"})
    assert frozen.status_code == 200, frozen.text
    clock.advance(60)
    await api.post("/v1/grants", json={"account_id": "bob", "amount": 5, "reason": "promo"})

    page = await api.get("/v1/audit-log")
    assert page.status_code == 200, page.text
    records = body(page)["data"]
    assert [(r["action"], r["target"]) for r in records] == [
        ("grant", "bob"),
        ("account.frozen", "ann"),
        ("grant", "ann"),
        ("key.create", records[-1]["target"]),  # the fixture's admin key
    ]
    assert body(page)["next_cursor"] is None
    ann = records[2]
    assert ann["actor"].startswith("key:key_") and ann["actor"].endswith(":admin-app")
    assert ann["before"] == {"balance": 0}  # amounts in credits, as everywhere in the API
    assert ann["after"] == {"balance": 100, "transfer_id": body(granted)["id"]}
    assert records[1]["after"] == {"status": "frozen", "reason": None, "frozen_by": ["operator"]}
    assert records[-1]["before"] is None
    assert records[-1]["actor"] == "test"
    assert isinstance(ann["id"], int) and ann["created_at"].endswith("Z")
    assert [r["id"] for r in records] == sorted((r["id"] for r in records), reverse=True)

    walked: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        listed = body(await api.get("/v1/audit-log", params=params))
        walked += [r["id"] for r in listed["data"]]
        cursor = listed["next_cursor"]
        if cursor is None:
            break
        assert len(listed["data"]) == 3
    assert walked == [r["id"] for r in records]


async def test_filters_by_target_actor_action_and_time(
    ledger: Ledger, api: httpx.AsyncClient, clock: Clock
) -> None:
    start = clock.now
    await api.post("/v1/grants", json={"account_id": "ann", "amount": 1, "reason": "a"})
    clock.advance(3600)
    middle = clock.now
    await ledger.grant("ann", CREDIT, reason="by hand", actor="cli:ops")
    await api.post("/v1/grants", json={"account_id": "bob", "amount": 1, "reason": "b"})
    await api.put("/v1/accounts/bob", json={"status": "frozen"})

    async def listed(**params: str) -> list[tuple[str, str, str]]:
        response = await api.get("/v1/audit-log", params=params)
        assert response.status_code == 200, response.text
        return [(r["actor"], r["action"], r["target"]) for r in body(response)["data"]]

    assert [t for _, _, t in await listed(target="ann")] == ["ann", "ann"]
    assert await listed(actor="cli:ops") == [("cli:ops", "grant", "ann")]
    assert [t for _, _, t in await listed(action="grant")] == ["bob", "ann", "ann"]
    assert [a for _, a, _ in await listed(target="bob", action="account.frozen")] == [
        "account.frozen"
    ]
    assert await listed(target="nobody") == []
    since = (middle - timedelta(seconds=1)).isoformat()
    assert [t for _, _, t in await listed(action="grant", since=since)] == ["bob", "ann"]
    until = (middle - timedelta(seconds=1)).isoformat()
    assert [a for _, a, _ in await listed(until=until)] == ["grant", "key.create"]
    assert await listed(since=(start - timedelta(days=1)).isoformat(), until=until) == (
        await listed(until=until)
    )


async def test_reading_the_audit_log_writes_nothing(ledger: Ledger, api: httpx.AsyncClient) -> None:
    await api.post("/v1/grants", json={"account_id": "ann", "amount": 1, "reason": "a"})
    before = await audit_count(ledger)
    for params in ({}, {"target": "ann"}, {"target": "ghost"}, {"limit": 1}):
        assert (await api.get("/v1/audit-log", params=params)).status_code == 200
    assert await audit_count(ledger) == before


@pytest.mark.parametrize("scope", ["app", "read"])
async def test_only_admin_keys_read_the_audit_log(ledger: Ledger, scope: str) -> None:
    async with client_for(ledger, await create_key(ledger, scope)) as client:
        refused = await client.get("/v1/audit-log")
    assert refused.status_code == 403
    assert body(refused)["error"]["code"] == "forbidden"
    assert "admin" in body(refused)["error"]["message"]
    async with client_for(ledger, "cdk_unknown") as anonymous:
        assert (await anonymous.get("/v1/audit-log")).status_code == 401


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"cursor": "!!!"}, "invalid_cursor"),
        ({"cursor": ""}, "invalid_cursor"),
        ({"cursor": encode_cursor("abc")}, "invalid_cursor"),
        ({"cursor": encode_cursor("-5")}, "invalid_cursor"),
        ({"cursor": encode_cursor("²")}, "invalid_cursor"),
        ({"cursor": encode_cursor("9" * 40)}, "invalid_cursor"),
        ({"cursor": "x" * 513}, "validation_error"),
        ({"limit": "0"}, "validation_error"),
        ({"limit": "101"}, "validation_error"),
        ({"limit": "ten"}, "validation_error"),
        ({"since": "yesterday"}, "validation_error"),
        ({"since": "2026-11-01T00:00:00"}, "validation_error"),  # no offset
        ({"since": "2026-12-01T00:00:00Z", "until": "2026-11-01T00:00:00Z"}, "invalid_request"),
        ({"target": "a\x00b"}, "validation_error"),
        ({"actor": "x" * 129}, "validation_error"),
        ({"action": "x" * 65}, "validation_error"),
    ],
)
async def test_bad_parameters_are_4xx_naming_the_problem(
    api: httpx.AsyncClient, params: dict[str, str], code: str
) -> None:
    response = await api.get("/v1/audit-log", params=params)
    assert response.status_code == 422, response.text
    assert body(response)["error"]["code"] == code
    assert body(response)["error"]["message"]


async def test_webhook_deliveries_refuse_a_cursor_that_is_not_theirs(
    api: httpx.AsyncClient,
) -> None:
    for cursor in (encode_cursor("abc"), encode_cursor("9" * 40)):
        response = await api.get("/v1/webhook-deliveries", params={"cursor": cursor})
        assert response.status_code == 422, response.text
        assert body(response)["error"]["code"] == "invalid_cursor"


async def test_the_openapi_describes_the_audit_log(api: httpx.AsyncClient) -> None:
    spec = body(await api.get("/openapi.json"))
    operation = spec["paths"]["/v1/audit-log"]["get"]
    assert {"401", "403", "422", "503"} <= set(operation["responses"])
    assert {p["name"] for p in operation["parameters"]} == {
        "target",
        "actor",
        "action",
        "since",
        "until",
        "limit",
        "cursor",
    }
    record = spec["components"]["schemas"]["AuditRecordOut"]
    assert record["examples"]
    assert set(record["required"]) == {
        "id",
        "actor",
        "action",
        "target",
        "before",
        "after",
        "created_at",
    }
