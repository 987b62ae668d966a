"""Seed 000 inbound: balance sync and usage posts from the gateway, behind its secret."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest

from creditsd.inprocess import Ledger
from tests.api.test_observe import sample
from tests.conftest import LedgerFactory, body, client_for

CREDIT = 10_000

SYNC = "/api/internal/balance/sync"
USAGE = "/api/internal/webhooks/usage"

SEED_USAGE = {
    "event": "usage",
    "userId": 123,
    "model": "gpt-4o-mini",
    "inputTokens": 100,
    "outputTokens": 200,
    "cacheReadTokens": 0,
    "cacheWriteTokens": 0,
    "cost": 0.003,
    "totalCost": 0.003,
    "rateMultiplier": 1,
    "timestamp": 1700000000000,
    "sub2api_balance_usd": -3.25,
}


async def test_the_seed_examples_set_the_balance_by_audited_sync_transfers(
    linked: Ledger, gateway: httpx.AsyncClient
) -> None:
    points = await gateway.post(SYNC, json={"user_id": 123, "balance_points": 105000})
    assert points.status_code == 200
    assert (body(points)["user_id"], body(points)["balance"]) == (123, 10.5)
    assert (await linked.get_account("123")).balance == 1_050 * CREDIT  # 100 credits a dollar

    dollars = await gateway.post(SYNC, json={"user_id": 123, "balance_usd": -3.25})
    assert body(dollars)["data"] == {"user_id": 123, "balance": -3.25}
    account = await linked.get_account("123")
    assert (account.balance, account.by_source) == (-325 * CREDIT, {"overdrawn": -325 * CREDIT})

    again = await gateway.post(SYNC, json={"user_id": "123", "balance": "-3.25"})
    assert body(again)["data"] == {"user_id": "123", "balance": -3.25}
    history = (await linked.transactions("123")).items
    assert [(t.kind, t.change_for("123")) for t in history] == [
        ("sync", -1_375 * CREDIT),
        ("sync", 1_050 * CREDIT),
    ]  # the repeat moved nothing
    assert (await linked.verify_account("123")).valid
    assert await linked.ledger_total() == 0


async def test_dollars_are_rounded_to_four_places(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post(SYNC, json={"user_id": 7, "balance_usd": "1.23456"})
    assert body(response)["balance"] == Decimal("1.2346")
    points = await gateway.post(SYNC, json={"user_id": 7, "balance_points": 1})
    assert body(points)["balance"] == Decimal("0.0001")


@pytest.mark.parametrize(
    "raw",
    [
        '{"user_id": 1, "balance_usd": NaN}',
        '{"user_id": 1, "balance_usd": "NaN"}',
        '{"user_id": 1, "balance_usd": Infinity}',
        '{"user_id": 1, "balance_usd": -Infinity}',
        '{"user_id": 1, "balance_usd": "Infinity"}',
        '{"user_id": 1, "balance_usd": "inf"}',
        '{"user_id": 1, "balance_usd": 1e309}',
        '{"user_id": 1, "balance_points": 1e400}',
        '{"user_id": 1, "balance_usd": 1, "balance_points": 1}',
        '{"user_id": 1}',
        '{"user_id": 1, "balance_usd": true}',
        '{"user_id": 1, "balance_usd": [1]}',
        '{"user_id": 1, "balance_usd": "1e3"}',
        '{"user_id": 1.5, "balance_usd": 1}',
        '{"user_id": true, "balance_usd": 1}',
        '{"user_id": "", "balance_usd": 1}',
        '{"balance_usd": 1}',
        '{"user_id": 1, "balance_usd": 1, "user_id": 2}',
        "[]",
        "not json",
    ],
)
async def test_bad_sync_bodies_are_refused_and_nothing_moves(
    linked: Ledger, gateway: httpx.AsyncClient, raw: str
) -> None:
    response = await gateway.post(SYNC, content=raw, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500
    assert "error" in body(response)
    assert await linked.count_accounts() == 0


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", "gateway-internal-secret-012345678"])
async def test_a_wrong_or_missing_secret_is_401_and_nothing_is_read(
    linked: Ledger, secret: str | None
) -> None:
    async with client_for(linked, "no-key") as client:
        headers = {} if secret is None else {"X-Internal-Secret": secret}
        for path, payload in [(SYNC, '{"user_id": 1, "balance_usd": NaN}'), (USAGE, "{}")]:
            response = await client.post(
                path, content=payload, headers={**headers, "Content-Type": "application/json"}
            )
            assert response.status_code == 401  # before the body is even looked at
            assert body(response)["error"]["code"] == "invalid_internal_secret"
    assert await linked.count_accounts() == 0


async def test_without_a_configured_secret_the_link_is_closed(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post(SYNC, json={"user_id": 1, "balance_usd": 1})
    assert (response.status_code, body(response)["error"]["code"]) == (
        503,
        "gateway_not_configured",
    )


async def test_an_unknown_user_is_404_when_accounts_are_not_created_on_first_touch(
    make_ledger: LedgerFactory,
) -> None:
    from tests.gateway.conftest import INTERNAL_SECRET

    ledger = await make_ledger(
        app_link={"internal_secret": INTERNAL_SECRET}, accounts={"auto_create": False}
    )
    async with client_for(ledger, "no-key") as client:
        response = await client.post(
            SYNC,
            json={"user_id": 404, "balance_usd": 1},
            headers={"X-Internal-Secret": INTERNAL_SECRET},
        )
    assert (response.status_code, body(response)["error"]["code"]) == (404, "account_not_found")


async def test_the_seed_usage_post_charges_its_cost_once(
    linked: Ledger, gateway: httpx.AsyncClient
) -> None:
    await gateway.post(SYNC, json={"user_id": 123, "balance_usd": 10})
    first = await gateway.post(USAGE, json=SEED_USAGE)
    assert (first.status_code, body(first)["status"]) == (200, "charged")
    assert body(first)["balance"] == Decimal("9.997")  # 0.003 USD is 0.3 credits
    again = await gateway.post(USAGE, json=SEED_USAGE)
    assert (body(again)["status"], body(again)["transfer_id"]) == (
        "duplicate",
        body(first)["transfer_id"],
    )
    newer_balance = await gateway.post(USAGE, json={**SEED_USAGE, "sub2api_balance_usd": 9.9})
    assert body(newer_balance)["status"] == "duplicate"  # the balance it reports is not the request

    charge = await linked.get_transfer(body(first)["transfer_id"])
    assert (charge.kind, charge.amount, charge.app) == ("charge", 3_000, "gateway")
    assert charge.pricing is not None
    assert charge.pricing["model"] == "gpt-4o-mini"
    assert (
        charge.pricing["gateway_balance_usd"] == -3.25
        or str(charge.pricing["gateway_balance_usd"]) == "-3.25"
    )
    assert (await linked.get_account("123")).balance == 1_000 * CREDIT - 3_000


async def test_a_post_s_own_fields_are_kept_but_never_stand_in_for_creditsd_s(
    linked: Ledger, gateway: httpx.AsyncClient
) -> None:
    planted = {"source": "catalog", "cost_usd": 9, "credits_per_usd": 1, "tier": "pro"}
    posted = await gateway.post(USAGE, json={**SEED_USAGE, **planted})
    charge = await linked.get_transfer(body(posted)["transfer_id"])
    assert charge.pricing is not None
    assert charge.pricing["source"] == "gateway" and charge.pricing["tier"] == "pro"
    assert (charge.pricing["cost_usd"], charge.pricing["credits_per_usd"]) == (
        Decimal("0.003"),
        100,
    )


async def test_usage_is_idempotent_by_request_id_and_ignores_zero_cost(
    linked: Ledger, gateway: httpx.AsyncClient
) -> None:
    headers = {"X-Request-Id": "req-1"}
    first = await gateway.post(USAGE, json=SEED_USAGE, headers=headers)
    resent = await gateway.post(
        USAGE, json={**SEED_USAGE, "timestamp": 1700000000001}, headers=headers
    )
    assert resent.status_code == 409  # the same request id with another request
    other = await gateway.post(USAGE, json=SEED_USAGE, headers={"Idempotency-Key": "req-2"})
    assert body(other)["transfer_id"] != body(first)["transfer_id"]

    free = await gateway.post(USAGE, json={**SEED_USAGE, "userId": 555, "cost": 0, "totalCost": 0})
    assert (body(free)["status"], body(free)["transfer_id"], body(free)["balance"]) == (
        "ignored",
        None,
        None,
    )
    assert (await linked.get_account("123")).balance == -6_000  # two charges, below zero
    for bad in ({"cost": -1}, {"cost": "NaN"}, {"event": "refund"}, {"inputTokens": -1}):
        refused = await gateway.post(USAGE, json={**SEED_USAGE, **bad})
        assert refused.status_code == 422, bad


async def test_the_openapi_says_balances_are_numbers_as_they_are_sent(
    gateway: httpx.AsyncClient,
) -> None:
    synced = body(await gateway.post(SYNC, json={"user_id": 8, "balance_usd": "0"}))
    used = body(await gateway.post(USAGE, json={**SEED_USAGE, "userId": 8}))
    assert isinstance(synced["balance"], Decimal) and isinstance(used["balance"], Decimal)
    schemas = body(await gateway.get("/openapi.json"))["components"]["schemas"]
    assert schemas["BalanceOut"]["properties"]["balance"]["type"] == "number"
    assert schemas["UsageReceipt"]["properties"]["balance"]["anyOf"][0]["type"] == "number"


async def test_a_sync_with_fields_added_later_is_taken_and_they_are_kept(
    linked: Ledger, gateway: httpx.AsyncClient
) -> None:
    sent = {"user_id": 77, "balance_usd": 2, "balance_points": None, "source": "admin-panel"}
    answer = await gateway.post(SYNC, json=sent)
    assert answer.status_code == 200, answer.text
    (sync,) = (await linked.transactions("77")).items
    assert sync.metadata == {"source": "admin-panel"}


async def test_identical_posts_sent_at_once_are_deduplicated_as_if_sent_one_at_a_time(
    linked: Ledger, gateway: httpx.AsyncClient
) -> None:
    # What looked like a race was posts stamped with the time they were sent: only those of
    # the same millisecond are identical. Identical bytes charge once, however they arrive.
    at_once = await asyncio.gather(*(gateway.post(USAGE, json=SEED_USAGE) for _ in range(16)))
    one_by_one = [await gateway.post(USAGE, json={**SEED_USAGE, "userId": 7}) for _ in range(16)]
    for answers in (at_once, one_by_one):
        statuses = sorted(body(answer)["status"] for answer in answers)
        assert statuses == ["charged"] + ["duplicate"] * 15
    assert (await linked.get_account("123")).balance == -3_000
    assert (await linked.get_account("7")).balance == -3_000


async def test_posts_deduplicated_by_their_payload_are_counted_for_the_operator(
    gateway: httpx.AsyncClient,
) -> None:
    before = (await gateway.get("/metrics")).text
    await gateway.post(USAGE, json=SEED_USAGE)
    await gateway.post(USAGE, json=SEED_USAGE)  # the same bytes: taken for a resend
    await gateway.post(USAGE, json={**SEED_USAGE, "timestamp": 1700000000001})
    for _ in range(2):  # identified by the gateway: neither counted
        await gateway.post(USAGE, json={**SEED_USAGE, "requestId": "req-9"})
    await gateway.post(USAGE, json=SEED_USAGE, headers={"Idempotency-Key": "k-1"})
    await gateway.post(USAGE, json={**SEED_USAGE, "cost": 0, "totalCost": 0})  # nothing to key
    after = (await gateway.get("/metrics")).text

    def grew(name: str) -> float:
        return sample(after, name) - sample(before, name)

    assert grew("creditsd_gateway_usage_without_request_id_total") == 3
    assert grew("creditsd_gateway_usage_deduplicated_by_payload_total") == 1
