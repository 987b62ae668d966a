"""Estimate, then settle: a hold priced from a feature or usage, captured at the actual cost."""

from __future__ import annotations

from typing import Any

import httpx

from creditsd.api.app import create_app
from tests.conftest import LedgerFactory, body, create_key


async def estimate(api: httpx.AsyncClient, **priced: Any) -> dict[str, Any]:
    opened = await api.post("/v1/holds", json={"account_id": "u", "expires_in": 600, **priced})
    assert opened.status_code == 201, opened.text
    return dict(body(opened))


async def test_an_estimate_of_50_settled_at_30_gives_20_back(api: httpx.AsyncClient) -> None:
    await api.post("/v1/grants", json={"account_id": "u", "amount": 100})
    hold = await estimate(api, feature="canvas_generation_simple")
    assert (hold["amount"], hold["pricing"]["catalog_version"]) == (50, 1)
    assert body(await api.get("/v1/accounts/u"))["available"] == 50
    settled = await api.post(
        f"/v1/holds/{hold['id']}/capture", json={"feature": "video_generation", "quantity": 3}
    )
    assert settled.status_code == 200, settled.text
    result = body(settled)
    assert (result["hold"]["status"], result["hold"]["captured"]) == ("captured", 30)
    assert (result["transfer"]["amount"], result["transfer"]["balance"]) == (30, 70)
    assert result["transfer"]["pricing"]["settlement"] == {
        "outcome": "within_hold",
        "estimate": 50,
        "held_before": 50,
        "actual": 30,
        "charged": 30,
        "released": 20,
        "uncollected": 0,
    }
    account = body(await api.get("/v1/accounts/u"))
    assert (account["balance"], account["held"], account["available"]) == (70, 0, 70)
    again = await api.post(
        f"/v1/holds/{hold['id']}/capture", json={"feature": "video_generation", "quantity": 3}
    )
    assert again.headers["Idempotent-Replayed"] == "true"
    assert body(again)["transfer"]["id"] == result["transfer"]["id"]
    assert body(await api.get("/v1/accounts/u"))["balance"] == 70


async def test_an_estimate_of_50_settled_at_80_charges_30_more(api: httpx.AsyncClient) -> None:
    await api.post("/v1/grants", json={"account_id": "u", "amount": 100})
    hold = await estimate(api, feature="canvas_generation_simple")
    settled = body(
        await api.post(
            f"/v1/holds/{hold['id']}/capture",
            json={"feature": "video_generation", "quantity": 8},
        )
    )
    assert (settled["transfer"]["amount"], settled["transfer"]["balance"]) == (80, 20)
    assert settled["transfer"]["pricing"]["settlement"]["outcome"] == "over_hold_charged"
    assert settled["transfer"]["pricing"]["lines"][0]["quantity"] == 8


async def test_an_unaffordable_overrun_follows_the_policy(make_ledger: LedgerFactory) -> None:
    for policy, expected_status in (("cap", 200), ("refuse", 402)):
        ledger = await make_ledger(holds={"overrun": policy})
        secret = await create_key(ledger, "admin")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(ledger, sweep=False)),
            base_url="http://creditsd.test",
            headers={"Authorization": f"Bearer {secret}"},
        ) as api:
            account = f"u-{policy}"
            await api.post("/v1/grants", json={"account_id": account, "amount": 60})
            opened = body(
                await api.post(
                    "/v1/holds",
                    json={"account_id": account, "feature": "canvas_generation_simple"},
                )
            )
            usage = {"model": "openai/gpt-4o", "output_tokens": 100_000}  # 1 USD: 100 credits
            settled = await api.post(f"/v1/holds/{opened['id']}/capture", json={"usage": usage})
            assert settled.status_code == expected_status, settled.text
            after = body(await api.get(f"/v1/accounts/{account}"))
            if policy == "cap":
                transfer = body(settled)["transfer"]
                assert transfer["amount"] == 60
                assert transfer["pricing"]["settlement"]["outcome"] == "over_hold_capped"
                assert transfer["pricing"]["settlement"]["uncollected"] == 40
                assert (after["balance"], after["held"]) == (0, 0)
            else:
                error = body(settled)["error"]
                assert (error["required"], error["available"]) == (50, 10)
                assert (after["balance"], after["held"]) == (60, 50)
            assert body(await api.get(f"/v1/accounts/{account}/verify"))["valid"] is True


async def test_long_jobs_heartbeat_and_capture_in_slices(api: httpx.AsyncClient) -> None:
    await api.post("/v1/grants", json={"account_id": "u", "amount": 1000})
    hold = await estimate(api, feature="training_job", quantity=2)  # 2 GPU hours: 400
    for _hour in range(2):
        assert (await api.post(f"/v1/holds/{hold['id']}/extend", json={})).status_code == 200
        sliced = await api.post(
            f"/v1/holds/{hold['id']}/capture",
            json={"feature": "training_job", "quantity": "0.75", "final": False},
        )
        assert body(sliced)["transfer"]["amount"] == 150
    final = body(
        await api.post(
            f"/v1/holds/{hold['id']}/capture",
            json={"feature": "training_job", "quantity": "0.25"},
        )
    )
    assert final["hold"]["captured"] == 350
    account = body(await api.get("/v1/accounts/u"))
    assert (account["balance"], account["held"]) == (650, 0)
