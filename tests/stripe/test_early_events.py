"""Refunds and disputes that Stripe delivers before the purchase they are about: kept, and
applied with the purchase's grant, once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest

from creditsd import inbox
from creditsd.inprocess import Ledger
from creditsd.kit import db
from creditsd.stripe.billing import StripeBilling
from creditsd.stripe.events import SOURCE
from creditsd.stripe.purchases import Asked
from creditsd.stripe.refunds import money_back
from tests.conftest import Clock, LedgerFactory, body, client_for, create_key
from tests.stripe.conftest import (
    CREDIT,
    PACKS,
    checkout,
    deliver,
    reconciled,
    stripe_settings,
)
from tests.stripe.fake import FakeStripe
from tests.stripe.test_published_payloads import dispute_of
from tests.test_cli import run

JSON = dict[str, Any]


async def paid_unannounced(api: httpx.AsyncClient, fake: FakeStripe, account: str) -> JSON:
    """A 10k pack paid at Stripe whose ``checkout.session.completed`` has not arrived yet."""
    return fake.complete_session(await checkout(api, account, "10k"))


def charge_of(fake: FakeStripe, session: JSON) -> str:
    return str(fake.objects[session["payment_intent"]]["latest_charge"])


async def outcome(api: httpx.AsyncClient, event: JSON) -> str:
    response = await deliver(api, event)
    assert response.status_code == 200, response.text
    return str(body(response)["outcome"])


async def mismatches(ledger: Ledger) -> list[tuple[str, str]]:
    return [(m.kind, m.reference) for m in await reconciled(ledger)]


async def test_a_refund_before_its_purchase_takes_the_credits_back_when_it_arrives(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    session = await paid_unannounced(shop_api, fake, "ada")
    refunded = fake.event("charge.refunded", fake.refund(charge_of(fake, session), 9_000))
    assert await outcome(shop_api, refunded) == "awaiting_purchase"
    assert await outcome(shop_api, refunded) == "duplicate"
    assert await mismatches(shop) == [("awaiting_purchase", refunded["id"])]

    assert await outcome(shop_api, fake.event("checkout.session.completed", session)) == "granted"
    # The same payment told again by another event: granted once, refunded once.
    again = fake.event("checkout.session.async_payment_succeeded", session)
    assert await outcome(shop_api, again) == "already_granted"
    assert await outcome(shop_api, refunded) == "duplicate"

    account = await shop.get_account("ada")
    assert (account.balance, account.status) == (0, "active")
    kinds = [(t.kind, t.amount) for t in (await shop.transactions("ada")).items]
    assert kinds == [("clawback", 10_000 * CREDIT), ("purchase", 10_000 * CREDIT)]
    assert await mismatches(shop) == []
    assert (await shop.verify_account("ada")).valid


@pytest.mark.parametrize("order", ["as_refunded", "latest_first"])
async def test_partial_refunds_before_the_purchase_take_back_the_cumulative_share_once(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe, order: str
) -> None:
    session = await paid_unannounced(shop_api, fake, "bo")
    charge = charge_of(fake, session)
    first = fake.event("charge.refunded", fake.refund(charge, 2_700))  # 30%, cumulative 2,700
    second = fake.event("charge.refunded", fake.refund(charge, 1_800))  # cumulative 4,500
    for event in [first, second] if order == "as_refunded" else [second, first]:
        assert await outcome(shop_api, event) == "awaiting_purchase"

    assert await outcome(shop_api, fake.event("checkout.session.completed", session)) == "granted"
    assert (await shop.get_account("bo")).balance == 5_000 * CREDIT  # half refunded
    taken = [t.amount for t in (await shop.transactions("bo")).items if t.kind == "clawback"]
    assert sum(taken) == 5_000 * CREDIT
    assert await mismatches(shop) == []


async def test_a_refund_then_a_dispute_before_the_purchase_take_back_all_of_it(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    session = await paid_unannounced(shop_api, fake, "cy")
    charge = charge_of(fake, session)
    refunded = fake.event("charge.refunded", fake.refund(charge, 2_700))
    disputed = fake.event("charge.dispute.created", fake.dispute(charge, 6_300))
    for event in (disputed, refunded):  # Stripe does not order them
        assert await outcome(shop_api, event) == "awaiting_purchase"

    assert await outcome(shop_api, fake.event("checkout.session.completed", session)) == "granted"
    assert (await shop.get_account("cy")).balance == 0
    assert await mismatches(shop) == []


@pytest.mark.parametrize("dispute_policy", ["clawback", "freeze"])
@pytest.mark.parametrize("ending", ["won", "lost"])
async def test_a_dispute_settled_before_the_purchase_is_applied_as_settled(
    make_ledger: LedgerFactory, fake: FakeStripe, dispute_policy: str, ending: str
) -> None:
    ledger = await make_ledger(
        stripe=stripe_settings(fake, dispute_policy=dispute_policy), packs=PACKS
    )
    async with client_for(ledger, await create_key(ledger, "app", "web")) as api:
        session = await paid_unannounced(api, fake, "dee")
        disputed = fake.dispute(charge_of(fake, session))
        opened = fake.event("charge.dispute.created", dispute_of(fake, disputed, "needs_response"))
        closed = fake.event("charge.dispute.closed", dispute_of(fake, disputed, ending))
        reinstated = fake.event(
            "charge.dispute.funds_reinstated", dispute_of(fake, disputed, "won")
        )
        endings = [closed, reinstated] if ending == "won" else [closed]
        for event in [*endings, opened]:  # the ending may even come first
            assert await outcome(api, event) in {"awaiting_purchase", "not_won"}

        granted = fake.event("checkout.session.completed", session)
        assert await outcome(api, granted) == "granted"
        account = await ledger.get_account("dee")
        if ending == "won":
            assert (account.balance, account.status) == (10_000 * CREDIT, "active")
        elif dispute_policy == "clawback":
            assert (account.balance, account.status) == (0, "active")
        else:
            assert (account.balance, account.status) == (10_000 * CREDIT, "frozen")
        assert await mismatches(ledger) == []
        assert (await ledger.verify_account("dee")).valid


async def test_reconcile_lists_what_awaits_a_purchase_and_fails_once_stripe_stopped_retrying(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe, clock: Clock, database_url: str
) -> None:
    fresh = await paid_unannounced(shop_api, fake, "eve")
    clock.now -= timedelta(days=4)  # received four days ago: Stripe retries for three
    stale = await paid_unannounced(shop_api, fake, "fay")
    old = fake.event("charge.refunded", fake.refund(charge_of(fake, stale), 9_000))
    assert await outcome(shop_api, old) == "awaiting_purchase"
    clock.now += timedelta(days=4)
    new = fake.event("charge.refunded", fake.refund(charge_of(fake, fresh), 9_000))
    assert await outcome(shop_api, new) == "awaiting_purchase"

    code, out, err = await asyncio.to_thread(run, database_url, "stripe", "reconcile")
    lines = sorted(tuple(line.split("\t")[:2]) for line in out.splitlines())
    assert lines == sorted([("awaiting_purchase", new["id"]), ("purchase_missing", old["id"])])
    assert code == 1 and "1 mismatch(es)" in err
    assert stale["payment_intent"] in out and fresh["payment_intent"] in out

    done = fake.event("checkout.session.completed", stale)
    assert await outcome(shop_api, done) == "granted"
    code, out, _ = await asyncio.to_thread(run, database_url, "stripe", "reconcile")
    assert code == 0
    assert [line.split("\t")[:2] for line in out.splitlines() if "\t" in line] == [
        ["awaiting_purchase", new["id"]]
    ]


async def test_refunds_arriving_together_with_their_purchases_are_each_applied_once(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    accounts = [f"gus{n}" for n in range(8)]
    sessions = [await paid_unannounced(shop_api, fake, account) for account in accounts]
    events = []
    for session in sessions:
        refunded = fake.refund(charge_of(fake, session), 9_000)
        events += [fake.event("charge.refunded", refunded)] * 2  # Stripe repeats itself
        events.append(fake.event("checkout.session.completed", session))
    responses = await asyncio.gather(*(deliver(shop_api, event) for event in events))
    assert all(response.status_code == 200 for response in responses)

    for account in accounts:
        assert (await shop.get_account(account)).balance == 0
        kinds = sorted(t.kind for t in (await shop.transactions(account)).items)
        assert kinds == ["clawback", "purchase"]
    assert await mismatches(shop) == []


async def test_a_purchase_waits_for_a_refund_kept_at_that_very_moment(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    session = await paid_unannounced(shop_api, fake, "hal")
    refunded = fake.event("charge.refunded", fake.refund(charge_of(fake, session), 9_000))
    async with db.transaction(shop.engine) as conn:  # the refund's delivery, not yet committed
        now = shop.now()
        await inbox.store(conn, SOURCE, refunded["id"], refunded["type"], refunded, now)
        kept = await money_back(
            conn, refunded["id"], refunded["type"], refunded["data"]["object"],
            shop.settings, shop.policy, now,
        )  # fmt: skip
        assert kept.name == "awaiting_purchase"
        await inbox.mark_handled(conn, SOURCE, refunded["id"], kept.name, kept.detail(), now)
        purchase = asyncio.create_task(
            deliver(shop_api, fake.event("checkout.session.completed", session))
        )
        await asyncio.sleep(0.5)
        assert not purchase.done()  # it waits for the refund's transaction
    assert body(await purchase)["outcome"] == "granted"
    assert (await shop.get_account("hal")).balance == 0
    assert await mismatches(shop) == []


async def test_a_refund_waits_for_a_purchase_granted_at_that_very_moment(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    session = await paid_unannounced(shop_api, fake, "ivy")
    paid = fake.event("checkout.session.completed", session)
    refunded = fake.event("charge.refunded", fake.refund(charge_of(fake, session), 9_000))
    async with db.transaction(shop.engine) as conn:  # the purchase, not yet committed
        now = shop.now()
        await inbox.store(conn, SOURCE, paid["id"], paid["type"], paid, now)
        granted = await StripeBilling(shop).handle(conn, paid, Asked([("price_10k", 1)]), now)
        assert granted.name == "granted"
        await inbox.mark_handled(conn, SOURCE, paid["id"], granted.name, granted.detail(), now)
        refund = asyncio.create_task(deliver(shop_api, refunded))
        await asyncio.sleep(0.5)
        assert not refund.done()  # it waits for the purchase's transaction
    assert body(await refund)["outcome"] == "clawed_back"
    assert (await shop.get_account("ivy")).balance == 0
    assert await mismatches(shop) == []
