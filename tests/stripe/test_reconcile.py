"""``creditsd stripe reconcile``: clean after real events, and names what was planted."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.inprocess import Ledger
from creditsd.kit import db
from creditsd.ledger import service as ledger_service
from creditsd.ledger.models import STRIPE
from creditsd.stripe.events import STRIPE_APP
from creditsd.tables import stripe_payments, webhook_events
from tests.conftest import Clock, LedgerFactory, body, client_for
from tests.stripe.conftest import CREDIT, PACKS, buy, deliver, stripe_settings
from tests.stripe.fake import FakeStripe
from tests.stripe.shapes import event, priced_invoice
from tests.test_cli import run


async def test_reconcile_is_clean_after_the_scenario_and_names_each_planted_mismatch(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe, database_url: str
) -> None:
    session = await buy(shop_api, fake, "ada", "10k")
    await shop.charge("ada", 2_000 * CREDIT)
    charge_id = fake.objects[session["payment_intent"]]["latest_charge"]
    await deliver(shop_api, fake.event("charge.refunded", fake.refund(charge_id, 2_700)))
    await buy(shop_api, fake, "bo", "1k")

    code, out, _ = await asyncio.to_thread(run, database_url, "stripe", "reconcile")
    assert (code, out.strip()) == (0, "every Stripe event matches the ledger")

    # A purchase no Stripe event explains, and a payment whose recorded credits changed.
    async def plant(conn: AsyncConnection) -> str:
        purchase = ledger_service.Movement(
            kind="purchase",
            debit_account_id=STRIPE,
            credit_account_id="bo",
            amount=500 * CREDIT,
            app=STRIPE_APP,
            idempotency_key="stripe:payment:pi_planted",
            metadata={"stripe_payment": "pi_planted"},
        )
        planted = await ledger_service.post_transfer(conn, purchase, shop.policy, shop.now())
        await conn.execute(
            update(stripe_payments)
            .where(stripe_payments.c.id == session["payment_intent"])
            .values(credits=9_000 * CREDIT)
        )
        return planted.id

    planted_id = await db.run(shop.engine, plant)
    (purchase,) = [t for t in (await shop.transactions("ada")).items if t.kind == "purchase"]
    session_transfer = purchase.id
    code, out, err = await asyncio.to_thread(run, database_url, "stripe", "reconcile")
    assert code == 1
    found = sorted(tuple(line.split("\t")[:2]) for line in out.splitlines())
    assert found == sorted(
        [("transfer_without_event", planted_id), ("amount_differs", session_transfer)]
    )
    assert "2 mismatch(es)" in err


async def test_reconcile_counts_subscription_allowances_and_still_names_a_missing_transfer(
    make_ledger: LedgerFactory, fake: FakeStripe, clock: Clock, database_url: str
) -> None:
    ledger = await make_ledger(
        stripe=stripe_settings(fake), packs=PACKS, plans={"price_team": {"credits": 20_000}}
    )
    start = int(clock.now.timestamp())
    invoice = priced_invoice("basil", "in_1Team", "cus_team", "price_team", 4_900)
    invoice["metadata"] = {"creditsd_account": "org_team"}
    invoice["lines"]["data"][0]["period"] = {"start": start, "end": start + 30 * 86_400}
    sent = event("invoice.payment_succeeded", invoice)
    async with client_for(ledger, "no-key") as api:
        response = await deliver(api, sent)
    assert (response.status_code, body(response)["outcome"]) == (200, "handled")
    (allowance,) = (await ledger.transactions("org_team")).items
    assert allowance.amount == 20_000 * CREDIT

    code, out, _ = await asyncio.to_thread(run, database_url, "stripe", "reconcile")
    assert (code, out.strip()) == (0, "every Stripe event matches the ledger")

    async def lose_the_transfer(conn: AsyncConnection) -> None:
        detail = {"transfers": ["tr_0000000000000000000000000000"]}
        await conn.execute(
            update(webhook_events)
            .where(webhook_events.c.event_id == sent["id"])
            .values(detail=detail)
        )

    await db.run(ledger.engine, lose_the_transfer)
    code, out, _ = await asyncio.to_thread(run, database_url, "stripe", "reconcile")
    assert code == 1
    assert [tuple(line.split("\t")[:2]) for line in out.splitlines()] == [
        ("event_without_transfer", sent["id"])
    ]
