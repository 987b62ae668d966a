"""The customer's consent: a card saved through Stripe Checkout in setup mode, recorded
with who agreed, when, to which rule, and the card's fingerprint and last four."""

from __future__ import annotations

import httpx

from creditsd.inprocess import Ledger
from tests.conftest import body, client_for, create_key
from tests.stripe.conftest import URLS, deliver
from tests.stripe.fake import FakeStripe

RULE = {"enabled": True, "threshold": 100, "pack": "1k", "monthly_cap": 5000}


async def save_card(
    api: httpx.AsyncClient, fake: FakeStripe, account: str, *, fingerprint: str = "fp_ada"
) -> str:
    """Start a card session for the account, save a card in it, deliver Stripe's event;
    the session id."""
    started = await api.post(f"/v1/accounts/{account}/auto-topup/card-session", json=URLS)
    assert started.status_code == 201, started.text
    session = fake.complete_setup(body(started)["id"], last4="4242", fingerprint=fingerprint)
    delivered = await deliver(api, fake.event("checkout.session.completed", session))
    assert delivered.status_code == 200 and delivered.json()["outcome"] == "card_saved"
    return str(session["id"])


async def test_a_saved_card_makes_the_rule_active_and_is_audited(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    assert (await shop_api.put("/v1/accounts/ada/auto-topup", json=RULE)).status_code == 200
    session = await save_card(shop_api, fake, "ada")
    sent = fake.objects[session]
    assert (sent["mode"], sent["currency"], sent["metadata"]["creditsd_account"]) == (
        "setup",
        "usd",
        "ada",
    )
    shown = body(await shop_api.get("/v1/accounts/ada/auto-topup"))
    assert shown["state"] == "active"
    card = shown["card"]
    assert (card["last4"], card["fingerprint"], card["brand"]) == ("4242", "fp_ada", "visa")
    assert card["payment_method_id"].startswith("pm_")
    assert card["consented_by"] == f"web (checkout {session})"
    assert card["consented_rule"]["pack"] == "1k"
    async with client_for(shop, await create_key(shop, "admin", "ops")) as admin:
        log = await admin.get("/v1/audit-log", params={"action": "auto_topup.consented"})
    (record,) = body(log)["data"]
    assert (record["target"], record["after"]["card_last4"]) == ("ada", "4242")
    assert record["before"]["payment_method_id"] is None


async def test_a_card_session_needs_a_rule_first(shop_api: httpx.AsyncClient) -> None:
    assert (await shop_api.put("/v1/accounts/ada", json={})).status_code in (200, 201)
    refused = await shop_api.post("/v1/accounts/ada/auto-topup/card-session", json=URLS)
    assert refused.status_code == 404
    assert body(refused)["error"]["code"] == "auto_topup_not_found"


async def test_a_setup_session_not_started_for_auto_topup_saves_nothing(
    shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    assert (await shop_api.put("/v1/accounts/ada/auto-topup", json=RULE)).status_code == 200
    customer = fake._new("customer", "cus_", metadata={})
    session = fake._create_session(
        {"mode": "setup", "currency": "usd", "customer": customer["id"], **URLS}
    )
    completed = fake.complete_setup(session["id"])
    delivered = await deliver(shop_api, fake.event("checkout.session.completed", completed))
    assert delivered.json()["outcome"] == "not_an_auto_topup_card"
    assert body(await shop_api.get("/v1/accounts/ada/auto-topup"))["state"] == "awaiting_card"


async def test_a_key_reused_for_another_card_session_is_a_conflict(
    shop_api: httpx.AsyncClient,
) -> None:
    for account in ("ada", "bob"):
        assert (
            await shop_api.put(f"/v1/accounts/{account}/auto-topup", json=RULE)
        ).status_code == 200
    key = {"Idempotency-Key": "k-1"}
    path = "/v1/accounts/{}/auto-topup/card-session"
    first = await shop_api.post(path.format("ada"), json=URLS, headers=key)
    again = await shop_api.post(path.format("ada"), json=URLS, headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert body(first)["id"] == body(again)["id"]
    other = await shop_api.post(path.format("bob"), json=URLS, headers=key)
    assert other.status_code == 409
    assert body(other)["error"]["code"] == "idempotency_conflict"
