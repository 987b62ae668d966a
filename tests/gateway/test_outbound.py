"""Seed 000 outbound: creditsd in the gateway's role tells it of usage and balances."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from itertools import pairwise

import pytest

from creditsd.inprocess import Ledger
from creditsd.pricing.catalog import TokenUse
from creditsd.worker import Deliverer
from tests.conftest import Clock, LedgerFactory, body, client_for, create_key
from tests.gateway.conftest import INTERNAL_SECRET
from tests.webhooks.receiver import Receiver

CREDIT = 10_000
USAGE_FIELDS = {
    "requestId",
    "event",
    "userId",
    "model",
    "inputTokens",
    "outputTokens",
    "cacheReadTokens",
    "cacheWriteTokens",
    "cost",
    "totalCost",
    "rateMultiplier",
    "timestamp",
    "apiKey",
    "sub2api_balance_usd",
}


@pytest.fixture
def next_js() -> Iterator[Receiver]:
    """The gateway (or Next.js) side: records what creditsd sends."""
    with Receiver() as running:
        yield running


LINK = {
    "enabled": True,
    "internal_secret": INTERNAL_SECRET,
    "timeout_seconds": 2,
    "retry_count": 2,
    "retry_delay_seconds": 0.2,
}


@pytest.fixture
async def linked_out(make_ledger: LedgerFactory, next_js: Receiver) -> Ledger:
    """Both links to one receiver: usage to it as the app, balance syncs as the gateway."""
    return await make_ledger(
        gateway={**LINK, "base_url": next_js.url}, app_link={**LINK, "base_url": next_js.url}
    )


async def drain(ledger: Ledger) -> None:
    worker = Deliverer(ledger)
    try:
        while await worker.deliver_due():
            pass
    finally:
        await worker.close()


async def test_each_billed_charge_is_posted_with_the_seeds_fields(
    linked_out: Ledger, next_js: Receiver
) -> None:
    await linked_out.open_account("user_2abc", aliases=("123",))
    await linked_out.grant("user_2abc", 100 * CREDIT)
    usage = TokenUse(model="openai/gpt-4o-mini", input_tokens=1_000, output_tokens=500)
    charge = await linked_out.charge("user_2abc", use=usage)
    await drain(linked_out)

    (posted,) = next_js.bodies("/api/internal/webhooks/usage")  # the grant bills nothing
    assert set(posted) == USAGE_FIELDS
    assert posted["event"] == "usage" and posted["apiKey"] == ""
    assert posted["userId"] == 123  # the gateway's id: the account's decimal alias
    assert posted["model"] == "openai/gpt-4o-mini"
    assert (posted["inputTokens"], posted["outputTokens"]) == (1_000, 500)
    assert Decimal(str(posted["cost"])) == Decimal(charge.amount) / CREDIT / 100
    assert posted["timestamp"] == int(charge.created_at.timestamp() * 1000)
    assert all(r.headers["X-Internal-Secret"] == INTERNAL_SECRET for r in next_js.received)

    syncs = next_js.bodies("/api/internal/balance/sync")
    # The grant's sync was still waiting when the charge's replaced it: only the latest goes.
    assert syncs == [{"user_id": 123, "balance_usd": posted["sub2api_balance_usd"]}]


async def test_a_gateway_that_fails_twice_gets_it_on_the_third_try(
    make_ledger: LedgerFactory, next_js: Receiver
) -> None:
    ledger = await make_ledger(gateway={**LINK, "base_url": next_js.url})
    await ledger.grant("7", 5 * CREDIT)
    next_js.failures_left = 2
    await drain(ledger)
    tries = next_js.received
    assert [(r.path, r.answered) for r in tries] == [
        ("/api/internal/balance/sync", 503),
        ("/api/internal/balance/sync", 503),
        ("/api/internal/balance/sync", 200),
    ]
    gaps = [b.at - a.at for a, b in pairwise(tries)]
    assert all(gap >= 0.18 for gap in gaps)  # retry_delay_seconds apart


@pytest.fixture
def sub2api() -> Iterator[Receiver]:
    """A sub2api gateway: it has only its balance route."""
    with Receiver() as running:
        running.routes = {"/api/internal/balance/sync"}
        yield running


async def test_with_both_links_each_side_hears_what_the_other_did_and_nothing_of_its_own(
    make_ledger: LedgerFactory, sub2api: Receiver, next_js: Receiver
) -> None:
    """creditsd between sub2api and an app written to seed 000: the usage sub2api bills is
    posted to the app like every other charge, the balances the app sets are pushed to
    sub2api, and neither is sent back to the side it came from."""
    next_js.routes = {"/api/internal/webhooks/usage"}  # the app's route
    ledger = await make_ledger(
        gateway={**LINK, "base_url": sub2api.url}, app_link={**LINK, "base_url": next_js.url}
    )
    async with client_for(ledger, "no-key") as caller:
        caller.headers["X-Internal-Secret"] = INTERNAL_SECRET
        synced = await caller.post(
            "/api/internal/balance/sync", json={"user_id": 9, "balance_usd": 5}
        )  # from the app
        assert synced.status_code == 200, synced.text
        await drain(ledger)
        posted = await caller.post(
            "/api/internal/webhooks/usage",
            json={
                "requestId": "req-9-1",
                "event": "usage",
                "userId": 9,
                "model": "gpt-4o-mini",
                "inputTokens": 1_000,
                "outputTokens": 200,
                "cost": 0.5,
                "totalCost": 0.5,
                "timestamp": 1700000000000,
            },
        )  # from sub2api
    assert body(posted)["status"] == "charged"
    await drain(ledger)

    assert {r.answered for r in sub2api.received + next_js.received} == {200}
    # sub2api: the app's balance, never an echo of its own usage.
    assert sub2api.bodies() == [{"user_id": 9, "balance_usd": 5}]
    # The app: sub2api's usage, never its own balance.
    (usage,) = next_js.bodies()
    assert (usage["event"], usage["userId"], usage["model"]) == ("usage", 9, "gpt-4o-mini")
    assert (usage["inputTokens"], usage["outputTokens"]) == (1_000, 200)
    assert Decimal(str(usage["cost"])) == Decimal("0.5")
    assert Decimal(str(usage["sub2api_balance_usd"])) == Decimal("4.5")

    await ledger.charge("9", 10 * CREDIT)  # creditsd's own charge: both hear of it
    await drain(ledger)
    assert Decimal(str(sub2api.bodies()[-1]["balance_usd"])) == Decimal("4.4")
    assert len(next_js.bodies()) == 2


async def test_a_slow_gateway_times_out_and_the_billing_stands(
    make_ledger: LedgerFactory, next_js: Receiver, clock: Clock
) -> None:
    ledger = await make_ledger(
        gateway={
            "enabled": True,
            "base_url": next_js.url,
            "internal_secret": INTERNAL_SECRET,
            "timeout_seconds": 0.2,
            "retry_count": 0,
        }
    )
    await ledger.grant("8", 5 * CREDIT)
    next_js.delay = 0.5
    await drain(ledger)
    assert (await ledger.get_account("8")).balance == 5 * CREDIT  # nothing undone
    next_js.delay = 0
    clock.advance(60)
    await drain(ledger)
    paths = [r.path for r in next_js.received]
    assert paths.count("/api/internal/balance/sync") == 2  # timed out once, then arrived


async def test_a_route_the_receiver_does_not_have_dead_letters_at_once_and_blocks_nothing(
    linked_out: Ledger, next_js: Receiver, clock: Clock
) -> None:
    """A 404 will not change by retrying: the message is dead at once, recorded with the
    answer, and the account's later messages go on without waiting for it."""
    next_js.routes = {"/api/internal/balance/sync"}  # no usage route here
    await linked_out.grant("11", 5 * CREDIT)
    await linked_out.charge("11", 1 * CREDIT)
    await linked_out.charge("11", 1 * CREDIT)
    await drain(linked_out)  # no clock moved: nothing waited for a retry
    assert [r.answered for r in next_js.received if r.path.endswith("/usage")] == [404, 404]
    syncs = next_js.bodies("/api/internal/balance/sync")
    assert Decimal(str(syncs[-1]["balance_usd"])) == Decimal("0.03")  # the last went through too
    async with client_for(linked_out, await create_key(linked_out, "admin")) as admin:
        dead = body(await admin.get("/v1/webhook-deliveries", params={"status": "dead"}))["data"]
    assert len(dead) == 2 and all("404" in d["last_error"] for d in dead)


async def test_sub2apis_app_sends_it_balances_only_on_its_route_and_only_numeric_ids(
    make_ledger: LedgerFactory, next_js: Receiver
) -> None:
    """creditsd as the app of a sub2api gateway: sub2api has only /balance/sync, keeps
    int64 user ids, and answers in its envelope; nothing goes anywhere else."""
    next_js.routes = {"/api/internal/balance/sync"}
    ledger = await make_ledger(
        gateway={**LINK, "base_url": next_js.url}, accounts={"signup_grant": "100"}
    )
    await ledger.open_account("user_2abc", aliases=("456",))  # the grant comes before the alias
    await ledger.charge("user_2abc", 1 * CREDIT)
    await ledger.charge("user_plain", 1 * CREDIT)  # no numeric name: never sent
    await ledger.charge("123", 2 * CREDIT)
    await drain(ledger)
    assert {r.answered for r in next_js.received} == {200}
    synced = {}
    for sent in next_js.bodies("/api/internal/balance/sync"):
        synced[sent["user_id"]] = Decimal(str(sent["balance_usd"]))
    assert synced == {456: Decimal("0.99"), 123: Decimal("0.98")}  # the latest figures


async def test_balance_syncs_waiting_for_the_gateway_coalesce_to_the_latest(
    make_ledger: LedgerFactory, next_js: Receiver
) -> None:
    ledger = await make_ledger(gateway={**LINK, "base_url": next_js.url})
    await ledger.grant("77", 50 * CREDIT)
    for _ in range(5):
        await ledger.charge("77", 1 * CREDIT)
    await drain(ledger)
    sent = next_js.bodies("/api/internal/balance/sync")
    assert [Decimal(str(s["balance_usd"])) for s in sent] == [Decimal("0.45")]


async def test_an_app_written_to_seed_000_gets_usage_on_its_route_only(
    make_ledger: LedgerFactory, next_js: Receiver
) -> None:
    next_js.routes = {"/api/internal/webhooks/usage"}  # what seed 000's app registers
    ledger = await make_ledger(app_link={**LINK, "base_url": next_js.url})
    await ledger.grant("5", 10 * CREDIT)
    await ledger.charge("5", 1 * CREDIT)
    await drain(ledger)
    (usage,) = next_js.bodies()
    assert {r.answered for r in next_js.received} == {200}
    assert usage["userId"] == 5 and usage["requestId"].startswith("msg_")


async def test_the_apps_balance_sync_is_answered_in_both_shapes(linked: Ledger) -> None:
    async with client_for(linked, "no-key") as app:
        app.headers["X-Internal-Secret"] = INTERNAL_SECRET
        answer = body(
            await app.post("/api/internal/balance/sync", json={"user_id": 3, "balance_usd": 2})
        )
    assert (answer["code"], answer["message"]) == (0, "success")  # sub2api's envelope
    assert answer["data"] == {"user_id": 3, "balance": 2}
    assert (answer["user_id"], answer["balance"]) == (3, 2)  # seed 000's fields


async def test_the_usage_posted_counts_reasoning_as_output_and_every_cache_write(
    linked_out: Ledger, next_js: Receiver
) -> None:
    """Seed 000 has one output and one cache-write count, as providers report them: the
    catalog's disjoint reasoning tokens are output, writes of any lifetime are writes."""
    await linked_out.grant("31", 100 * CREDIT)
    usage = TokenUse(
        model="anthropic/claude-sonnet-4",
        input_tokens=100,
        output_tokens=50,
        reasoning_tokens=25,
        cache_write_tokens=10,
        cache_write_tokens_by_ttl=(("1h", 20),),
    )
    await linked_out.charge("31", use=usage)
    await drain(linked_out)
    (posted,) = next_js.bodies("/api/internal/webhooks/usage")
    assert (posted["inputTokens"], posted["outputTokens"], posted["cacheWriteTokens"]) == (
        100,
        75,
        30,
    )


def gateway_usage(user: int, cost: str) -> dict[str, object]:
    """One request sub2api billed, as it posts it."""
    return {
        "event": "usage",
        "userId": user,
        "model": "gpt-4o-mini",
        "cost": cost,
        "totalCost": cost,
        "timestamp": 1764547200000,
    }


async def test_a_balance_sync_retried_after_the_balance_moved_sends_the_balance_then(
    make_ledger: LedgerFactory, next_js: Receiver, clock: Clock
) -> None:
    """sub2api is down when a grant's sync is first tried; meanwhile it bills a request,
    which creditsd charges without telling it (it knows). When it is back, the retry sets
    the balance creditsd holds then, not the one the grant left."""
    next_js.routes = {"/api/internal/balance/sync"}  # sub2api
    ledger = await make_ledger(gateway={**LINK, "base_url": next_js.url, "retry_count": 0})
    await ledger.grant("123", 25 * CREDIT)  # $0.25
    next_js.failures_left = 1
    await drain(ledger)
    async with client_for(ledger, "no-key") as sub2api:
        sub2api.headers["X-Internal-Secret"] = INTERNAL_SECRET
        billed = await sub2api.post("/api/internal/webhooks/usage", json=gateway_usage(123, "0.06"))
    assert body(billed)["balance_usd"] == Decimal("0.19")
    clock.advance(60)
    await drain(ledger)
    sent = next_js.bodies("/api/internal/balance/sync")
    assert [r.answered for r in next_js.received] == [503, 200]
    assert sent[-1]["user_id"] == 123
    assert Decimal(str(sent[-1]["balance_usd"])) == Decimal("0.19")


async def test_a_dead_balance_sync_retried_by_hand_never_sets_the_gateway_back(
    make_ledger: LedgerFactory, next_js: Receiver
) -> None:
    """The report: a sync that died is retried after newer figures reached sub2api; it
    sends the balance creditsd holds now ($0.1753), not the one it was written with."""
    next_js.routes = set()  # sub2api not yet deployed with its route: the sync dies (404)
    ledger = await make_ledger(gateway={**LINK, "base_url": next_js.url})
    await ledger.grant("321", 115_300)  # $0.1153 at 100 credits a dollar
    await drain(ledger)
    next_js.routes = {"/api/internal/balance/sync"}
    await ledger.grant("321", 70_000)  # $0.1853, delivered
    await drain(ledger)
    async with client_for(ledger, "no-key") as sub2api:
        sub2api.headers["X-Internal-Secret"] = INTERNAL_SECRET
        await sub2api.post("/api/internal/webhooks/usage", json=gateway_usage(321, "0.01"))
    await drain(ledger)
    async with client_for(ledger, await create_key(ledger, "admin")) as admin:
        (dead,) = body(await admin.get("/v1/webhook-deliveries", params={"status": "dead"}))["data"]
        assert (await admin.post(f"/v1/webhook-deliveries/{dead['id']}/retry")).status_code == 200
        await drain(ledger)
        retried = body(await admin.get("/v1/webhook-deliveries"))["data"]
    sent = next_js.bodies("/api/internal/balance/sync")
    assert [Decimal(str(s["balance_usd"])) for s in sent] == [
        Decimal("0.1153"),  # refused with 404
        Decimal("0.1853"),
        Decimal("0.1753"),  # the retry: the balance after sub2api's $0.01 request
    ]
    assert (await ledger.get_account("321")).balance == 175_300
    shown = next(d for d in retried if d["id"] == dead["id"])
    assert shown["status"] == "delivered"
    assert Decimal(str(shown["payload"]["balance_usd"])) == Decimal("0.1753")  # what was sent
