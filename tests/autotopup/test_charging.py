"""Charging a saved card off-session, each outcome as the fake Stripe scripts it, and what
the ledger shows: credits only for a succeeded PaymentIntent, once, whichever of the
synchronous answer and the webhook comes first."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from creditsd.autotopup import charging
from creditsd.autotopup import repository as autotopup_repo
from creditsd.inprocess import Ledger
from creditsd.stripe.billing import StripeBilling
from creditsd.tables import accounts, transfers
from creditsd.worker import charge_attempt, charge_auto_topups
from tests.autotopup.test_consent import save_card
from tests.conftest import body
from tests.stripe.conftest import deliver
from tests.stripe.fake import FakeStripe

CREDIT = 10_000
RULE = {"enabled": True, "threshold": 100, "target_balance": 500, "monthly_cap": 5000}


async def low_balance(shop: Ledger, api: httpx.AsyncClient, fake: FakeStripe) -> None:
    """A rule with a saved card, then a charge that leaves 50 credits: 450 queued."""
    assert (await api.put("/v1/accounts/ada/auto-topup", json=RULE)).status_code == 200
    await save_card(api, fake, "ada")
    await shop.grant("ada", 150 * CREDIT)
    await shop.charge("ada", 100 * CREDIT)


async def state(api: httpx.AsyncClient) -> tuple[Any, ...]:
    """Balance, top-up state, declines, and the last attempt's status."""
    balance = body(await api.get("/v1/accounts/ada"))["balance"]
    topup = body(await api.get("/v1/accounts/ada/auto-topup"))
    last = topup["last_attempt"]
    return balance, topup["state"], topup["consecutive_declines"], last and last["status"]


EVENTS = {  # the event Stripe sends for a PaymentIntent's status
    "succeeded": "payment_intent.succeeded",
    "requires_payment_method": "payment_intent.payment_failed",
    "canceled": "payment_intent.canceled",
}


async def webhook(api: httpx.AsyncClient, fake: FakeStripe, intent_id: str) -> str:
    """Deliver the event of the PaymentIntent's status, as it stands; the outcome."""
    intent = fake.objects[intent_id]
    response = await deliver(api, fake.event(EVENTS[intent["status"]], intent))
    assert response.status_code == 200, response.text
    return str(response.json()["outcome"])


async def purchases(shop: Ledger) -> list[Any]:
    """The purchase transfers into ada's account."""
    query = select(transfers).where(transfers.c.kind == "purchase")

    async def read(conn: Any, _now: Any) -> list[Any]:
        return [row for row in await conn.execute(query) if row.credit_account_id == "ada"]

    return await shop.database.read(read)


def last_intent(fake: FakeStripe) -> str:
    return [oid for oid, obj in fake.objects.items() if obj["object"] == "payment_intent"][-1]


async def play(
    shop: Ledger, api: httpx.AsyncClient, fake: FakeStripe, steps: list[str]
) -> list[str]:
    """Run a story's steps; what each told. ``pass``: a worker pass (the statuses it leaves);
    ``call``: a worker asks Stripe and has not recorded the answer; ``record``: it records
    it (the attempt's status after); ``webhook``: Stripe's event for the intent as it stands
    (the webhook's outcome); ``succeeds``, ``fails``, ``cancels``: a processing payment
    ends so, and its event is delivered."""
    billing = StripeBilling(shop)
    ends = {"succeeds": fake.succeed_payment, "fails": fake.fail_payment}
    ends["cancels"] = fake.cancel_payment
    seen: list[str] = []
    answer = None
    try:
        (due,) = await shop.database.read(lambda conn, _now: charging.due_attempts(conn))
        for step in steps:
            if step == "pass":
                seen += await charge_auto_topups(shop, billing)
            elif step == "call":
                answer = await charge_attempt(shop, billing, due)
            elif step == "record":
                assert answer is not None
                seen.append(await record(shop, due, answer))
            else:
                if step in ends:
                    ends[step](last_intent(fake))
                seen.append(await webhook(api, fake, last_intent(fake)))
    finally:
        await billing.close()
    return seen


async def record(shop: Ledger, due: charging.Due, answer: charging.Answer) -> str:
    """A worker records Stripe's answer; the attempt's status after."""
    return await shop.database.write(
        lambda conn, now: charging.settle(conn, due, answer, shop.settings, shop.policy, now)
    )


# The outcomes of charging a saved card, as the fake Stripe scripts them, and what the
# ledger shows after: ada's balance (50 before; 450 bought to reach 500), the top-up's state,
# the declines counted, and the last attempt's status.
OUTCOMES = {
    "succeeded": (["succeeded"], ["pass"], ["succeeded"], (500, "active", 0, "succeeded")),
    "processing": (["processing"], ["pass"], ["processing"], (50, "active", 0, "processing")),
    "processing then succeeded": (
        ["processing"],
        ["pass", "succeeds", "webhook"],
        ["processing", "granted", "already_granted"],
        (500, "active", 0, "succeeded"),
    ),
    "processing then failed": (
        ["processing"],
        ["pass", "fails", "webhook"],
        ["processing", "declined", "already_declined"],
        (50, "active", 1, "declined"),
    ),
    "processing then canceled": (
        ["processing"],
        ["pass", "cancels", "webhook"],
        ["processing", "canceled", "already_canceled"],
        (50, "active", 0, "canceled"),
    ),
    "declined, no advice": (
        ["declined:generic_decline"],
        ["pass"],
        ["declined"],
        (50, "active", 1, "declined"),
    ),
    "declined, try_again_later": (
        ["declined:generic_decline:try_again_later"],
        ["pass"],
        ["declined"],
        (50, "active", 1, "declined"),
    ),
    "declined, confirm_card_data": (
        ["declined:generic_decline:confirm_card_data"],
        ["pass"],
        ["declined"],
        (50, "active", 1, "declined"),
    ),
    "declined, do_not_try_again": (
        ["declined:card_declined:do_not_try_again"],
        ["pass"],
        ["declined"],
        (50, "paused", 1, "declined"),
    ),
    "declined, stolen card": (
        ["declined:stolen_card"],
        ["pass"],
        ["declined"],
        (50, "paused", 1, "declined"),
    ),
    "declined, its webhook before the answer": (
        ["declined:insufficient_funds"],
        ["call", "webhook", "record"],
        ["declined", "declined"],
        (50, "active", 1, "declined"),
    ),
    "authentication_required": (
        ["authentication_required"],
        ["pass"],
        ["needs_action"],
        (50, "needs_action", 0, "needs_action"),
    ),
    "500 after the PaymentIntent was made": (
        ["lost"],
        ["pass", "pass"],
        ["queued", "succeeded"],
        (500, "active", 0, "succeeded"),
    ),
    "429, rate limited": (
        ["rate_limited"],
        ["pass", "pass"],
        ["queued", "succeeded"],
        (500, "active", 0, "succeeded"),
    ),
    "409, the key in use by another worker": (
        ["key_in_use"],
        ["pass", "pass"],
        ["queued", "succeeded"],
        (500, "active", 0, "succeeded"),
    ),
    "webhook before the answer": (
        ["succeeded"],
        ["call", "webhook", "record"],
        ["granted", "succeeded"],
        (500, "active", 0, "succeeded"),
    ),
    "webhook after the answer": (
        ["succeeded"],
        ["call", "record", "webhook"],
        ["succeeded", "already_granted"],
        (500, "active", 0, "succeeded"),
    ),
    "webhook twice": (
        ["succeeded"],
        ["call", "webhook", "record", "webhook"],
        ["granted", "succeeded", "already_granted"],
        (500, "active", 0, "succeeded"),
    ),
    "webhook never": (
        ["succeeded"],
        ["call", "record"],
        ["succeeded"],
        (500, "active", 0, "succeeded"),
    ),
}


@pytest.mark.parametrize(
    ("script", "steps", "seen", "shown"), list(OUTCOMES.values()), ids=list(OUTCOMES)
)
async def test_each_outcome_and_what_the_ledger_shows(
    shop: Ledger,
    shop_api: httpx.AsyncClient,
    fake: FakeStripe,
    script: list[str],
    steps: list[str],
    seen: list[str],
    shown: tuple[Any, ...],
) -> None:
    await low_balance(shop, shop_api, fake)
    fake.intent_outcomes = list(script)
    assert await play(shop, shop_api, fake, steps) == seen
    assert await state(shop_api) == shown
    intents = [obj for obj in fake.objects.values() if obj["object"] == "payment_intent"]
    assert len(intents) == 1  # a retry after a lost answer reuses the idempotency key
    assert intents[0]["amount"] == 450 * 1_000 // 1_000  # 450 credits at the 1k pack's $10
    granted = 1 if shown[0] == 500 else 0
    assert len(await purchases(shop)) == granted  # once, whoever told it


async def test_four_declines_in_a_row_pause_with_the_reason(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    await low_balance(shop, shop_api, fake)
    fake.intent_outcomes = ["declined:insufficient_funds"] * 4
    billing = StripeBilling(shop)
    waits = []
    try:
        for _ in range(4):
            assert await charge_auto_topups(shop, billing) == ["declined"]
            topup = body(await shop_api.get("/v1/accounts/ada/auto-topup"))
            waits.append(topup["next_attempt_at"] is not None)
            # the backoff has passed: the next debit queues again (a test shortcut)
            await shop.database.write(
                lambda conn, now: autotopup_repo.update_rule(conn, "ada", {"next_attempt_at": None})
            )
            await shop.charge("ada", 1 * CREDIT)
    finally:
        await billing.close()
    topup = body(await shop_api.get("/v1/accounts/ada/auto-topup"))
    assert (topup["state"], topup["paused_reason"]) == ("paused", "card declined 4 times in a row")
    assert waits == [True, True, True, False]


async def test_a_card_declined_10_times_in_30_days_pauses_even_when_saved_again(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    await low_balance(shop, shop_api, fake)
    fake.intent_outcomes = ["declined:insufficient_funds"] * 10
    billing = StripeBilling(shop)
    try:
        for declined in range(1, 11):
            assert await charge_auto_topups(shop, billing) == ["declined"]
            if declined % 3 == 0:  # the customer saves the same card again: the streak restarts
                await save_card(shop_api, fake, "ada", fingerprint="fp_ada")
            await shop.database.write(
                lambda conn, now: autotopup_repo.update_rule(conn, "ada", {"next_attempt_at": None})
            )
            await shop.charge("ada", 1 * CREDIT)
    finally:
        await billing.close()
    topup = body(await shop_api.get("/v1/accounts/ada/auto-topup"))
    assert (topup["state"], topup["paused_reason"]) == (
        "paused",
        "card declined 10 times in 30 days",
    )
    assert topup["consecutive_declines"] == 1


async def test_turning_it_off_cancels_the_queued_attempt(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    await low_balance(shop, shop_api, fake)
    off = await shop_api.put("/v1/accounts/ada/auto-topup", json={**RULE, "enabled": False})
    assert off.status_code == 200
    assert await charge_auto_topups(shop, StripeBilling(shop)) == []
    assert await state(shop_api) == (50, "off", 0, "canceled")
    assert not [obj for obj in fake.objects.values() if obj["object"] == "payment_intent"]


async def test_a_crash_between_the_claim_and_the_answer_resumes_with_the_same_key(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    await low_balance(shop, shop_api, fake)
    billing = StripeBilling(shop)
    try:
        (due,) = await shop.database.read(lambda conn, _now: charging.due_attempts(conn))
        first = await charge_attempt(shop, billing, due)  # the process dies before recording it
        assert await charge_auto_topups(shop, billing) == ["succeeded"]  # the next pass
    finally:
        await billing.close()
    assert len([o for o in fake.objects.values() if o["object"] == "payment_intent"]) == 1
    keys = {key for method, path, _, key in fake.requests if path == "/v1/payment_intents"}
    assert keys == {f"creditsd:auto_topup:{due.id}"}
    assert (
        body(await shop_api.get("/v1/accounts/ada/auto-topup"))["last_attempt"]["payment_intent_id"]
        == first.payment_intent_id
    )
    assert await state(shop_api) == (500, "active", 0, "succeeded")


async def ended_event(
    api: httpx.AsyncClient, fake: FakeStripe, kind: str, intent: dict[str, Any]
) -> str:
    """Deliver ``payment_intent.<kind>`` carrying ``intent``; the outcome."""
    response = await deliver(api, fake.event(f"payment_intent.{kind}", intent))
    assert response.status_code == 200, response.text
    return str(response.json()["outcome"])


async def processing(shop: Ledger, api: httpx.AsyncClient, fake: FakeStripe) -> str:
    """An attempt Stripe left ``processing``; its PaymentIntent."""
    await low_balance(shop, api, fake)
    fake.intent_outcomes = ["processing"]
    assert await run_pass(shop) == ["processing"]
    return last_intent(fake)


async def run_pass(shop: Ledger) -> list[str]:
    billing = StripeBilling(shop)
    try:
        return await charge_auto_topups(shop, billing)
    finally:
        await billing.close()


async def test_processing_then_failed_is_a_decline_and_frees_the_account(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    intent_id = await processing(shop, shop_api, fake)
    failed = fake.event(
        "payment_intent.payment_failed", fake.fail_payment(intent_id, "insufficient_funds")
    )
    assert (await deliver(shop_api, failed)).json()["outcome"] == "declined"
    assert (await deliver(shop_api, failed)).json()["outcome"] == "duplicate"
    again = fake.objects[intent_id]
    assert await ended_event(shop_api, fake, "payment_failed", again) == "already_declined"
    assert await state(shop_api) == (50, "active", 1, "declined")
    topup = body(await shop_api.get("/v1/accounts/ada/auto-topup"))
    assert topup["last_attempt"]["decline_code"] == "insufficient_funds"
    assert topup["next_attempt_at"] is not None  # backs off 1 h, as a synchronous decline
    await shop.database.write(
        lambda conn, now: autotopup_repo.update_rule(conn, "ada", {"next_attempt_at": None})
    )
    await shop.charge("ada", 1 * CREDIT)  # the account is free: a new attempt starts
    assert await run_pass(shop) == ["succeeded"]
    assert await state(shop_api) == (500, "active", 0, "succeeded")


AUTHENTICATE = {"code": "authentication_required", "decline_code": "authentication_required"}


@pytest.mark.parametrize(
    ("error", "outcome", "shown"),
    [
        (
            {"decline_code": "generic_decline", "advice_code": "do_not_try_again"},
            "declined",
            ("paused", 1, "generic_decline"),
        ),
        ({"decline_code": "lost_card"}, "declined", ("paused", 1, "lost_card")),
        (
            {"code": "card_declined", "decline_code": None, "advice_code": None},
            "declined",
            ("active", 1, None),
        ),
        ({}, "declined", ("active", 1, None)),
        (None, "declined", ("active", 1, None)),
        (AUTHENTICATE, "needs_action", ("needs_action", 0, None)),
    ],
)
async def test_a_failure_reads_what_last_payment_error_holds(
    shop: Ledger,
    shop_api: httpx.AsyncClient,
    fake: FakeStripe,
    error: dict[str, Any] | None,
    outcome: str,
    shown: tuple[Any, ...],
) -> None:
    intent_id = await processing(shop, shop_api, fake)
    intent = fake.fail_payment(intent_id) | {"last_payment_error": error}
    assert await ended_event(shop_api, fake, "payment_failed", intent) == outcome
    topup = body(await shop_api.get("/v1/accounts/ada/auto-topup"))
    decline_code = topup["last_attempt"]["decline_code"]
    assert (topup["state"], topup["consecutive_declines"], decline_code) == shown


async def test_processing_then_canceled_frees_the_account_without_a_decline(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    intent_id = await processing(shop, shop_api, fake)
    canceled = fake.cancel_payment(intent_id)
    assert await ended_event(shop_api, fake, "canceled", canceled) == "canceled"
    assert await ended_event(shop_api, fake, "canceled", canceled) == "already_canceled"
    assert await state(shop_api) == (50, "active", 0, "canceled")
    assert body(await shop_api.get("/v1/accounts/ada/auto-topup"))["next_attempt_at"] is None
    await shop.charge("ada", 1 * CREDIT)  # no backoff: the next debit starts one at once
    assert await run_pass(shop) == ["succeeded"]
    assert await state(shop_api) == (500, "active", 0, "succeeded")


@pytest.mark.parametrize("kind", ["payment_failed", "canceled"])
async def test_an_event_for_an_attempt_already_succeeded_changes_nothing(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe, kind: str
) -> None:
    await low_balance(shop, shop_api, fake)
    assert await run_pass(shop) == ["succeeded"]
    late = fake.objects[last_intent(fake)] | {"status": "requires_payment_method"}
    assert await ended_event(shop_api, fake, kind, late) == "already_succeeded"
    assert await state(shop_api) == (500, "active", 0, "succeeded")


async def armed(shop: Ledger) -> int | None:
    """The threshold the posting engine reads with ada's account (None: disarmed)."""

    async def read(conn: Any, _now: Any) -> int | None:
        query = select(accounts.c.auto_topup_below).where(accounts.c.id == "ada")
        found: int | None = (await conn.execute(query)).scalar_one()
        return found

    return await shop.database.read(read)


@pytest.mark.parametrize(
    ("script", "then", "last"),
    [
        (["succeeded"], None, "succeeded"),
        (["declined:insufficient_funds"], None, "declined"),
        (["processing"], "payment_failed", "declined"),
        (["processing"], "canceled", "canceled"),
    ],
)
async def test_the_threshold_is_disarmed_while_in_flight_and_rearmed_when_resolved(
    shop: Ledger,
    shop_api: httpx.AsyncClient,
    fake: FakeStripe,
    script: list[str],
    then: str | None,
    last: str,
) -> None:
    await low_balance(shop, shop_api, fake)
    assert await armed(shop) is None  # queued
    fake.intent_outcomes = list(script)
    await run_pass(shop)
    if then is not None:
        assert await armed(shop) is None  # processing
        intent_id = last_intent(fake)
        ended = fake.fail_payment(intent_id) if then == "payment_failed" else None
        await ended_event(shop_api, fake, then, ended or fake.cancel_payment(intent_id))
    assert (await state(shop_api))[3] == last
    assert await armed(shop) == 100 * CREDIT
    await shop.database.write(
        lambda conn, now: autotopup_repo.update_rule(conn, "ada", {"next_attempt_at": None})
    )
    balance = (await state(shop_api))[0]
    await shop.charge("ada", (balance - 40) * CREDIT)  # 40 left: a new attempt
    assert await run_pass(shop) == ["succeeded"]
    assert await state(shop_api) == (500, "active", 0, "succeeded")


async def test_a_retry_after_a_lost_answer_pays_the_first_price_when_the_price_changed(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    await low_balance(shop, shop_api, fake)
    fake.intent_outcomes = ["lost"]
    assert await run_pass(shop) == ["queued"]  # Stripe made the payment, the answer was lost
    fake.objects["price_1k"]["unit_amount"] = 2_000  # the pack's price changes meanwhile
    assert await run_pass(shop) == ["succeeded"]  # the same request, under the same key
    (intent,) = [obj for obj in fake.objects.values() if obj["object"] == "payment_intent"]
    assert intent["amount"] == 450
    assert await state(shop_api) == (500, "active", 0, "succeeded")
