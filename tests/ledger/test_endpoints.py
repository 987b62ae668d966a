"""The ledger over HTTP, as a newcomer's curl session sees it."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from creditsd.api.app import create_app
from creditsd.inprocess import Ledger
from tests.conftest import LedgerFactory, audit_trail, body, create_key


async def test_the_five_minute_tour(api: httpx.AsyncClient) -> None:
    created = await api.put("/v1/accounts/user_2abc")
    assert created.status_code == 201
    assert body(created)["balance"] == 0
    assert (await api.put("/v1/accounts/user_2abc")).status_code == 200

    grant = await api.post(
        "/v1/grants", json={"account_id": "user_2abc", "amount": 100, "reason": "welcome"}
    )
    assert grant.status_code == 201
    assert body(grant)["balance"] == 100

    charge = await api.post(
        "/v1/charges",
        json={"account_id": "user_2abc", "amount": "10.5", "description": "chat_message"},
        headers={"Idempotency-Key": "msg-1"},
    )
    assert charge.status_code == 201
    charged = body(charge)
    assert (charged["amount"], charged["balance"], charged["available"]) == (
        Decimal("10.5"),
        Decimal("89.5"),
        Decimal("89.5"),
    )
    assert b'"balance":89.5' in charge.content  # a JSON number, written exactly

    refused = await api.post("/v1/charges", json={"account_id": "user_2abc", "amount": 1000})
    assert refused.status_code == 402
    assert body(refused)["error"] == {
        "code": "insufficient_credits",
        "message": "insufficient credits",
        "account_id": "user_2abc",
        "required": 1000,
        "available": Decimal("89.5"),
    }

    history = body(await api.get("/v1/accounts/user_2abc/transactions"))
    assert [(t["kind"], t["change"]) for t in history["data"]] == [
        ("charge", Decimal("-10.5")),
        ("grant", 100),
    ]
    assert history["next_cursor"] is None
    one = body(await api.get(f"/v1/transactions/{charged['id']}"))
    assert one["description"] == "chat_message"
    verified = body(await api.get("/v1/accounts/user_2abc/verify"))
    assert verified["valid"] is True
    assert verified["stored"] == verified["calculated"] == Decimal("89.5")


async def test_replay_answers_the_original_and_says_so(api: httpx.AsyncClient) -> None:
    await api.post("/v1/grants", json={"account_id": "u", "amount": 50})
    request = {"account_id": "u", "amount": 5}
    first = await api.post("/v1/charges", json=request, headers={"Idempotency-Key": "k1"})
    again = await api.post("/v1/charges", json={**request, "idempotency_key": "k1"})
    assert again.status_code == 201
    assert body(again) == body(first)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    conflict = await api.post(
        "/v1/charges", json={"account_id": "u", "amount": 6}, headers={"Idempotency-Key": "k1"}
    )
    assert conflict.status_code == 409
    assert body(conflict)["error"]["code"] == "idempotency_conflict"
    mismatch = await api.post(
        "/v1/charges", json={**request, "idempotency_key": "k2"}, headers={"Idempotency-Key": "k3"}
    )
    assert mismatch.status_code == 422
    assert body(await api.get("/v1/accounts/u"))["balance"] == 45


BAD_AMOUNTS = [
    ("NaN", "invalid_number"),
    ("Infinity", "invalid_number"),
    ("-Infinity", "invalid_number"),
    ("1e400", "invalid_amount"),
    ("-1", "invalid_amount"),
    ("0", "invalid_amount"),
    ("0.00001", "invalid_amount"),
    ("9223372036854775808", "invalid_amount"),
    ('"NaN"', "validation_error"),
    ('"ten"', "validation_error"),
    ('"1e3"', "validation_error"),
    ('" 10"', "validation_error"),
    ("true", "validation_error"),
    ("null", "validation_error"),
    ("[10]", "validation_error"),
    ('{"value": 10}', "validation_error"),
]


@pytest.mark.parametrize(("amount", "code"), BAD_AMOUNTS)
async def test_bad_amounts_are_refused_and_nothing_is_written(
    api: httpx.AsyncClient, amount: str, code: str
) -> None:
    await api.post("/v1/grants", json={"account_id": "u", "amount": 10})
    for path in ("/v1/charges", "/v1/grants", "/v1/holds"):
        response = await api.post(
            path,
            content=f'{{"account_id": "u", "amount": {amount}}}',
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 422, (path, response.text)
        assert body(response)["error"]["code"] == code
    account = body(await api.get("/v1/accounts/u"))
    assert (account["balance"], account["held"]) == (10, 0)
    assert len(body(await api.get("/v1/accounts/u/transactions"))["data"]) == 1


@pytest.mark.parametrize("account_id", ["a%20b", "x" * 129, "%40revenue", "a%2Fb", "%C3%A9"])
async def test_odd_account_ids_in_paths_are_refused(
    api: httpx.AsyncClient, account_id: str
) -> None:
    for response in (
        await api.get(f"/v1/accounts/{account_id}"),
        await api.put(f"/v1/accounts/{account_id}"),
    ):
        assert response.status_code in {404, 422}, response.text
        assert body(response)["error"]["code"] in {"validation_error", "not_found"}
    assert body(await api.get("/v1/accounts"))["data"] == []


async def test_unknown_accounts_are_404_when_auto_create_is_off(make_ledger: LedgerFactory) -> None:
    ledger = await make_ledger(accounts={"auto_create": "false"})
    secret = await create_key(ledger, "admin")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(ledger, sweep=False)),
        base_url="http://t",
        headers={"Authorization": f"Bearer {secret}"},
    ) as api:
        for response in (
            await api.get("/v1/accounts/ghost"),
            await api.post("/v1/charges", json={"account_id": "ghost", "amount": 1}),
            await api.post("/v1/grants", json={"account_id": "ghost", "amount": 1}),
            await api.get("/v1/accounts/ghost/transactions"),
            await api.get("/v1/accounts/ghost/verify"),
        ):
            assert response.status_code == 404
            assert body(response)["error"]["code"] == "account_not_found"
        assert (await api.put("/v1/accounts/ghost")).status_code == 201


async def test_put_account_with_settings(api: httpx.AsyncClient) -> None:
    created = await api.put(
        "/v1/accounts/org:acme",
        json={
            "initial_grant": "250.5",
            "overdraft_limit": 20,
            "aliases": ["42"],
            "metadata": {"plan": "team", "seats": 5, "rate": 1.25, "trial": False},
        },
    )
    assert created.status_code == 201
    account = body(created)
    assert (account["balance"], account["available"], account["overdraft_limit"]) == (
        Decimal("250.5"),
        Decimal("270.5"),
        20,
    )
    assert account["aliases"] == ["42"]
    assert account["metadata"] == {
        "plan": "team",
        "seats": 5,
        "rate": Decimal("1.25"),
        "trial": False,
    }
    via_alias = body(await api.get("/v1/accounts/42"))
    assert via_alias["id"] == "org:acme"
    listed = body(await api.get("/v1/accounts", params={"search": "org:"}))
    assert [a["id"] for a in listed["data"]] == ["org:acme"]
    taken = await api.put("/v1/accounts/other", json={"aliases": ["42"]})
    assert taken.status_code == 409
    assert body(taken)["error"]["code"] == "alias_taken"


async def test_account_list_pages(api: httpx.AsyncClient) -> None:
    for n in range(5):
        await api.put(f"/v1/accounts/acct-{n}")
    first = body(await api.get("/v1/accounts", params={"limit": 2}))
    second = body(
        await api.get("/v1/accounts", params={"limit": 2, "cursor": first["next_cursor"]})
    )
    third = body(
        await api.get("/v1/accounts", params={"limit": 2, "cursor": second["next_cursor"]})
    )
    ids = [a["id"] for page in (first, second, third) for a in page["data"]]
    assert ids == [f"acct-{n}" for n in range(5)]
    assert third["next_cursor"] is None
    for params in ({"limit": 0}, {"limit": 101}, {"limit": "x"}, {"cursor": "!!!"}):
        response = await api.get("/v1/accounts", params=params)
        assert response.status_code == 422


async def test_an_operator_freezes_and_reactivates_an_account(
    api: httpx.AsyncClient, ledger: Ledger
) -> None:
    await api.post("/v1/grants", json={"account_id": "frosty", "amount": 10})
    frozen = await api.put("/v1/accounts/frosty", json={"status": "frozen"})
    assert (frozen.status_code, body(frozen)["status"]) == (200, "frozen")
    refused = await api.post("/v1/charges", json={"account_id": "frosty", "amount": 1})
    assert (refused.status_code, body(refused)["error"]["code"]) == (409, "account_frozen")
    held = await api.post("/v1/holds", json={"account_id": "frosty", "amount": 1})
    assert held.status_code == 409
    granted = await api.post("/v1/grants", json={"account_id": "frosty", "amount": 5})
    assert granted.status_code == 201  # credits still arrive

    secret = await create_key(ledger, "app", "web")
    app_put = await api.put(
        "/v1/accounts/frosty",
        json={"status": "active"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert app_put.status_code == 403
    assert (await api.put("/v1/accounts/frosty", json={"status": "melted"})).status_code == 422

    await api.put("/v1/accounts/frosty", json={"status": "active"})
    charged = await api.post("/v1/charges", json={"account_id": "frosty", "amount": 1})
    assert (charged.status_code, body(charged)["balance"]) == (201, 14)
    async with ledger.engine.connect() as conn:
        trail = [record.action for record in await audit_trail(conn, "frosty")]
    assert trail == [
        "grant",
        "account.frozen",
        "grant",
        "account.active",
    ]
