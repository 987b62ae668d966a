"""``limit.warning``: once per window, when a limit's spend reaches each of the configured
percentages (80 and 100 unless ``[webhooks] limit_warning_percentages`` says otherwise),
written to the outbox in the transaction of the spend that reached it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from creditsd.config import ConfigError
from creditsd.inprocess import Ledger
from tests.conftest import Clock, LedgerFactory, body, client_for, create_key, make_settings

CREDIT = 10_000  # minor units of one credit at the default scale


async def _team(api: httpx.AsyncClient, *limits: dict[str, object]) -> None:
    """Wallet acme with 10,000 credits, member ada with these limits, and an endpoint
    that hears limit.warning."""
    granted = await api.post("/v1/grants", json={"account_id": "acme", "amount": 10_000})
    assert granted.status_code == 201
    put = await api.put("/v1/accounts/acme/members/ada", json={"limits": list(limits)})
    assert put.status_code == 201, put.text
    hooked = await api.post(
        "/v1/webhook-endpoints",
        json={"url": "https://team.example/hooks", "events": ["limit.warning"]},
    )
    assert hooked.status_code == 201, hooked.text


async def _warnings(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The limit.warning payloads queued, oldest first."""
    page = body(await api.get("/v1/webhook-deliveries", params={"limit": 100}))
    return [
        delivery["payload"]["data"]
        for delivery in reversed(page["data"])
        if delivery["event_type"] == "limit.warning"
    ]


async def _charge(api: httpx.AsyncClient, amount: int) -> int:
    charged = await api.post(
        "/v1/charges", json={"account_id": "acme", "amount": amount, "member": "ada"}
    )
    return charged.status_code


async def test_a_soft_limit_warns_once_at_80_and_100_percent_and_lets_spend_through(
    api: httpx.AsyncClient, clock: Clock
) -> None:
    clock.now = datetime(2026, 12, 7, 9, tzinfo=UTC)
    await _team(api, {"amount": 1000, "period": "day", "mode": "soft"})
    assert await _charge(api, 700) == 201
    assert await _warnings(api) == []  # 70 %
    assert await _charge(api, 150) == 201  # 85 %
    assert await _charge(api, 100) == 201  # 95 %: 80 told already
    assert await _charge(api, 100) == 201  # 105 %: soft, so it goes through
    assert await _charge(api, 500) == 201  # 155 %: both told already
    told = await _warnings(api)
    assert [(w["percent"], w["spent"]) for w in told] == [(80, 850), (100, 1050)]
    first = told[0]
    assert first == {
        "account_id": "acme",
        "limit_id": first["limit_id"],
        "limit_source": "member",
        "subject": "ada",
        "period": "day",
        "mode": "soft",
        "limit": 1000,
        "spent": 850,
        "remaining": 150,
        "percent": 80,
        "window_start": "2026-12-07T09:00:00.000000Z",  # the limit was set then
        "resets_at": "2026-12-08T00:00:00.000000Z",
    }
    assert told[1]["remaining"] == 0
    # The next day is a new window: it warns again, once.
    clock.now = datetime(2026, 12, 8, 0, 0, 1, tzinfo=UTC)
    assert await _charge(api, 900) == 201
    again = (await _warnings(api))[2:]
    midnight = "2026-12-08T00:00:00.000000Z"
    assert [(w["percent"], w["window_start"]) for w in again] == [(80, midnight)]


async def test_a_hard_limit_warns_at_each_step_and_a_refusal_warns_of_nothing(
    api: httpx.AsyncClient,
) -> None:
    await _team(api, {"amount": 100, "period": "week"})
    assert await _charge(api, 100) == 201  # straight to 100 %: one warning, the highest
    assert await _charge(api, 1) == 402
    told = await _warnings(api)
    assert [(w["percent"], w["mode"], w["period"]) for w in told] == [(100, "hard", "week")]


async def test_a_capture_counts_and_warns_a_hold_does_not_until_then(
    api: httpx.AsyncClient,
) -> None:
    await _team(api, {"amount": 100, "period": "day"})
    opened = await api.post(
        "/v1/holds", json={"account_id": "acme", "amount": 90, "member": "ada", "expires_in": 60}
    )
    assert opened.status_code == 201
    assert await _warnings(api) == []  # held is not spent
    captured = await api.post(f"/v1/holds/{body(opened)['id']}/capture", json={"amount": 85})
    assert captured.status_code == 200, captured.text
    assert [w["percent"] for w in await _warnings(api)] == [80]


async def test_concurrent_spends_past_the_mark_warn_once(
    ledger: Ledger, api: httpx.AsyncClient
) -> None:
    await _team(api, {"amount": 1000, "period": "day", "mode": "soft"})
    await asyncio.gather(*(ledger.charge("acme", 100 * CREDIT, member="ada") for _ in range(30)))
    told = [w["percent"] for w in await _warnings(api)]
    # Each at most once, in order; a batch that reaches both tells only of the higher.
    assert told in ([80, 100], [100])


async def test_the_percentages_are_configured(make_ledger: LedgerFactory) -> None:
    ledger = await make_ledger(webhooks={"limit_warning_percentages": "50"})
    async with client_for(ledger, await create_key(ledger, "admin", "admin-app")) as api:
        await _team(api, {"amount": 100, "period": "day"})
        assert await _charge(api, 60) == 201
        assert [w["percent"] for w in await _warnings(api)] == [50]


@pytest.mark.parametrize("given", ["0", "1001", "80.5", "eighty", "-5", ",".join(["9"] * 11)])
def test_bad_percentages_stop_the_start_naming_the_key(given: str) -> None:
    with pytest.raises(ConfigError, match="limit_warning_percentages"):
        make_settings("sqlite:///x.db", webhooks={"limit_warning_percentages": given})
