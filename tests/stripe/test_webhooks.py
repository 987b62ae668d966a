"""Stripe webhooks: verified, stored once, and each money movement made exactly once."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.inprocess import Ledger
from creditsd.kit import db
from creditsd.ledger.errors import AccountFrozen
from creditsd.tables import webhook_events
from tests.conftest import LedgerFactory, body, client_for, create_key
from tests.stripe.conftest import (
    CREDIT,
    PACKS,
    WEBHOOK_SECRET,
    buy,
    checkout,
    deliver,
    reconciled,
    stripe_settings,
)
from tests.stripe.fake import FakeStripe, sign


async def stored_events(ledger: Ledger) -> int:
    async def count(conn: AsyncConnection) -> int:
        return int(
            (await conn.execute(select(func.count()).select_from(webhook_events))).scalar_one()
        )

    return await db.run(ledger.engine, count)


async def test_a_checkout_delivered_twenty_times_grants_the_pack_once(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    session_id = await checkout(shop_api, "ada", "10k")
    session = fake.complete_session(session_id)
    event = fake.event("checkout.session.completed", session)

    first = [await deliver(shop_api, event) for _ in range(5)]
    rest = await asyncio.gather(*(deliver(shop_api, event) for _ in range(15)))
    outcomes = [response.json()["outcome"] for response in [*first, *rest]]
    assert all(response.status_code == 200 for response in [*first, *rest])
    assert outcomes.count("granted") == 1
    assert set(outcomes) <= {"granted", "duplicate", "already_granted"}

    account = await shop.get_account("ada")
    assert (account.balance, account.by_source) == (10_000 * CREDIT, {"purchase": 10_000 * CREDIT})
    (purchase,) = (await shop.transactions("ada")).items
    assert (purchase.kind, purchase.debit_account_id, purchase.app) == (
        "purchase",
        "@stripe",
        "stripe",
    )
    async with client_for(shop, await create_key(shop, "read", "page")) as reader:
        (shown,) = body(await reader.get("/v1/accounts/ada/transactions"))["data"]
    assert (shown["id"], shown["metadata"]["packs"], shown["paid"]) == (
        purchase.id,
        "10k × 1",
        10_000,
    )
    assert await stored_events(shop) == 1


@pytest.mark.parametrize(
    "tamper",
    ["body", "wrong_secret", "stale", "missing", "garbage"],
)
async def test_a_webhook_that_fails_verification_is_refused_and_nothing_is_stored(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe, tamper: str
) -> None:
    session_id = await checkout(shop_api, "bo", "1k")
    event = fake.event("checkout.session.completed", fake.complete_session(session_id))
    payload = json.dumps(event).encode()
    headers = {"Stripe-Signature": sign(payload, WEBHOOK_SECRET)}
    if tamper == "body":  # signed, then the buyer edits the amount
        payload = payload.replace(b'"amount_total": 1000', b'"amount_total": 1')
    elif tamper == "wrong_secret":
        headers["Stripe-Signature"] = sign(payload, "whsec_someone_else")
    elif tamper == "stale":
        headers["Stripe-Signature"] = sign(
            payload, WEBHOOK_SECRET, timestamp=int(time.time()) - 3600
        )
    elif tamper == "missing":
        headers = {}
    else:
        headers["Stripe-Signature"] = "t=1,v1=zz"

    response = await shop_api.post("/webhooks/stripe", content=payload, headers=headers)
    assert response.status_code == 400
    assert body(response)["error"]["code"] == "invalid_signature"
    assert WEBHOOK_SECRET not in response.text
    assert await stored_events(shop) == 0
    assert (await shop.get_account("bo")).balance == 0


async def test_an_unknown_price_never_grants_and_reconcile_names_it(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    # A session made elsewhere in the same Stripe account, for a price no pack sells.
    session = await asyncio.to_thread(_session_for, fake, "price_other", "cy")
    done = fake.complete_session(session["id"])
    response = await deliver(shop_api, fake.event("checkout.session.completed", done))
    assert body(response)["outcome"] == "no_known_price"
    assert (await shop.get_account("cy")).balance == 0

    found = await reconciled(shop)
    assert [(m.kind, m.reference) for m in found] == [
        ("event_without_transfer", response.json()["event_id"])
    ]


def _session_for(fake: FakeStripe, price: str, account: str) -> dict[str, Any]:
    import stripe

    client = stripe.StripeClient(fake.api_key, base_addresses={"api": fake.api_base})
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [{"price": price, "quantity": 1}],
            "client_reference_id": account,
            "success_url": "https://elsewhere.example/ok",
            "cancel_url": "https://elsewhere.example/no",
        }
    )
    return session.to_dict()


async def test_a_delayed_payment_grants_when_it_succeeds(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    session_id = await checkout(shop_api, "di", "1k")
    pending = fake.complete_session(session_id, paid=False)
    waiting = await deliver(shop_api, fake.event("checkout.session.completed", pending))
    assert body(waiting)["outcome"] == "awaiting_payment"
    assert (await shop.get_account("di")).balance == 0

    paid = fake.pay_async(pending["id"])
    granted = await deliver(shop_api, fake.event("checkout.session.async_payment_succeeded", paid))
    assert body(granted)["outcome"] == "granted"
    intent = fake.objects[paid["payment_intent"]]
    confirmed = await deliver(shop_api, fake.event("payment_intent.succeeded", intent))
    assert body(confirmed)["outcome"] == "confirmed"
    assert (await shop.get_account("di")).balance == 1_000 * CREDIT


async def test_unknown_event_types_are_stored_and_acknowledged(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    response = await deliver(shop_api, fake.event("customer.created", {"id": "cus_1"}))
    assert (response.status_code, body(response)["outcome"]) == (200, "ignored")
    assert await stored_events(shop) == 1


@pytest.mark.parametrize("refund_policy", ["allow_negative", "block_account", "write_off"])
async def test_refunds_claw_back_in_proportion_and_spent_credits_follow_the_policy(
    make_ledger: LedgerFactory, fake: FakeStripe, refund_policy: str
) -> None:
    ledger = await make_ledger(
        stripe=stripe_settings(fake, refund_policy=refund_policy), packs=PACKS
    )
    async with client_for(ledger, await create_key(ledger, "app", "web")) as api:
        session = await buy(api, fake, "eve", "10k")
        await ledger.charge("eve", 2_000 * CREDIT)
        charge_id = fake.objects[session["payment_intent"]]["latest_charge"]

        # 30% refunded: 3,000 of the 8,000 unspent credits go back, from the purchase lot
        partial = fake.refund(charge_id, 2_700)
        response = await deliver(api, fake.event("charge.refunded", partial))
        assert body(response)["outcome"] == "clawed_back"
        account = await ledger.get_account("eve")
        assert (account.balance, account.status) == (5_000 * CREDIT, "active")
        clawback = (await ledger.transactions("eve")).items[0]
        assert (clawback.kind, clawback.amount, clawback.credit_account_id) == (
            "clawback",
            3_000 * CREDIT,
            "@stripe",
        )
        assert [part.source for part in clawback.lots] == ["purchase"]
        assert clawback.metadata is not None
        assert clawback.metadata["policy"] == refund_policy

        # the rest refunded: 7,000 due, 5,000 left, 2,000 already spent
        full = fake.refund(charge_id, 6_300)
        await deliver(api, fake.event("charge.refunded", full))
        await deliver(api, fake.event("charge.refunded", full))  # Stripe retries: nothing more
        account = await ledger.get_account("eve")
        last = (await ledger.transactions("eve")).items[0]
        assert last.metadata is not None
        if refund_policy == "allow_negative":
            assert (account.balance, account.status) == (-2_000 * CREDIT, "active")
            assert account.by_source == {"overdrawn": -2_000 * CREDIT}
            assert last.amount == 7_000 * CREDIT
            await buy(api, fake, "eve", "1k")  # the next pack pays the debt first
            account = await ledger.get_account("eve")
            assert (account.balance, account.by_source) == (
                -1_000 * CREDIT,
                {"overdrawn": -1_000 * CREDIT},
            )
        elif refund_policy == "block_account":
            assert (account.balance, account.status) == (0, "frozen")
            assert (last.amount, last.metadata["unrecovered"]) == (5_000 * CREDIT, "2000")
            with pytest.raises(AccountFrozen):
                await ledger.charge("eve", 1)
        else:
            assert (account.balance, account.status) == (0, "active")
            assert (last.amount, last.metadata["written_off"]) == (5_000 * CREDIT, "2000")
        assert (await ledger.verify_account("eve")).valid
        assert await ledger.ledger_total() == 0

        assert await reconciled(ledger) == []


@pytest.mark.parametrize("dispute_policy", ["clawback", "freeze"])
async def test_a_dispute_claws_back_or_freezes(
    make_ledger: LedgerFactory, fake: FakeStripe, dispute_policy: str
) -> None:
    ledger = await make_ledger(
        stripe=stripe_settings(fake, dispute_policy=dispute_policy), packs=PACKS
    )
    async with client_for(ledger, await create_key(ledger, "app", "web")) as api:
        session = await buy(api, fake, "fay", "1k")
        charge_id = fake.objects[session["payment_intent"]]["latest_charge"]
        disputed = fake.dispute(charge_id)
        response = await deliver(api, fake.event("charge.dispute.created", disputed))
        account = await ledger.get_account("fay")
        if dispute_policy == "clawback":
            assert body(response)["outcome"] == "clawed_back"
            assert (account.balance, account.status) == (0, "active")
        else:
            assert body(response)["outcome"] == "frozen"
            assert (account.balance, account.status) == (1_000 * CREDIT, "frozen")
            refused = await api.post("/v1/charges", json={"account_id": "fay", "amount": 1})
            assert refused.status_code == 409
            assert body(refused)["error"]["code"] == "account_frozen"
