"""The auto top-up rule as an app sets it: strictly validated, audited, off at once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from creditsd.inprocess import Ledger
from tests.conftest import LedgerFactory, body, client_for, create_key
from tests.stripe.conftest import PACKS

RULE = {"enabled": True, "threshold": 100, "target_balance": "500.5", "monthly_cap": 2000}


@pytest.fixture
async def shop(make_ledger: LedgerFactory) -> Ledger:
    """A ledger selling the test packs (auto top-up needs no Stripe to set a rule)."""
    return await make_ledger(packs=PACKS)


@pytest.fixture
async def app_api(shop: Ledger) -> Any:
    async with client_for(shop, await create_key(shop, "app", "web")) as client:
        yield client


async def test_a_rule_is_set_read_back_and_audited(app_api: httpx.AsyncClient) -> None:
    put = await app_api.put("/v1/accounts/ada/auto-topup", json=RULE)
    assert put.status_code == 200, put.text
    shown = body(put)
    assert (shown["threshold"], shown["target_balance"], shown["monthly_cap"]) == (
        100,
        500.5,
        2000,
    )
    assert shown["state"] == "awaiting_card" and shown["card"] is None
    assert (shown["consecutive_declines"], shown["month_total"]) == (0, 0)
    got = body(await app_api.get("/v1/accounts/ada/auto-topup"))
    assert got == shown
    off = body(await app_api.put("/v1/accounts/ada/auto-topup", json={**RULE, "enabled": False}))
    assert off["state"] == "off"


async def test_the_changes_are_in_the_audit_log(api: httpx.AsyncClient, ledger: Ledger) -> None:
    rule = {"enabled": True, "threshold": 10, "target_balance": 50, "monthly_cap": 100}
    assert (await api.put("/v1/accounts/ada/auto-topup", json=rule)).status_code == 200
    changed = {**rule, "enabled": False}
    assert (await api.put("/v1/accounts/ada/auto-topup", json=changed)).status_code == 200
    records = body(await api.get("/v1/audit-log", params={"action": "auto_topup.updated"}))["data"]
    assert [(r["before"] or {}).get("enabled") for r in records] == [True, None]
    assert records[0]["after"]["enabled"] is False
    assert records[0]["after"]["threshold"] == 10  # shown in credits


@pytest.mark.parametrize(
    ("change", "code", "named"),
    [
        ({"target_balance": 100}, "invalid_auto_topup", "target_balance"),
        ({"target_balance": 50}, "invalid_auto_topup", "target_balance"),
        ({"pack": "1k"}, "invalid_auto_topup", "target_balance"),
        ({"target_balance": None}, "invalid_auto_topup", "target_balance"),
        ({"target_balance": None, "pack": "nope"}, "unknown_pack", None),
        ({"threshold": "1.00001"}, "invalid_amount", "threshold"),
        ({"monthly_cap": 0}, "invalid_amount", "monthly_cap"),
        ({"monthly_cap": 1.5e3}, None, None),
        ({"surprise": 1}, "validation_error", None),
        ({"enabled": "yes"}, "validation_error", None),
    ],
)
async def test_a_bad_rule_is_refused_naming_the_problem(
    app_api: httpx.AsyncClient, change: dict[str, Any], code: str | None, named: str | None
) -> None:
    sent = {**RULE, **change}
    response = await app_api.put("/v1/accounts/ada/auto-topup", json=sent)
    if code is None:  # 1.5e3 is an exact number: accepted
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 422, response.text
    error = body(response)["error"]
    assert error["code"] == code
    if named is not None:
        assert named in response.text


async def test_a_pack_rule_and_an_unknown_account(app_api: httpx.AsyncClient) -> None:
    rule = {"enabled": True, "threshold": 100, "pack": "10k", "monthly_cap": 20_000}
    shown = body(await app_api.put("/v1/accounts/bob/auto-topup", json=rule))
    assert (shown["pack"], shown["target_balance"]) == ("10k", None)
    missing = await app_api.get("/v1/accounts/nobody/auto-topup")
    assert missing.status_code == 404
    never = await app_api.get("/v1/accounts/bob2/auto-topup")
    assert never.status_code == 404


async def test_a_read_key_cannot_set_a_rule(shop: Ledger) -> None:
    async with client_for(shop, await create_key(shop, "read", "viewer")) as reader:
        refused = await reader.put("/v1/accounts/ada/auto-topup", json=RULE)
    assert refused.status_code == 403
