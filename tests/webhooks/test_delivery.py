"""Signed webhooks through the outbox: signed, in order, retried, never lost or doubled."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from creditsd.inprocess import Ledger
from creditsd.kit import db
from creditsd.ledger import service as ledger_service
from creditsd.ledger.models import STRIPE
from creditsd.worker import Deliverer
from tests.conftest import Clock, LedgerFactory, body, client_for, create_key
from tests.test_processes import eventually
from tests.webhooks.conftest import WEBHOOKS, register
from tests.webhooks.receiver import Receiver

CREDIT = 10_000


@pytest.fixture
async def admin(hooked: Ledger) -> Any:
    async with client_for(hooked, await create_key(hooked, "admin", "ops")) as client:
        yield client


async def test_a_charge_arrives_once_signed_the_standard_way(
    hooked: Ledger, admin: httpx.AsyncClient, receiver: Receiver, deliverer: Deliverer
) -> None:
    _endpoint, secret = await register(admin, receiver.url + "/hooks", ["charge.succeeded"])
    await hooked.grant("ada", 100 * CREDIT)
    charge = await hooked.charge("ada", 10 * CREDIT, description="chat")

    assert await deliverer.deliver_due() == 1
    assert await deliverer.deliver_due() == 0
    (arrived,) = receiver.received
    payload = Webhook(secret).verify(arrived.body, arrived.headers)
    assert payload["type"] == "charge.succeeded"
    assert payload["data"]["transfer"]["id"] == charge.id
    assert payload["data"]["transfer"]["amount"] == 10
    assert payload["id"] == arrived.headers["webhook-id"]
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(arrived.body.replace(b"chat", b"chas"), arrived.headers)


async def test_a_receiver_that_fails_twice_gets_it_on_the_third_try(
    hooked: Ledger,
    admin: httpx.AsyncClient,
    receiver: Receiver,
    deliverer: Deliverer,
    clock: Clock,
) -> None:
    await register(admin, receiver.url, ["charge.succeeded"])
    await hooked.grant("bo", 100 * CREDIT)
    await hooked.charge("bo", 1 * CREDIT)
    receiver.failures_left = 2
    assert await deliverer.deliver_due() == 1  # 503
    assert await deliverer.deliver_due() == 0  # waiting out the backoff (about 1 s)
    clock.advance(2)
    assert await deliverer.deliver_due() == 1  # 503 again; now about 2 s
    clock.advance(4)
    assert await deliverer.deliver_due() == 1
    (delivery,) = body(await admin.get("/v1/webhook-deliveries"))["data"]
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 3)
    assert len(receiver.received) == 3


async def test_a_receiver_down_for_minutes_then_up_gets_every_event_in_order(
    hooked: Ledger,
    admin: httpx.AsyncClient,
    receiver: Receiver,
    deliverer: Deliverer,
    clock: Clock,
) -> None:
    await register(admin, receiver.url, ["charge.succeeded"])
    await hooked.grant("cy", 100 * CREDIT)
    charges = [(await hooked.charge("cy", (n + 1) * CREDIT)).id for n in range(5)]
    receiver.failures_left = 10**6
    for _ in range(8):  # eight minutes down: one attempt a minute, each refused
        await deliverer.deliver_due()
        clock.advance(60)
    assert {r.json()["data"]["transfer"]["id"] for r in receiver.received} == {charges[0]}
    receiver.failures_left = 0
    clock.advance(300)  # past the backoff the last refusal earned
    while await deliverer.deliver_due():
        pass
    delivered = [b["data"]["transfer"]["id"] for b in receiver.bodies()][-5:]
    assert delivered == charges  # the first one went first, every time
    page = body(await admin.get("/v1/webhook-deliveries", params={"status": "delivered"}))
    assert len(page["data"]) == 5


async def test_past_its_age_a_message_is_dead_until_retried_by_hand(
    hooked: Ledger,
    admin: httpx.AsyncClient,
    receiver: Receiver,
    deliverer: Deliverer,
    clock: Clock,
) -> None:
    await register(admin, receiver.url, ["charge.succeeded"])
    await hooked.grant("di", 10 * CREDIT)
    await hooked.charge("di", 1 * CREDIT)
    receiver.failures_left = 10**6
    await deliverer.deliver_due()
    clock.advance(WEBHOOKS["max_age_seconds"] + 1)
    await deliverer.deliver_due()
    (dead,) = body(await admin.get("/v1/webhook-deliveries", params={"status": "dead"}))["data"]
    assert dead["last_error"] == "HTTP 503: {}"  # the status and what the receiver said
    clock.advance(3600)
    assert await deliverer.deliver_due() == 0  # dead stays dead

    retried = await admin.post(f"/v1/webhook-deliveries/{dead['id']}/retry")
    assert (retried.status_code, body(retried)["status"]) == (200, "pending")
    receiver.failures_left = 0
    assert await deliverer.deliver_due() == 1
    assert body(await admin.get("/v1/webhook-deliveries"))["data"][0]["status"] == "delivered"
    missing = await admin.post("/v1/webhook-deliveries/999999/retry")
    assert missing.status_code == 404


async def test_two_workers_never_deliver_one_message_twice(
    make_ledger: LedgerFactory, hooked: Ledger, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    await register(admin, receiver.url, ["charge.succeeded"])
    for n in range(20):
        await hooked.grant(f"u{n}", 10 * CREDIT)
        await hooked.charge(f"u{n}", 1 * CREDIT)
    receiver.delay = 0.05
    other = await make_ledger(webhooks=WEBHOOKS)  # a second process's worth: its own pool
    workers = [Deliverer(hooked), Deliverer(other)]
    try:
        while sum(await asyncio.gather(*(worker.deliver_due() for worker in workers))):
            pass
    finally:
        for worker in workers:
            await worker.close()
    counts = Counter(r.headers["webhook-id"] for r in receiver.received)
    assert len(counts) == 20
    assert set(counts.values()) == {1}


async def test_balance_low_fires_once_per_crossing_and_again_after_a_top_up(
    hooked: Ledger, admin: httpx.AsyncClient, receiver: Receiver, deliverer: Deliverer
) -> None:
    await register(admin, receiver.url, ["balance.low", "balance.depleted"])
    await hooked.grant("eve", 100 * CREDIT)
    for amount in (30, 30, 10):  # 70, 40 (crosses 50), 30
        await hooked.charge("eve", amount * CREDIT)
    await hooked.grant("eve", 100 * CREDIT)  # 130: armed again
    await hooked.charge("eve", 90 * CREDIT)  # 40: crosses again
    await hooked.charge("eve", 40 * CREDIT)  # 0: depleted
    while await deliverer.deliver_due():
        pass
    events = [(b["type"], b["data"]["balance"]) for b in receiver.bodies()]
    assert events == [("balance.low", 40), ("balance.low", 40), ("balance.depleted", 0)]

    fay = await admin.put("/v1/accounts/fay", json={"low_balance_threshold": 500})
    assert body(fay)["low_balance_threshold"] == 500
    await hooked.grant("fay", 600 * CREDIT)
    await hooked.charge("fay", 200 * CREDIT)  # 400: below its own 500
    while await deliverer.deliver_due():
        pass
    assert receiver.bodies()[-1]["data"]["threshold"] == 500


async def test_holds_grants_and_top_ups_are_told_too(
    hooked: Ledger,
    admin: httpx.AsyncClient,
    receiver: Receiver,
    deliverer: Deliverer,
    clock: Clock,
) -> None:
    await register(admin, receiver.url, ["hold.expired", "grant.expired", "topup.completed"])
    await hooked.grant("gus", 10 * CREDIT, expires_at=clock.now + timedelta(minutes=1))
    hold = await hooked.open_hold("gus", 3 * CREDIT, expires_in=30)

    async def bought(conn: Any) -> None:
        purchase = ledger_service.Movement(
            kind="purchase",
            debit_account_id=STRIPE,
            credit_account_id="gus",
            amount=5 * CREDIT,
            app="stripe",
            idempotency_key="pi_1",
        )
        await ledger_service.post_transfer(conn, purchase, hooked.policy, hooked.now())

    await db.run(hooked.engine, bought)
    clock.advance(61)
    await hooked.expire_holds()
    await hooked.expire_lots()
    while await deliverer.deliver_due():
        pass
    types = sorted(b["type"] for b in receiver.bodies())
    assert types == ["grant.expired", "hold.expired", "topup.completed"]
    expired = next(b for b in receiver.bodies() if b["type"] == "hold.expired")
    assert (expired["data"]["hold_id"], expired["data"]["released"]) == (hold.id, 3)


async def test_endpoints_are_admin_only_and_their_secret_is_shown_once(
    hooked: Ledger, admin: httpx.AsyncClient
) -> None:
    created = await admin.post(
        "/v1/webhook-endpoints",
        json={"url": "https://app.example/hooks", "events": ["balance.low"]},
    )
    secret = body(created)["secret"]
    assert secret.startswith("whsec_")
    (listed,) = body(await admin.get("/v1/webhook-endpoints"))["data"]
    assert secret not in str(listed) and listed["secret"].startswith("whsec_")
    for bad in (
        {"url": "ftp://x", "events": ["balance.low"]},
        {"url": "https://x", "events": ["balance.high"]},
        {"url": "https://x", "events": []},
        {"url": "https://x", "events": ["balance.low"], "secret": "mine"},
    ):
        assert (await admin.post("/v1/webhook-endpoints", json=bad)).status_code == 422
    async with client_for(hooked, await create_key(hooked, "app", "web")) as app_client:
        refused = await app_client.post(
            "/v1/webhook-endpoints", json={"url": "https://x", "events": ["balance.low"]}
        )
        assert refused.status_code == 403
    gone = await admin.delete(f"/v1/webhook-endpoints/{body(created)['id']}")
    assert body(gone)["disabled_at"] is not None
    assert (await admin.delete("/v1/webhook-endpoints/we_nope")).status_code == 404


async def test_registering_an_endpoint_twice_under_one_key_registers_it_once(
    admin: httpx.AsyncClient,
) -> None:
    request = {"url": "https://app.example/hooks", "events": ["charge.succeeded"]}
    headers = {"Idempotency-Key": "hooks-1"}
    first = await admin.post("/v1/webhook-endpoints", json=request, headers=headers)
    again = await admin.post("/v1/webhook-endpoints", json=request, headers=headers)
    assert (body(again)["id"], body(again)["secret"]) == (body(first)["id"], body(first)["secret"])
    assert again.headers["Idempotent-Replayed"] == "true"
    other = {**request, "events": ["balance.low"]}
    conflict = await admin.post("/v1/webhook-endpoints", json=other, headers=headers)
    assert (conflict.status_code, body(conflict)["error"]["code"]) == (409, "idempotency_conflict")
    assert len(body(await admin.get("/v1/webhook-endpoints"))["data"]) == 1


async def test_a_worker_that_dies_mid_batch_holds_its_messages_back_seconds_not_minutes(
    make_ledger: LedgerFactory,
    hooked: Ledger,
    admin: httpx.AsyncClient,
    receiver: Receiver,
    clock: Clock,
) -> None:
    """Each message is leased for one delivery's time (the timeout plus 5 s), from when
    its delivery starts: a worker killed with a batch in hand delays it that long."""
    await register(admin, receiver.url, ["charge.succeeded"])
    for n in range(40):
        await hooked.grant(f"d{n}", 10 * CREDIT)
        await hooked.charge(f"d{n}", 1 * CREDIT)
    receiver.delay = 30  # the first worker's deliveries hang until it is killed
    dying = Deliverer(hooked)
    work = asyncio.create_task(dying.deliver_due())
    assert await eventually(lambda: bool(receiver.received), 10)
    work.cancel()  # killed mid-batch
    await dying.close()
    receiver.delay = 0
    timeout = hooked.settings.webhooks.timeout_seconds
    clock.advance(timeout + 5.5)
    survivor = Deliverer(await make_ledger(webhooks=WEBHOOKS))
    try:
        while await survivor.deliver_due():
            pass
    finally:
        await survivor.close()
    delivered = {r.headers["webhook-id"] for r in receiver.received}
    assert len(delivered) == 40


async def test_a_delivery_id_beyond_any_stored_one_is_refused_not_a_server_error(
    admin: httpx.AsyncClient,
) -> None:
    largest = 2**63 - 1
    assert (await admin.post(f"/v1/webhook-deliveries/{largest}/retry")).status_code == 404
    beyond = await admin.post(f"/v1/webhook-deliveries/{largest + 1}/retry")
    assert beyond.status_code == 422
    assert body(beyond)["error"]["code"] == "validation_error"
