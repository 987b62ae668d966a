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
from creditsd.tables import accounts
from creditsd.worker import charge_auto_topups
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


async def intent_event(api: httpx.AsyncClient, fake: FakeStripe, intent_id: str) -> str:
    """Deliver ``payment_intent.succeeded``; the outcome."""
    response = await deliver(api, fake.event("payment_intent.succeeded", fake.objects[intent_id]))
    assert response.status_code == 200, response.text
    return str(response.json()["outcome"])


def last_intent(fake: FakeStripe) -> str:
    return [oid for oid, obj in fake.objects.items() if obj["object"] == "payment_intent"][-1]


@pytest.mark.parametrize(
    ("script", "passes", "shown"),
    [
        (["succeeded"], ["succeeded"], (500, "active", 0, "succeeded")),
        (["processing"], ["processing"], (50, "active", 0, "processing")),
        (["declined:generic_decline"], ["declined"], (50, "active", 1, "declined")),
        (["declined:card_declined:do_not_try_again"], ["declined"], (50, "paused", 1, "declined")),
        (["declined:stolen_card"], ["declined"], (50, "paused", 1, "declined")),
        (["authentication_required"], ["needs_action"], (50, "needs_action", 0, "needs_action")),
        (["lost"], ["queued", "succeeded"], (500, "active", 0, "succeeded")),
        (["rate_limited"], ["queued", "succeeded"], (500, "active", 0, "succeeded")),
    ],
)
async def test_each_outcome_and_what_the_ledger_shows(
    shop: Ledger,
    shop_api: httpx.AsyncClient,
    fake: FakeStripe,
    script: list[str],
    passes: list[str],
    shown: tuple[Any, ...],
) -> None:
    await low_balance(shop, shop_api, fake)
    fake.intent_outcomes = list(script)
    billing = StripeBilling(shop)
    try:
        seen = [outcome for _ in passes for outcome in await charge_auto_topups(shop, billing)]
    finally:
        await billing.close()
    assert seen == passes
    assert await state(shop_api) == shown
    intents = [obj for obj in fake.objects.values() if obj["object"] == "payment_intent"]
    assert len(intents) == 1  # a retry after a lost answer reuses the idempotency key
    assert intents[0]["amount"] == 450 * 1_000 // 1_000  # 450 credits at the 1k pack's $10


async def test_processing_then_the_webhook_grants(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    await low_balance(shop, shop_api, fake)
    fake.intent_outcomes = ["processing"]
    billing = StripeBilling(shop)
    try:
        assert await charge_auto_topups(shop, billing) == ["processing"]
        intent = fake.objects[last_intent(fake)]
        intent.update(status="succeeded", amount_received=intent["amount"])
        assert await intent_event(shop_api, fake, intent["id"]) == "granted"
        assert await intent_event(shop_api, fake, intent["id"]) == "already_granted"
        assert await charge_auto_topups(shop, billing) == []  # nothing queued any more
    finally:
        await billing.close()
    assert await state(shop_api) == (500, "active", 0, "succeeded")


@pytest.mark.parametrize("webhook", ["before", "after", "twice", "never"])
async def test_the_webhook_before_after_twice_or_never_grants_once(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe, webhook: str
) -> None:
    await low_balance(shop, shop_api, fake)
    billing = StripeBilling(shop)
    try:
        (due,) = await shop.database.read(lambda conn, _now: charging.due_attempts(conn))
        answer = await billing.charge_saved_card(due)
        intent = str(answer.payment_intent_id)
        if webhook in ("before", "twice"):
            assert await intent_event(shop_api, fake, intent) == "granted"
        settled = await shop.database.write(
            lambda conn, now: charging.settle(conn, due, answer, shop.settings, shop.policy, now)
        )
        assert settled == "succeeded"
        if webhook in ("after", "twice"):
            assert await intent_event(shop_api, fake, intent) == "already_granted"
    finally:
        await billing.close()
    assert await state(shop_api) == (500, "active", 0, "succeeded")


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
        first = await billing.charge_saved_card(due)  # the process dies before recording it
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


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        ({"decline_code": "generic_decline", "advice_code": "do_not_try_again"}, "paused"),
        ({"decline_code": "lost_card"}, "paused"),
        ({"code": "card_declined", "decline_code": None, "advice_code": None}, "active"),
        ({}, "active"),
        (None, "active"),
    ],
)
async def test_a_failure_reads_what_last_payment_error_holds(
    shop: Ledger,
    shop_api: httpx.AsyncClient,
    fake: FakeStripe,
    error: dict[str, Any] | None,
    shown: str,
) -> None:
    intent_id = await processing(shop, shop_api, fake)
    intent = fake.fail_payment(intent_id) | {"last_payment_error": error}
    assert await ended_event(shop_api, fake, "payment_failed", intent) == "declined"
    topup = body(await shop_api.get("/v1/accounts/ada/auto-topup"))
    assert (topup["state"], topup["consecutive_declines"]) == (shown, 1)
    assert topup["last_attempt"]["decline_code"] == (error or {}).get("decline_code")


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
