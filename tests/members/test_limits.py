"""Team wallets: members spend from one balance, each within its limits, checked and
counted in the transaction of every write that spends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from creditsd.inprocess import Ledger
from creditsd.ledger.limits import LimitReached
from creditsd.ledger.windows import Period
from creditsd.members.service import LimitSpec
from tests.conftest import Clock, body, put_member

CREDIT = 10_000  # minor units of one credit at the default scale


async def _wallet(api: httpx.AsyncClient, credits: int = 10_000) -> None:
    granted = await api.post("/v1/grants", json={"account_id": "acme", "amount": credits})
    assert granted.status_code == 201


async def _member(api: httpx.AsyncClient, member: str, *limits: dict[str, object]) -> Any:
    put = await api.put(f"/v1/accounts/acme/members/{member}", json={"limits": list(limits)})
    assert put.status_code in (200, 201), put.text
    return body(put)


async def test_a_member_spends_within_its_day_limit(api: httpx.AsyncClient) -> None:
    await _wallet(api)
    added = await _member(api, "ada", {"amount": 1000, "period": "day"})
    assert added["limits"][0]["remaining"] == 1000
    charged = await api.post(
        "/v1/charges", json={"account_id": "acme", "amount": 600, "member": "ada"}
    )
    assert charged.status_code == 201
    assert body(charged)["member"] == "ada"
    refused = await api.post(
        "/v1/charges", json={"account_id": "acme", "amount": 500, "member": "ada"}
    )
    assert refused.status_code == 402
    error = body(refused)["error"]
    assert error["code"] == "limit_reached"
    assert (error["limit_source"], error["period"]) == ("member", "day")
    assert (error["limit"], error["remaining"], error["required"]) == (1000, 400, 500)
    resets = datetime.fromisoformat(error["resets_at"])
    assert resets.hour == resets.minute == 0 and resets > datetime.now(UTC)
    # The wallet itself, and a member without limits, still spend.
    other = await api.post("/v1/charges", json={"account_id": "acme", "amount": 500})
    assert other.status_code == 201
    balance = body(await api.get("/v1/accounts/acme"))
    assert balance["balance"] == 10_000 - 600 - 500
    listed = body(await api.get("/v1/accounts/acme/members"))["data"]
    assert [(m["member_id"], m["limits"][0]["spent"]) for m in listed] == [("ada", 600)]


async def test_an_unknown_member_is_refused_not_unlimited(api: httpx.AsyncClient) -> None:
    await _wallet(api)
    await _member(api, "ada", {"amount": 10, "period": "day"})
    for path, extra in (("/v1/charges", {}), ("/v1/holds", {"expires_in": 60})):
        refused = await api.post(
            path, json={"account_id": "acme", "amount": 5, "member": "ad4", **extra}
        )
        assert refused.status_code == 404
        assert body(refused)["error"]["code"] == "member_not_found"
    lone = await api.post("/v1/charges", json={"account_id": "solo", "amount": 1, "member": "x"})
    assert body(lone)["error"]["code"] == "member_not_found"


async def test_holds_count_while_open_and_captures_past_the_limit_are_capped(
    api: httpx.AsyncClient,
) -> None:
    await _wallet(api)
    await _member(api, "ada", {"amount": 100, "period": "day"})
    first = body(
        await api.post("/v1/holds", json={"account_id": "acme", "amount": 70, "member": "ada"})
    )
    over = await api.post("/v1/holds", json={"account_id": "acme", "amount": 40, "member": "ada"})
    assert (over.status_code, body(over)["error"]["remaining"]) == (402, 30)
    captured = await api.post(f"/v1/holds/{first['id']}/capture", json={"amount": 150})
    assert captured.status_code == 200
    assert body(captured)["transfer"]["amount"] == 100  # capped at what the limit leaves
    assert body(captured)["transfer"]["member"] == "ada"
    (limit,) = body(await api.get("/v1/accounts/acme/limits"))["data"]
    assert (limit["spent"], limit["held"], limit["remaining"]) == (100, 0, 0)


async def test_a_released_hold_gives_its_room_back(api: httpx.AsyncClient) -> None:
    await _wallet(api)
    await _member(api, "ada", {"amount": 100, "period": "week"})
    hold = body(
        await api.post("/v1/holds", json={"account_id": "acme", "amount": 100, "member": "ada"})
    )
    assert (await api.post(f"/v1/holds/{hold['id']}/release")).status_code == 200
    again = await api.post("/v1/holds", json={"account_id": "acme", "amount": 100, "member": "ada"})
    assert again.status_code == 201


async def test_wallet_and_app_limits_apply_to_every_member(api: httpx.AsyncClient) -> None:
    await _wallet(api)
    await _member(api, "ada")
    put = await api.put(
        "/v1/accounts/acme/limits", json={"limits": [{"amount": 50, "period": "month"}]}
    )
    assert put.status_code == 200
    assert (
        await api.post("/v1/charges", json={"account_id": "acme", "amount": 40})
    ).status_code == 201
    refused = await api.post(
        "/v1/charges", json={"account_id": "acme", "amount": 20, "member": "ada"}
    )
    assert body(refused)["error"]["limit_source"] == "wallet"
    await api.put("/v1/accounts/acme/limits", json={"limits": []})
    app = await api.put(
        "/v1/accounts/acme/apps/admin-app/limits", json={"limits": [{"amount": 5, "period": "day"}]}
    )
    assert app.status_code == 200
    refused = await api.post("/v1/charges", json={"account_id": "acme", "amount": 6})
    assert body(refused)["error"]["limit_source"] == "app"


async def test_a_window_rolls_over_at_midnight_with_no_job(ledger: Ledger, clock: Clock) -> None:
    clock.now = datetime(2026, 12, 7, 23, 59, 59, tzinfo=UTC)
    await ledger.grant("acme", 1000 * CREDIT)
    await _put_limits(ledger, "ada", 10 * CREDIT, "day")
    await ledger.charge("acme", 10 * CREDIT, member="ada")
    with pytest.raises(LimitReached):
        await ledger.charge("acme", 1, member="ada")
    clock.advance(1)  # 2026-12-08 00:00:00: a new window, no job having run
    await ledger.charge("acme", 10 * CREDIT, member="ada")
    with pytest.raises(LimitReached) as refused:
        await ledger.charge("acme", 1, member="ada")
    assert refused.value.details["resets_at"] == datetime(2026, 12, 9, tzinfo=UTC)


async def test_a_changed_period_starts_at_zero_spend(ledger: Ledger, clock: Clock) -> None:
    clock.now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    await ledger.grant("acme", 1000 * CREDIT)
    await _put_limits(ledger, "ada", 10 * CREDIT, "day")
    await ledger.charge("acme", 10 * CREDIT, member="ada")
    await _put_limits(ledger, "ada", 10 * CREDIT, "week")
    await ledger.charge("acme", 10 * CREDIT, member="ada")  # the week started at the change
    with pytest.raises(LimitReached):
        await ledger.charge("acme", 1, member="ada")


async def test_fifty_concurrent_holds_never_pass_the_limit(ledger: Ledger) -> None:
    await ledger.grant("acme", 1000 * CREDIT)
    await _put_limits(ledger, "ada", 10 * CREDIT, "day")

    async def one() -> bool:
        try:
            await ledger.open_hold("acme", CREDIT // 2, member="ada", expires_in=60)
        except LimitReached:
            return False
        return True

    opened = await asyncio.gather(*(one() for _ in range(50)))
    assert sum(opened) == 20  # 20 × 0.5 fills the 10-credit day exactly
    account = await ledger.get_account("acme")
    assert account.held == 10 * CREDIT


@pytest.mark.parametrize(
    "limit",
    [
        {"amount": "NaN", "period": "day"},
        {"amount": "Infinity", "period": "day"},
        {"amount": -1, "period": "day"},
        {"amount": "0.00001", "period": "day"},
        {"amount": 10**30, "period": "day"},
        {"amount": 1, "period": "year"},
        {"amount": 1, "period": "day", "mode": "loud"},
        {"amount": 1, "period": "day", "extra": True},
        {"amount": True, "period": "day"},
    ],
)
async def test_bad_limits_are_refused(api: httpx.AsyncClient, limit: dict[str, object]) -> None:
    put = await api.put("/v1/accounts/acme/members/ada", json={"limits": [limit]})
    assert put.status_code == 422, put.text


async def test_limits_that_do_not_nest_are_refused(api: httpx.AsyncClient) -> None:
    put = await api.put(
        "/v1/accounts/acme/members/ada",
        json={"limits": [{"amount": 1000, "period": "day"}, {"amount": 500, "period": "month"}]},
    )
    assert put.status_code == 422
    error = body(put)["error"]
    assert error["code"] == "limits_not_nested"
    assert (error["shorter_amount"], error["longer_amount"]) == (1000, 500)


async def test_a_removed_member_s_hold_still_settles(api: httpx.AsyncClient) -> None:
    await _wallet(api)
    await _member(api, "ada", {"amount": 100, "period": "day"})
    hold = body(
        await api.post("/v1/holds", json={"account_id": "acme", "amount": 50, "member": "ada"})
    )
    removed = await api.delete("/v1/accounts/acme/members/ada")
    assert removed.status_code == 200
    captured = await api.post(f"/v1/holds/{hold['id']}/capture", json={"amount": 30})
    assert captured.status_code == 200
    assert body(captured)["transfer"]["member"] == "ada"
    gone = await api.post("/v1/charges", json={"account_id": "acme", "amount": 1, "member": "ada"})
    assert body(gone)["error"]["code"] == "member_not_found"
    assert (await api.delete("/v1/accounts/acme/members/ada")).status_code == 404


async def _put_limits(ledger: Ledger, member: str, amount: int, period: Period) -> None:
    await put_member(ledger, "acme", member, limits=[LimitSpec(amount, period)])


async def test_a_proxy_key_s_day_limit_refuses_the_hold_past_it(
    api: httpx.AsyncClient, ledger: Ledger
) -> None:
    await _wallet(api)
    key = body(await api.post("/v1/proxy-keys", json={"account_id": "acme"}))
    put = await api.put(
        f"/v1/proxy-keys/{key['id']}/limits", json={"limits": [{"amount": 5, "period": "day"}]}
    )
    assert put.status_code == 200
    assert [limit["scope"] for limit in body(put)["data"]] == ["key"]
    await ledger.open_hold("acme", 5 * CREDIT, proxy_key_id=key["id"])
    with pytest.raises(LimitReached) as refused:
        await ledger.open_hold("acme", 1, proxy_key_id=key["id"])
    assert refused.value.details["limit_source"] == "key"
    await ledger.open_hold("acme", 5 * CREDIT)  # not through the key: not its limit
    missing = await api.put("/v1/proxy-keys/pxk_nope/limits", json={"limits": []})
    assert (missing.status_code, body(missing)["error"]["code"]) == (404, "proxy_key_not_found")


async def test_usage_events_count_against_their_member_s_limit(api: httpx.AsyncClient) -> None:
    await _wallet(api)
    await _member(api, "ada", {"amount": 25, "period": "day"})
    events = [
        {"id": f"e{n}", "account_id": "acme", "member": "ada", "feature": "chat_message"}
        for n in range(3)
    ]
    recorded = body(await api.post("/v1/usage", json={"events": events}))["results"]
    assert [result["status"] for result in recorded] == ["charged", "charged", "limit_reached"]
    assert recorded[2]["error"]["limit_source"] == "member"
    (limit,) = body(await api.get("/v1/accounts/acme/limits"))["data"]
    assert limit["spent"] == 20


async def test_a_member_put_again_keeps_what_it_leaves_out(api: httpx.AsyncClient) -> None:
    named = {"display_name": "Ada", "limits": [{"amount": 5, "period": "day"}]}
    first = await api.put("/v1/accounts/acme/members/ada", json=named)
    assert first.status_code == 201
    again = await api.put("/v1/accounts/acme/members/ada", json={})
    assert again.status_code == 200
    assert (body(again)["display_name"], len(body(again)["limits"])) == ("Ada", 1)
    renamed = body(await api.put("/v1/accounts/acme/members/ada", json={"display_name": "A."}))
    assert (renamed["display_name"], len(renamed["limits"])) == ("A.", 1)
