"""Holds over HTTP, and the sweeper that closes them in `creditsd serve`."""

from __future__ import annotations

import httpx

from tests.conftest import Clock, LedgerFactory, body


async def test_holds_over_http(api: httpx.AsyncClient) -> None:
    await api.post("/v1/grants", json={"account_id": "u", "amount": 100})
    opened = await api.post("/v1/holds", json={"account_id": "u", "amount": 50, "expires_in": 300})
    assert opened.status_code == 201
    hold = body(opened)
    assert (hold["status"], hold["held"]) == ("open", 50)
    assert body(await api.get("/v1/accounts/u"))["available"] == 50
    extended = await api.post(f"/v1/holds/{hold['id']}/extend", json={"expires_in": 600})
    assert extended.status_code == 200
    assert body(extended)["expires_at"] > hold["expires_at"]
    sliced = await api.post(f"/v1/holds/{hold['id']}/capture", json={"amount": 10, "final": False})
    assert body(sliced)["hold"]["held"] == 40
    settled = await api.post(f"/v1/holds/{hold['id']}/capture", json={"amount": 20})
    assert settled.status_code == 200
    assert body(settled)["hold"]["status"] == "captured"
    assert body(settled)["transfer"]["balance"] == 70
    again = await api.post(f"/v1/holds/{hold['id']}/capture", json={"amount": 20})
    assert body(again)["transfer"]["id"] == body(settled)["transfer"]["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    closed = await api.post(f"/v1/holds/{hold['id']}/release")
    assert closed.status_code == 409
    assert body(closed)["error"]["code"] == "hold_not_open"
    other = body(await api.post("/v1/holds", json={"account_id": "u", "amount": 5}))
    released = await api.post(f"/v1/holds/{other['id']}/release")
    assert body(released)["status"] == "released"
    assert body(await api.get("/v1/accounts/u"))["available"] == 70
    missing = await api.post("/v1/holds/hold_nope/capture", json={"amount": 1})
    assert (missing.status_code, body(missing)["error"]["code"]) == (404, "hold_not_found")
    for bad in (
        {"account_id": "u", "amount": 1, "expires_in": 0},
        {"account_id": "u", "amount": 1, "expires_in": "60"},
        {"account_id": "u", "amount": 1, "expires_in": 1.5},
        {"account_id": "u", "amount": 1, "expires_in": True},
    ):
        assert (await api.post("/v1/holds", json=bad)).status_code == 422


async def test_the_sweeper_in_serve_closes_expired_holds(
    make_ledger: LedgerFactory, clock: Clock
) -> None:
    import asyncio

    from creditsd.worker import sweep_expired

    ledger = await make_ledger(holds={"sweep_interval": "0.05"})
    await ledger.grant("u", 10)
    hold = await ledger.open_hold("u", 10, expires_in=5)
    sweeper = asyncio.create_task(sweep_expired(ledger, ledger.settings.holds.sweep_interval))
    try:
        clock.advance(6)
        for _ in range(100):
            if (await ledger.get_hold(hold.id)).status == "expired":
                break
            await asyncio.sleep(0.05)
        assert (await ledger.get_hold(hold.id)).status == "expired"
        assert (await ledger.verify_account("u")).stored_held == 0
    finally:
        sweeper.cancel()
