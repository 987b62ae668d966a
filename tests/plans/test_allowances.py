"""Subscription allowances: once per period from Clerk or Stripe, lapsing at period end."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import httpx

from creditsd.inprocess import Ledger
from tests.clerk.conftest import deliver
from tests.conftest import Clock, LedgerFactory, body, client_for
from tests.stripe.conftest import PACKS, stripe_settings
from tests.stripe.conftest import deliver as deliver_stripe
from tests.stripe.fake import FakeStripe

CREDIT = 10_000


def item_active(account: str, start: datetime, days: int = 30) -> dict[str, object]:
    """Clerk's ``subscriptionItem.active`` for the Pro plan (times in milliseconds)."""
    end = start + timedelta(days=days)
    return {
        "type": "subscriptionItem.active",
        "data": {
            "id": "csubi_1",
            "status": "active",
            "plan": {"id": "cplan_pro", "slug": "pro"},
            "payer": {"user_id": account},
            "period_start": int(start.timestamp() * 1000),
            "period_end": int(end.timestamp() * 1000),
        },
    }


async def test_a_month_is_granted_once_and_the_next_replaces_it(
    clerk_ledger: Ledger, clerk_api: httpx.AsyncClient, clock: Clock
) -> None:
    start = clock.now
    for _ in range(3):  # Clerk repeats itself; each is a new Svix message
        await deliver(clerk_api, item_active("user_2sub", start))
    account = await clerk_ledger.get_account("user_2sub")
    assert account.by_source == {"signup": 100 * CREDIT, "subscription": 5_000 * CREDIT}

    await clerk_ledger.grant("user_2sub", 1_000 * CREDIT, source="purchase")  # a one-off top-up
    await clerk_ledger.charge("user_2sub", 1_100 * CREDIT)  # sign-up, then the allowance

    clock.advance(timedelta(days=30).total_seconds())
    renewed = await deliver(clerk_api, item_active("user_2sub", start + timedelta(days=30)))
    assert body(renewed)["outcome"] == "handled"
    await clerk_ledger.expire_lots()

    account = await clerk_ledger.get_account("user_2sub")
    assert account.by_source == {"purchase": 1_000 * CREDIT, "subscription": 5_000 * CREDIT}
    kinds = [t.kind for t in (await clerk_ledger.transactions("user_2sub")).items]
    assert kinds.count("expiry") == 1  # last month's 4,000 left lapsed
    assert (await clerk_ledger.verify_account("user_2sub")).valid


async def test_an_unknown_plan_grants_nothing(
    clerk_ledger: Ledger, clerk_api: httpx.AsyncClient, clock: Clock
) -> None:
    event = item_active("user_2free", clock.now)
    event["data"]["plan"] = {"id": "cplan_unlisted"}  # type: ignore[index]
    assert body(await deliver(clerk_api, event))["outcome"] == "handled"
    assert (await clerk_ledger.get_account("user_2free")).by_source == {"signup": 100 * CREDIT}


async def test_a_stripe_subscription_invoice_grants_the_period_once(
    make_ledger: LedgerFactory, fake: FakeStripe, clock: Clock
) -> None:
    ledger = await make_ledger(
        stripe=stripe_settings(fake), packs=PACKS, plans={"price_team": {"credits": 20_000}}
    )
    start = int(clock.now.timestamp())
    invoice = {
        "id": "in_1",
        "object": "invoice",
        "customer": "cus_team",
        "subscription": "sub_1",
        "billing_reason": "subscription_cycle",
        "metadata": {"creditsd_account": "org_team"},
        "amount_paid": 4_900,
        "currency": "usd",
        "lines": {
            "object": "list",
            "data": [
                {
                    "pricing": {"price_details": {"price": "price_team"}},
                    "quantity": 1,
                    "period": {"start": start, "end": start + 30 * 86_400},
                }
            ],
        },
    }
    async with client_for(ledger, "no-key") as api:
        for _ in range(2):
            response = await deliver_stripe(api, fake.event("invoice.payment_succeeded", invoice))
            assert response.status_code == 200
    account = await ledger.get_account("org_team")
    assert account.by_source == {"subscription": 20_000 * CREDIT}
    (grant,) = (await ledger.transactions("org_team")).items
    assert grant.lots[0].expires_at == datetime.fromtimestamp(start + 30 * 86_400, clock.now.tzinfo)


async def test_a_clerk_subscription_grants_its_active_items_only(
    clerk_ledger: Ledger, clerk_api: httpx.AsyncClient, clock: Clock
) -> None:
    start = int(clock.now.timestamp() * 1000)
    period = {"period_start": start, "period_end": start + 30 * 86_400_000}
    created = {
        "type": "subscription.created",
        "data": {
            "id": "csub_1",
            "status": "active",
            "payer": {"organization_id": "org_2team", "user_id": "user_2owner"},
            "items": [
                {"id": "csubi_a", "status": "active", "plan": {"id": "cplan_pro"}, **period},
                {"id": "csubi_b", "status": "upcoming", "plan_id": "cplan_pro", **period},
            ],
        },
    }
    assert body(await deliver(clerk_api, created))["outcome"] == "handled"
    updated = {**created, "type": "subscription.updated"}
    await deliver(clerk_api, updated)
    account = await clerk_ledger.get_account("org_2team")  # the organization pays
    assert account.by_source == {"signup": 100 * CREDIT, "subscription": 5_000 * CREDIT}
    ended = {"type": "subscription.deleted", "data": {"id": "csub_1"}}
    assert body(await deliver(clerk_api, ended))["outcome"] == "ended"
    assert (await clerk_ledger.get_account("org_2team")).balance == 5_100 * CREDIT


async def test_a_period_reported_again_with_another_end_grants_once_and_lapses_at_the_latest(
    clerk_ledger: Ledger, clerk_api: httpx.AsyncClient, clock: Clock
) -> None:
    """Clerk re-sends a period with its ``period_end`` moved (extended, corrected): each
    report is answered 200, the allowance is granted once, and it lapses at the latest end
    reported, whatever order Svix delivers the reports in."""
    start = clock.now.replace(microsecond=0)  # Clerk's times are whole milliseconds
    first = await deliver(clerk_api, item_active("user_2ext", start, days=30))
    assert body(first)["outcome"] == "handled"
    extended = await deliver(clerk_api, item_active("user_2ext", start, days=32))
    assert extended.status_code == 200, extended.text
    late = await deliver(clerk_api, item_active("user_2ext", start, days=30))  # an old retry
    assert late.status_code == 200, late.text

    account = await clerk_ledger.get_account("user_2ext")
    assert account.by_source == {"signup": 100 * CREDIT, "subscription": 5_000 * CREDIT}
    (lapsing,) = await clerk_ledger.expiring_credits("user_2ext")
    assert (lapsing.expires_at, lapsing.amount) == (start + timedelta(days=32), 5_000 * CREDIT)

    clock.advance(timedelta(days=31).total_seconds())  # past the first end reported
    await clerk_ledger.expire_lots()
    assert (await clerk_ledger.get_account("user_2ext")).balance == 5_100 * CREDIT
    clock.advance(timedelta(days=1, seconds=1).total_seconds())  # past the latest
    await clerk_ledger.expire_lots()
    assert (await clerk_ledger.get_account("user_2ext")).balance == 100 * CREDIT
    assert (await clerk_ledger.verify_account("user_2ext")).valid


async def test_reports_of_one_period_with_different_ends_at_once_grant_once(
    clerk_ledger: Ledger, clerk_api: httpx.AsyncClient, clock: Clock
) -> None:
    start = clock.now.replace(microsecond=0)
    await clerk_ledger.open_account("user_2race")
    reports = [item_active("user_2race", start, days=days) for days in (30, 31, 32, 33)]
    answers = await asyncio.gather(*(deliver(clerk_api, report) for report in reports))
    assert [answer.status_code for answer in answers] == [200] * 4
    account = await clerk_ledger.get_account("user_2race")
    assert account.by_source == {"signup": 100 * CREDIT, "subscription": 5_000 * CREDIT}
    (lapsing,) = await clerk_ledger.expiring_credits("user_2race")
    assert lapsing.expires_at == start + timedelta(days=33)
