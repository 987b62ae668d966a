"""The console's view of an account's auto top-up: where it stands and why, its rule in
credits, the card and the customer's consent, the last attempt and the month against its
cap, the runway; and an operator turning it off (never on: that is the customer's)."""

from __future__ import annotations

import re

import httpx
from playwright.async_api import BrowserContext, expect

from creditsd.inprocess import Ledger
from creditsd.stripe.billing import StripeBilling
from creditsd.worker import charge_auto_topups
from tests.autotopup.test_consent import save_card
from tests.conftest import Clock, audit_trail, create_key, serve_app
from tests.stripe.conftest import fake, shop, shop_api
from tests.stripe.fake import FakeStripe
from tests.web.conftest import shoot
from tests.web.test_admin import console, key_id, sign_in, token_in

__all__ = ["fake", "shop", "shop_api"]

CREDIT = 10_000
RULE = {"enabled": True, "threshold": 100, "target_balance": 500, "monthly_cap": 5000}


async def declined_for_good(shop: Ledger, api: httpx.AsyncClient, fake: FakeStripe) -> None:
    """Ada's rule and card, a day of spend, then a decline whose advice is never to retry:
    auto top-up pauses."""
    assert (await api.put("/v1/accounts/ada/auto-topup", json=RULE)).status_code == 200
    await save_card(api, fake, "ada")
    await shop.grant("ada", 150 * CREDIT)
    await shop.charge("ada", 100 * CREDIT)  # 50 left: 450 queued
    fake.intent_outcomes = ["declined:card_declined:do_not_try_again"]
    billing = StripeBilling(shop)
    try:
        assert await charge_auto_topups(shop, billing) == ["declined"]
    finally:
        await billing.close()


async def test_an_operator_sees_why_auto_topup_paused_and_turns_it_off(
    shop: Ledger,
    shop_api: httpx.AsyncClient,
    fake: FakeStripe,
    context: BrowserContext,
    clock: Clock,
) -> None:
    secret = await create_key(shop, "admin", "ops")
    await declined_for_good(shop, shop_api, fake)
    clock.advance(86_400)  # a day of history: the runway is 50 at 100 a day

    async with serve_app(shop) as base:
        page = await context.new_page()
        await sign_in(page, base, secret)
        await page.goto(f"{base}/admin/accounts/ada")
        await expect(page.get_by_test_id("runway")).to_have_text("Runway 0.5 days at 100 a day")
        topup = page.get_by_test_id("auto-topup")
        await expect(topup.locator(".tag")).to_have_text("Paused")
        await expect(page.get_by_test_id("topup-state")).to_contain_text("Paused: ")
        facts = [
            re.sub(r"\s+", " ", text).strip()
            for text in await topup.locator("dl.facts > *").all_inner_texts()
        ]
        shown = dict(zip(facts[::2], facts[1::2], strict=True))
        assert shown["Rule"] == "Below 100 credits, buy up to 500"
        assert shown["This month"] == "0 of at most 5,000 credits bought (UTC)"
        assert shown["Card"].startswith("Visa ····4242 fp_ada")
        assert re.fullmatch(r"web \(checkout cs_\w+\), .+", shown["Consent"]), shown
        assert shown["Declines in a row"] == "1"
        assert re.fullmatch(
            r"Declined: 450 credits \(card declined\), .+ pi_\w+", shown["Last attempt"]
        ), shown
        await shoot(page, "admin-autotopup")

        await topup.get_by_role("button", name="Turn off auto top-up").click()
        await expect(page.get_by_role("status")).to_contain_text(
            "Auto top-up is off; its rule and the saved card are kept."
        )
        await expect(topup.locator(".tag")).to_have_text("Off")
        await expect(topup.get_by_role("button", name="Turn off auto top-up")).to_have_count(0)
        await expect(topup).to_contain_text("Visa ····4242")

    got = (await shop_api.get("/v1/accounts/ada/auto-topup")).json()
    assert (got["enabled"], got["state"], got["card"]["last4"]) == (False, "off", "4242")
    async with shop.engine.connect() as conn:
        records = [r for r in await audit_trail(conn, "ada") if r.action == "auto_topup.updated"]
    assert records[-1].actor == f"key:{await key_id(shop, 'ops')}:ops"
    assert (records[-1].before["enabled"], records[-1].after["enabled"]) == (True, False)


async def test_turning_off_needs_the_page_s_token_and_a_rule(
    shop: Ledger, shop_api: httpx.AsyncClient
) -> None:
    secret = await create_key(shop, "admin", "ops")
    assert (await shop_api.put("/v1/accounts/ada/auto-topup", json=RULE)).status_code == 200
    await shop.open_account("bo")
    async with serve_app(shop) as base, console(base, secret) as http:
        page = (await http.get("/admin/accounts/ada")).text
        assert "Awaiting a card" in page and "None saved yet" in page
        assert "Auto top-up" not in (await http.get("/admin/accounts/bo")).text
        forged = await http.post("/admin/accounts/ada/auto-topup/off", data={"csrf": "forged"})
        assert forged.status_code == 403
        assert (await shop_api.get("/v1/accounts/ada/auto-topup")).json()["enabled"] is True

        csrf = token_in(page)
        off = await http.post(
            "/admin/accounts/ada/auto-topup/off", data={"csrf": csrf}, follow_redirects=True
        )
        assert "Auto top-up is off" in off.text
        again = await http.post(
            "/admin/accounts/ada/auto-topup/off", data={"csrf": csrf}, follow_redirects=True
        )
        assert "Nothing changed: auto top-up was already off." in again.text
        never = await http.post("/admin/accounts/bo/auto-topup/off", data={"csrf": csrf})
        nobody = await http.post("/admin/accounts/nobody/auto-topup/off", data={"csrf": csrf})
    assert never.status_code == 404 and nobody.status_code == 404
    async with shop.engine.connect() as conn:
        offs = [r for r in await audit_trail(conn, "ada") if r.action == "auto_topup.updated"]
    assert len(offs) == 2  # the rule, then one turn-off: the second changed nothing
