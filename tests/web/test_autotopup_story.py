"""Auto top-up from the billing page, in Chromium: the customer turns it on and saves a card
through Stripe Checkout (the fake), spends below the threshold through the API, sees the
top-up land; a card declined four times pauses it and the page says why; a payment the bank
wants authenticated is confirmed from the page's banner through the bank's check."""

from __future__ import annotations

import itertools
import re
from datetime import timedelta

import httpx
from playwright.async_api import BrowserContext, Page, Route, expect

from creditsd.inprocess import Ledger
from tests.conftest import Clock, serve_app
from tests.stripe.conftest import deliver
from tests.stripe.fake import FakeStripe
from tests.web.conftest import shoot
from tests.web.test_autotopup_page import charge_pass
from tests.web.test_portal import CHECKOUT, CREDIT, app_key, fake, portal_url, shop

__all__ = ["app_key", "fake", "shop"]  # the portal suite's fixtures, served here too

DAY = 86_400
_keys = itertools.count()


async def a_steady_spender(shop: Ledger, clock: Clock) -> None:
    """Three days ago Ada got 600 credits and has spent 100 a day since: 300 left."""
    clock.advance(-3 * DAY)
    await shop.grant("ada", 600 * CREDIT)
    for wait in (DAY / 2, DAY, DAY):
        clock.advance(wait)
        await shop.charge("ada", 100 * CREDIT)
    clock.advance(DAY / 2)


async def spend(http: httpx.AsyncClient, credits: int) -> None:
    """The app charges Ada through the API."""
    charged = await http.post(
        "/v1/charges",
        json={"account_id": "ada", "amount": credits, "description": "chat_message"},
        headers={"Idempotency-Key": f"spend-{next(_keys)}"},
    )
    assert charged.status_code == 201, charged.text


def _stripe_page(route: Route) -> object:
    """Stands in for Stripe's hosted Checkout page, which tests cannot reach."""
    return route.fulfill(content_type="text/html", body="<title>Stripe Checkout</title>")


async def turn_on(page: Page, fake: FakeStripe, http: httpx.AsyncClient, base: str) -> None:
    """Turn auto top-up on from the page (below 100, up to 500, 5,000 a month) and save a
    card on Stripe's page; back on the billing page once Stripe has told creditsd."""
    await page.route("https://checkout.stripe.com/**", _stripe_page)
    section = page.locator("#auto-top-up")
    await expect(section.get_by_test_id("auto-top-up-state")).to_have_text("Off")
    await section.get_by_label("Top up when below (credits)").fill("100")
    await section.get_by_label("Bring the balance to (credits)").fill("500")
    await section.get_by_label("At most a month (credits)").fill("5000")
    await section.get_by_role("button", name="Turn on automatic top-up").click()
    await page.wait_for_url(CHECKOUT)
    match = CHECKOUT.fullmatch(page.url)
    assert match is not None
    completed = fake.complete_setup(match.group(1), last4="4242")
    delivered = await deliver(http, fake.event("checkout.session.completed", completed))
    assert delivered.json()["outcome"] == "card_saved"
    await page.goto(f"{base}/billing#auto-top-up")


async def test_auto_top_up_turned_on_lands_and_a_declined_card_pauses_it(
    shop: Ledger, app_key: str, fake: FakeStripe, context: BrowserContext, clock: Clock
) -> None:
    await a_steady_spender(shop, clock)
    async with serve_app(shop) as base, httpx.AsyncClient(base_url=base) as http:
        http.headers["Authorization"] = f"Bearer {app_key}"
        page = await context.new_page()
        await page.goto(await portal_url(http))
        await shoot(page, "billing-auto-top-up-off")
        await turn_on(page, fake, http, base)

        section = page.locator("#auto-top-up")
        await expect(section.get_by_test_id("auto-top-up-state")).to_have_text("On")
        await expect(section.get_by_test_id("auto-top-up-card")).to_have_text("Visa •••• 4242")
        await expect(section.get_by_test_id("auto-top-up-rule")).to_have_text(
            "When your balance falls below 100 credits, buy enough to bring it to 500 credits, "
            "at most 5,000 credits a month."
        )
        # 300 left at 100 a day: 3 days without top-up, the threshold reached in 2.
        runway = section.get_by_test_id("auto-top-up-runway")
        await expect(runway).to_contain_text(
            "Without top-up: 3 days; your card will be charged around"
        )
        charged_at = clock.now + timedelta(days=2)  # the browser writes its own time zone's
        await expect(runway.locator("time")).to_have_attribute(
            "datetime", charged_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        await shoot(page, "billing-auto-top-up-on")

        await spend(http, 250)  # 50 left: below the threshold
        assert await charge_pass(shop) == ["succeeded"]
        await page.reload()
        await expect(page.get_by_test_id("balance")).to_contain_text("500")
        await expect(section.get_by_test_id("auto-top-up-last")).to_contain_text(
            "Last top-up: 450 credits, added"
        )
        await expect(section.get_by_test_id("auto-top-up-month")).to_have_text(
            "450 of 5,000 credits bought this month"
        )
        await expect(page.locator(".entry").first).to_contain_text("Bought · Automatic top-up")
        await shoot(page, "billing-auto-top-up-landed")

        fake.intent_outcomes = ["declined:generic_decline"] * 4
        await spend(http, 450)  # 50 left again
        for backoff_hours in (1, 2, 4, None):
            assert await charge_pass(shop) == ["declined"]
            if backoff_hours is not None:
                clock.advance(backoff_hours * 3600 + 60)
                await spend(http, 1)  # a later use calls for a top-up again
        await page.goto(await portal_url(http))  # hours later: the app links the page anew
        await expect(section.get_by_test_id("auto-top-up-state")).to_have_text(
            "Paused: card declined 4 times in a row"
        )
        await expect(section).to_contain_text("Saving a new card, or buying credits by hand")
        await expect(section.get_by_test_id("auto-top-up-last")).to_contain_text(
            "declined by the card's bank"
        )
        await expect(section.get_by_role("button", name="Use another card")).to_be_visible()
        await shoot(page, "billing-auto-top-up-paused")

        await section.get_by_role("button", name="Turn off").click()
        await expect(section.get_by_test_id("auto-top-up-state")).to_have_text("Off")


async def test_a_payment_the_bank_wants_confirmed_is_confirmed_from_the_banner(
    shop: Ledger, app_key: str, fake: FakeStripe, context: BrowserContext, clock: Clock
) -> None:
    await a_steady_spender(shop, clock)
    async with serve_app(shop) as base, httpx.AsyncClient(base_url=base) as http:
        http.headers["Authorization"] = f"Bearer {app_key}"
        page = await context.new_page()
        await page.goto(await portal_url(http))
        await turn_on(page, fake, http, base)

        fake.intent_outcomes = ["authentication_required"]
        await spend(http, 250)
        assert await charge_pass(shop) == ["needs_action"]
        await page.reload()
        banner = page.get_by_test_id("needs-action")
        await expect(banner).to_contain_text(
            "Your bank asks you to confirm the automatic top-up of 450 credits"
        )
        await expect(page.get_by_test_id("auto-top-up-state")).to_contain_text("Waiting for you")
        await shoot(page, "billing-auto-top-up-needs-action")

        async def bank(route: Route) -> None:  # Stripe's address for the check, served by the fake
            answer = await route.fetch(url=fake.bank_url(route.request.url), max_redirects=0)
            await route.fulfill(response=answer)

        await page.route("https://hooks.stripe.com/**", bank)
        await banner.get_by_role("button", name="Confirm the payment with your bank").click()
        await expect(page.locator("h1")).to_have_text("Confirm a payment")
        (intent_id,) = [o for o, obj in fake.objects.items() if obj["object"] == "payment_intent"]
        sent = next(r for r in fake.requests if r[1].endswith("/confirm"))
        assert sent[1] == f"/v1/payment_intents/{intent_id}/confirm"
        assert sent[2]["return_url"] == f"{base}/billing/auto-top-up/confirmed"
        await page.get_by_role("button", name="Complete authentication").click()
        await page.wait_for_url(re.compile(r".*/billing/auto-top-up/confirmed\?payment_intent=pi_"))
        await expect(page.locator("h1")).to_have_text("Thank you: 450 credits added")
        await expect(page.get_by_test_id("balance")).to_contain_text("500")
        await shoot(page, "billing-auto-top-up-confirmed")

        # Stripe's webhook for the same PaymentIntent grants nothing twice.
        event = fake.event("payment_intent.succeeded", fake.objects[intent_id])
        assert (await deliver(http, event)).json()["outcome"] != "granted"
        await page.goto(f"{base}/billing")
        await expect(page.get_by_test_id("needs-action")).to_have_count(0)
        await expect(page.get_by_test_id("auto-top-up-state")).to_have_text("On")
        await expect(page.get_by_test_id("balance")).to_contain_text("500")
