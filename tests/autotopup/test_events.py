"""Every change of an auto top-up's state is told once (a webhook and an audit record), and
``balance.low`` is never held back by a top-up pending or failing."""

from __future__ import annotations

from typing import Any

import httpx

from creditsd.autotopup import repository as autotopup_repo
from creditsd.inprocess import Ledger
from creditsd.stripe.billing import StripeBilling
from creditsd.webhooks import repository as webhooks_repo
from creditsd.worker import charge_auto_topups
from tests.autotopup.test_consent import save_card
from tests.conftest import body, client_for, create_key
from tests.stripe.conftest import deliver
from tests.stripe.fake import FakeStripe

CREDIT = 10_000
EVENTS = [
    "balance.low",
    *(
        f"auto_topup.{name}"
        for name in ("succeeded", "failed", "paused", "resumed", "needs_action", "cap_reached")
    ),
]


async def told(ledger: Ledger) -> list[tuple[str, Any]]:
    """The messages about ada, oldest first: type and the figure that matters."""

    async def read(conn: Any, _now: Any) -> list[Any]:
        return await webhooks_repo.account_messages(conn, "ada", 100)

    found = reversed(await ledger.database.read(read))
    figures = ("reason", "credits", "decline_code", "balance", "because", "month")
    return [
        (
            m.event_type,
            next((m.payload["data"][f] for f in figures if f in m.payload["data"]), None),
        )
        for m in found
    ]


async def set_up(shop: Ledger, api: httpx.AsyncClient, fake: FakeStripe, **rule: Any) -> None:
    """Hooks for every event, balance.low below 100, a rule and a saved card, 150 credits."""
    async with client_for(shop, await create_key(shop, "admin", "ops")) as admin:
        hooked = await admin.post(
            "/v1/webhook-endpoints", json={"url": "https://app.example/hooks", "events": EVENTS}
        )
        assert hooked.status_code == 201, hooked.text
        low = await admin.put("/v1/accounts/ada", json={"low_balance_threshold": 100})
        assert low.status_code in (200, 201), low.text
    values = {"enabled": True, "threshold": 100, "target_balance": 500, "monthly_cap": 5000}
    assert (await api.put("/v1/accounts/ada/auto-topup", json=values | rule)).status_code == 200
    await save_card(api, fake, "ada")
    await shop.grant("ada", 150 * CREDIT)


async def run_worker(shop: Ledger) -> list[str]:
    billing = StripeBilling(shop)
    try:
        return await charge_auto_topups(shop, billing)
    finally:
        await billing.close()


async def test_a_decline_pauses_a_new_card_resumes_and_the_top_up_lands(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    await set_up(shop, shop_api, fake)
    fake.intent_outcomes = ["declined:card_declined:do_not_try_again"]
    await shop.charge("ada", 100 * CREDIT)  # 50: below both thresholds
    assert await run_worker(shop) == ["declined"]
    await shop.charge("ada", 10 * CREDIT)  # paused: no attempt, and no second balance.low
    await save_card(shop_api, fake, "ada", fingerprint="fp_new")
    await shop.charge("ada", 10 * CREDIT)  # 30: active again, queues 470
    assert await run_worker(shop) == ["succeeded"]
    assert await told(shop) == [
        ("balance.low", 50),
        ("auto_topup.failed", "card_declined"),
        ("auto_topup.paused", "card declined (card_declined): do not retry"),
        ("auto_topup.resumed", "a new card was saved"),
        ("auto_topup.succeeded", 470),
    ]
    async with client_for(shop, await create_key(shop, "admin", "ops2")) as admin:
        log = body(await admin.get("/v1/audit-log", params={"target": "ada", "limit": 100}))
    actions = [record["action"] for record in reversed(log["data"])]
    assert [a for a in actions if a.startswith("auto_topup.")] == [
        "auto_topup.updated",
        "auto_topup.consented",
        "auto_topup.failed",
        "auto_topup.paused",
        "auto_topup.resumed",
        "auto_topup.consented",
        "auto_topup.succeeded",
    ]


async def test_authentication_required_is_told_once(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    await set_up(shop, shop_api, fake)
    fake.intent_outcomes = ["authentication_required"]
    await shop.charge("ada", 100 * CREDIT)
    assert await run_worker(shop) == ["needs_action"]
    await shop.charge("ada", 10 * CREDIT)
    assert await run_worker(shop) == []
    assert [event for event, _ in await told(shop)] == ["balance.low", "auto_topup.needs_action"]


async def test_the_cap_is_told_once_a_month(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    await set_up(shop, shop_api, fake, monthly_cap=450)
    await shop.charge("ada", 100 * CREDIT)  # 50: buys 450, the whole cap
    assert await run_worker(shop) == ["succeeded"]
    await shop.charge("ada", 450 * CREDIT)  # 50 again: the cap leaves nothing
    await shop.charge("ada", 10 * CREDIT)
    assert await run_worker(shop) == []
    assert await told(shop) == [
        ("balance.low", 50),
        ("auto_topup.succeeded", 450),
        ("balance.low", 50),
        ("auto_topup.cap_reached", shop.now().strftime("%Y-%m")),
    ]
    topup = body(await shop_api.get("/v1/accounts/ada/auto-topup"))
    assert (topup["month_total"], topup["monthly_cap"]) == (450, 450)


async def test_a_processing_payment_that_fails_or_is_canceled_is_told_once(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    await set_up(shop, shop_api, fake)
    fake.intent_outcomes = ["processing", "processing"]
    await shop.charge("ada", 100 * CREDIT)
    assert await run_worker(shop) == ["processing"]
    (first,) = [oid for oid, o in fake.objects.items() if o["object"] == "payment_intent"]
    failed = fake.event("payment_intent.payment_failed", fake.fail_payment(first, "expired_card"))
    for event in (
        failed,
        failed,
        fake.event("payment_intent.payment_failed", failed["data"]["object"]),
    ):
        assert (await deliver(shop_api, event)).status_code == 200
    await shop.database.write(
        lambda conn, now: autotopup_repo.update_rule(conn, "ada", {"next_attempt_at": None})
    )
    await shop.charge("ada", 10 * CREDIT)  # 40: the backoff has passed, a second attempt
    assert await run_worker(shop) == ["processing"]
    second = [oid for oid, o in fake.objects.items() if o["object"] == "payment_intent"][-1]
    canceled = fake.event("payment_intent.canceled", fake.cancel_payment(second))
    for event in (canceled, fake.event("payment_intent.canceled", canceled["data"]["object"])):
        assert (await deliver(shop_api, event)).status_code == 200
    assert await told(shop) == [
        ("balance.low", 50),
        ("auto_topup.failed", "expired_card"),
        ("auto_topup.failed", None),
    ]
    messages = await shop.database.read(
        lambda conn, _now: webhooks_repo.account_messages(conn, "ada", 100)
    )
    data = [m.payload["data"] for m in reversed(messages) if m.event_type == "auto_topup.failed"]
    assert [(d["canceled"], d["cancellation_reason"], d["consecutive_declines"]) for d in data] == [
        (False, None, 1),
        (True, "automatic", 1),
    ]
    async with client_for(shop, await create_key(shop, "admin", "ops2")) as admin:
        log = body(await admin.get("/v1/audit-log", params={"target": "ada", "limit": 100}))
    actions = [record["action"] for record in reversed(log["data"])]
    assert [a for a in actions if a == "auto_topup.failed"] == ["auto_topup.failed"] * 2
