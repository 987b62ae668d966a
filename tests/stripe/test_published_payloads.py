"""Stripe as it is today: its published payloads, of an older and a current API version,
replayed signed with the configured secret."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.inprocess import Ledger
from creditsd.kit import db
from creditsd.tables import webhook_events
from tests.conftest import LedgerFactory, body, client_for, create_key
from tests.stripe.conftest import (
    CREDIT,
    PACKS,
    PRICES,
    WEBHOOK_SECRET,
    checkout,
    deliver,
    reconciled,
)
from tests.stripe.fake import FakeStripe, sign
from tests.stripe.shapes import CURRENT_API, OLD_API, event, priced_invoice, published
from tests.stripe.test_webhooks import stored_events

JSON = dict[str, Any]


async def post_signed(api: httpx.AsyncClient, payload: bytes) -> httpx.Response:
    """POST raw bytes to /webhooks/stripe with a valid signature."""
    headers = {"Stripe-Signature": sign(payload, WEBHOOK_SECRET)}
    return await api.post("/webhooks/stripe", content=payload, headers=headers)


def shop_settings(fake: FakeStripe, **stripe_keys: Any) -> JSON:
    """``[stripe]`` pointed at ``fake``."""
    return {
        "secret_key": fake.api_key,
        "webhook_secret": WEBHOOK_SECRET,
        "api_base": fake.api_base,
        **stripe_keys,
    }


def session_event(session: JSON, **values: Any) -> JSON:
    """``checkout.session.completed`` in the published shape for a session the fake holds."""
    taken = ["id", "customer", "client_reference_id", "payment_intent", "metadata", "currency"]
    taken += ["amount_subtotal", "amount_total", "payment_status", "status", "url"]
    shaped = published("checkout.session", **{name: session[name] for name in taken}, **values)
    return event("checkout.session.completed", shaped)


def charge_of(fake: FakeStripe, charge_id: str) -> JSON:
    """The fake's charge in the published shape (``charge.refunded``)."""
    charge = fake.objects[charge_id]
    taken = ["id", "amount", "amount_captured", "amount_refunded", "captured", "currency"]
    taken += ["customer", "paid", "payment_intent", "refunded", "refunds", "status"]
    return published("charge", **{name: charge[name] for name in taken})


def dispute_of(fake: FakeStripe, dispute: JSON, status: str) -> JSON:
    """A dispute in the published shape, at ``status``."""
    taken = ("id", "amount", "charge", "currency", "payment_intent")
    return published("dispute", **{name: dispute[name] for name in taken}, status=status)


@pytest.mark.parametrize(
    "payload",
    [
        b"{}",
        b"[]",
        b"null",
        b'"evt_1"',
        b"not json at all",
        b'{"type": "checkout.session.completed", "data": {"object": {}}, "livemode": false}',
        b'{"id": "evt_1", "data": {"object": {}}, "livemode": false}',
        b'{"id": "evt_1", "type": "checkout.session.completed", "livemode": false}',
        b'{"id": "evt_1", "type": "charge.refunded", "data": [], "livemode": false}',
        b'{"id": "evt_1", "type": "charge.refunded", "data": {}, "livemode": false}',
        b'{"id": "evt_1", "type": "a", "data": {"object": "ch_1"}, "livemode": false}',
        b'{"id": "evt_1", "type": "charge.refunded", "data": {"object": []}, "livemode": false}',
        b'{"id": 7, "type": "charge.refunded", "data": {"object": {}}, "livemode": false}',
        b'{"id": "", "type": "charge.refunded", "data": {"object": {}}, "livemode": false}',
        b'{"id": "evt_1", "type": null, "data": {"object": {}}, "livemode": false}',
        b'{"id": "evt_1", "type": "charge.refunded", "data": {"object": {}}, "livemode": "no"}',
        b'{"id": "evt_1", "type": "charge.refunded", "data": {"object": {}}}',
        (
            '{"id": "evt_'
            + "x" * 300
            + '", "type": "a", "data": {"object": {}}, "livemode": false}'
        ).encode(),
    ],
)
async def test_a_signed_body_that_is_not_an_event_is_refused_400_invalid_event(
    shop: Ledger, shop_api: httpx.AsyncClient, payload: bytes
) -> None:
    response = await post_signed(shop_api, payload)
    assert response.status_code == 400, response.text
    error = body(response)["error"]
    assert error["code"] == "invalid_event"
    assert error["message"]
    assert await stored_events(shop) == 0


async def test_unknown_fields_are_accepted_and_kept_with_the_event(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    session = fake.complete_session(await checkout(shop_api, "ada", "1k"))
    sent = session_event(session, future_field={"added": "2027-01-01"})
    sent["context"] = "acct_1Future"
    sent["data"]["previous_attributes"] = {"status": "open"}
    response = await deliver(shop_api, sent)
    assert (response.status_code, body(response)["outcome"]) == (200, "granted")

    async def kept(conn: AsyncConnection) -> Any:
        query = select(webhook_events.c.payload).where(webhook_events.c.event_id == sent["id"])
        return (await conn.execute(query)).scalar_one()

    assert await db.run(shop.engine, kept, readonly=True) == sent


@pytest.mark.parametrize("shape", ["old_api", "current_api_expanded", "current_api_as_sent"])
async def test_a_pack_bought_by_invoice_is_clawed_back_by_its_refund(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe, shape: str
) -> None:
    paid = fake.pay_invoice("in_1Ivy", "cus_ivy", PRICES["price_10k"])
    intent = fake.objects[paid["payment"]["payment_intent"]]
    ours = {"metadata": {"creditsd_account": "ivy"}}
    if shape == "old_api":
        invoice = priced_invoice(
            "2024-06-20", "in_1Ivy", "cus_ivy", "price_10k", 9_000, paid=True,
            payment_intent=intent["id"], charge=intent["latest_charge"], **ours,
        )  # fmt: skip
        sent = event("invoice.payment_succeeded", invoice, api_version=OLD_API)
    else:
        invoice = priced_invoice("basil", "in_1Ivy", "cus_ivy", "price_10k", 9_000, **ours)
        if shape == "current_api_expanded":
            invoice["payments"] = {
                "object": "list",
                "data": [published("invoice_payment", **paid)],
                "has_more": False,
                "url": "/v1/invoice_payments",
            }
        sent = event("invoice.payment_succeeded", invoice, api_version=CURRENT_API)

    granted = await deliver(shop_api, sent)
    assert granted.status_code == 200, granted.text
    assert (await shop.get_account("ivy")).balance == 10_000 * CREDIT

    refunded = fake.refund(intent["latest_charge"], 9_000)
    clawed = await deliver(shop_api, event("charge.refunded", charge_of(fake, refunded["id"])))
    assert body(clawed)["outcome"] == "clawed_back"
    assert (await shop.get_account("ivy")).balance == 0
    assert await reconciled(shop) == []


async def test_a_duplicate_event_is_recognised_before_any_call_to_stripe(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    session = fake.complete_session(await checkout(shop_api, "dot", "1k"))
    sent = session_event(session)
    assert body(await deliver(shop_api, sent))["outcome"] == "granted"
    paid = fake.pay_invoice("in_1Dot", "cus_dot", PRICES["price_1k"])
    invoice = priced_invoice("basil", "in_1Dot", "cus_dot", "price_1k", 1_000)
    invoice["metadata"] = {"creditsd_account": "dot"}
    billed = event("invoice.payment_succeeded", invoice)
    assert body(await deliver(shop_api, billed))["outcome"] == "handled"
    assert paid["invoice"] == "in_1Dot"

    asked = len(fake.requests)
    for again in (sent, billed, sent):
        assert body(await deliver(shop_api, again))["outcome"] == "duplicate"
    assert len(fake.requests) == asked
    assert (await shop.get_account("dot")).balance == 2_000 * CREDIT


@pytest.mark.parametrize(
    ("key", "livemode"),
    [
        ("sk_test_fake", True),
        ("rk_test_fake", True),
        ("sk_live_fake", False),
        ("rk_live_fake", False),
    ],
)
async def test_an_event_of_the_other_mode_than_the_key_is_stored_and_refused(
    make_ledger: LedgerFactory, key: str, livemode: bool
) -> None:
    with FakeStripe(api_key=key, prices=PRICES) as fake:
        ledger = await make_ledger(stripe=shop_settings(fake), packs=PACKS)
        paid = fake.pay_invoice("in_1Mode", "cus_mode", PRICES["price_1k"])
        invoice = priced_invoice("basil", "in_1Mode", "cus_mode", "price_1k", 1_000)
        invoice |= {"metadata": {"creditsd_account": "max"}, "livemode": livemode}
        invoice["payments"] = {"object": "list", "data": [paid], "has_more": False}
        sent = event("invoice.payment_succeeded", invoice, livemode=livemode)
        async with client_for(ledger, await create_key(ledger, "app", "web")) as api:
            refused = await deliver(api, sent)
            assert refused.status_code == 400
            error = body(refused)["error"]
            assert error["code"] == "livemode_mismatch"
            mode = "live" if livemode else "test"
            assert f"a {mode}-mode event" in error["message"]
            assert key not in refused.text
            again = await deliver(api, sent)  # Stripe retries: refused again, not "duplicate"
            assert body(again)["error"]["code"] == "livemode_mismatch"

        assert await stored_events(ledger) == 1
        assert (await ledger.get_account("max")).balance == 0
        found = await reconciled(ledger)
        assert [(m.kind, m.reference) for m in found] == [("unhandled_event", sent["id"])]
        assert "livemode_mismatch" in found[0].detail


@pytest.mark.parametrize(
    "ending",
    [
        ["charge.dispute.funds_reinstated", "charge.dispute.closed"],
        ["charge.dispute.closed", "charge.dispute.funds_reinstated"],
        ["charge.dispute.closed"],
    ],
)
async def test_a_won_dispute_gives_back_what_it_took_exactly_once(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe, ending: list[str]
) -> None:
    session = fake.complete_session(await checkout(shop_api, "gus", "10k"))
    assert body(await deliver(shop_api, session_event(session)))["outcome"] == "granted"
    await shop.charge("gus", 4_000 * CREDIT)
    disputed = fake.dispute(fake.objects[session["payment_intent"]]["latest_charge"], 4_500)
    opened = event("charge.dispute.created", dispute_of(fake, disputed, "needs_response"))
    assert body(await deliver(shop_api, opened))["outcome"] == "clawed_back"
    assert (await shop.get_account("gus")).balance == 1_000 * CREDIT  # 5,000 of 6,000 taken

    outcomes = []
    for kind in ending:
        won = event(kind, dispute_of(fake, disputed, "won"))
        outcomes += [body(await deliver(shop_api, won))["outcome"] for _ in range(2)]
    assert outcomes[0] == "reinstated"
    assert set(outcomes[1:]) == {"duplicate", "already_reinstated"} or outcomes[1:] == ["duplicate"]
    account = await shop.get_account("gus")
    assert (account.balance, account.status) == (6_000 * CREDIT, "active")
    back = (await shop.transactions("gus")).items[0]
    assert (back.kind, back.amount, back.debit_account_id) == (
        "reversal",
        5_000 * CREDIT,
        "@stripe",
    )
    assert (await shop.verify_account("gus")).valid
    assert await reconciled(shop) == []

    # A refund after the dispute was won still claws back what the payment bought.
    refunded = fake.refund(disputed["charge"], 9_000)
    clawed = await deliver(shop_api, event("charge.refunded", charge_of(fake, refunded["id"])))
    assert body(clawed)["outcome"] == "clawed_back"
    assert (await shop.get_account("gus")).balance == -4_000 * CREDIT


async def test_a_lost_dispute_gives_nothing_back(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    session = fake.complete_session(await checkout(shop_api, "hal", "1k"))
    await deliver(shop_api, session_event(session))
    disputed = fake.dispute(fake.objects[session["payment_intent"]]["latest_charge"])
    await deliver(
        shop_api, event("charge.dispute.created", dispute_of(fake, disputed, "needs_response"))
    )
    lost = await deliver(
        shop_api, event("charge.dispute.closed", dispute_of(fake, disputed, "lost"))
    )
    assert body(lost)["outcome"] == "not_won"
    assert (await shop.get_account("hal")).balance == 0


async def test_a_won_dispute_lifts_the_freeze_it_made(
    make_ledger: LedgerFactory, fake: FakeStripe
) -> None:
    ledger = await make_ledger(stripe=shop_settings(fake, dispute_policy="freeze"), packs=PACKS)
    async with client_for(ledger, await create_key(ledger, "app", "web")) as api:
        session = fake.complete_session(await checkout(api, "ike", "1k"))
        await deliver(api, session_event(session))
        disputed = fake.dispute(fake.objects[session["payment_intent"]]["latest_charge"])
        opened = event("charge.dispute.created", dispute_of(fake, disputed, "needs_response"))
        assert body(await deliver(api, opened))["outcome"] == "frozen"
        won = event("charge.dispute.funds_reinstated", dispute_of(fake, disputed, "won"))
        assert body(await deliver(api, won))["outcome"] == "reinstated"
    account = await ledger.get_account("ike")
    assert (account.balance, account.status) == (1_000 * CREDIT, "active")


async def test_a_freeze_made_by_an_operator_stays_when_the_dispute_is_won(
    make_ledger: LedgerFactory, fake: FakeStripe
) -> None:
    ledger = await make_ledger(stripe=shop_settings(fake, dispute_policy="freeze"), packs=PACKS)
    async with client_for(ledger, await create_key(ledger, "app", "web")) as api:
        session = fake.complete_session(await checkout(api, "jo", "1k"))
        await deliver(api, session_event(session))
        disputed = fake.dispute(fake.objects[session["payment_intent"]]["latest_charge"])
        await deliver(api, event("charge.dispute.created", dispute_of(fake, disputed, "x")))
    async with client_for(ledger, await create_key(ledger, "admin", "ops")) as admin:
        for status in ("active", "frozen"):  # the operator's own freeze, later
            changed = await admin.put("/v1/accounts/jo", json={"status": status})
            assert changed.status_code == 200, changed.text
        won = event("charge.dispute.closed", dispute_of(fake, disputed, "won"))
        assert body(await deliver(admin, won))["outcome"] == "nothing_to_give_back"
    assert (await ledger.get_account("jo")).status == "frozen"


def _session(fake: FakeStripe, customer: str, reference: str) -> JSON:
    """A paid session made elsewhere in the Stripe account, for ``customer``."""
    client = stripe.StripeClient(fake.api_key, base_addresses={"api": fake.api_base})
    made = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [{"price": "price_10k", "quantity": 1}],
            "customer": customer,
            "client_reference_id": reference,
            "success_url": "https://elsewhere.example/ok",
            "cancel_url": "https://elsewhere.example/no",
        }
    )
    return fake.complete_session(made.id)


async def test_a_session_naming_one_account_for_anothers_customer_is_held_for_review(
    shop: Ledger,
    shop_api: httpx.AsyncClient,
    fake: FakeStripe,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = fake.complete_session(await checkout(shop_api, "kim", "1k"))
    await deliver(shop_api, session_event(first))
    await shop.open_account("lou")
    session = await asyncio.to_thread(_session, fake, first["customer"], "lou")
    sent = session_event(session)

    with caplog.at_level(logging.WARNING, logger="creditsd.stripe"):
        response = await deliver(shop_api, sent)
    assert (response.status_code, body(response)["outcome"]) == (200, "needs_review")
    assert (await shop.get_account("lou")).balance == 0
    assert (await shop.get_account("kim")).balance == 1_000 * CREDIT
    (line,) = [r.getMessage() for r in caplog.records if "review" in r.getMessage()]
    assert sent["id"] in line and "lou" in line and "kim" in line

    async with client_for(shop, await create_key(shop, "admin", "ops")) as admin:
        listed = body(await admin.get("/v1/audit-log", params={"action": "stripe.needs_review"}))
    (record,) = listed["data"]
    assert (record["actor"], record["target"]) == ("stripe", "lou")
    assert record["after"] == {
        "event": sent["id"],
        "session": session["id"],
        "payment": session["payment_intent"],
        "invoice": None,
        "account_named": "lou",
        "customer": first["customer"],
        "customer_account": "kim",
    }
    found = await reconciled(shop)
    assert [(m.kind, m.reference) for m in found] == [("needs_review", sent["id"])]
    assert body(await deliver(shop_api, sent))["outcome"] == "duplicate"
