"""The billing page: a portal link an app asks for, the balance, the "why" of each
transaction, usage, and a top-up through Stripe Checkout (the local fake) whose credits
arrive by webhook, while no page shows another account's data or any secret."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Route, expect

from creditsd.api.app import create_app
from creditsd.inprocess import Ledger
from creditsd.pricing.catalog import FeatureUse, TokenUse
from creditsd.web.signing import Signer
from tests.conftest import Clock, LedgerFactory, body, client_for, create_key, serve_app
from tests.gateway.conftest import INTERNAL_SECRET
from tests.gateway.test_inbound import SEED_USAGE, USAGE
from tests.stripe.conftest import (
    PACKS,
    WEBHOOK_SECRET,
    deliver,
    fake,
    refusing_port,
    stripe_settings,
)
from tests.stripe.fake import FakeStripe
from tests.web.conftest import WIDTHS, shoot

__all__ = ["fake"]  # the Stripe fake's fixture, served here too

CREDIT = 10_000
RETURN_URL = "https://app.example/settings"
PAGE_SECRET = "page-secret-0123456789abcdef0123456789"
CHECKOUT = re.compile(r"https://checkout\.stripe\.com/c/pay/(cs_test_\w+)")


@pytest.fixture
async def shop(make_ledger: LedgerFactory, fake: FakeStripe) -> Ledger:
    """A ledger selling packs through the fake Stripe; below 100 credits is low."""
    return await make_ledger(
        stripe=stripe_settings(fake), packs=PACKS, webhooks={"low_balance_threshold": 100}
    )


@pytest.fixture
async def app_key(shop: Ledger) -> str:
    """An app key's secret."""
    return await create_key(shop, "app", "web")


@pytest.fixture
async def api(shop: Ledger, app_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """The shop in process, with the app's key."""
    async with client_for(shop, app_key) as client:
        yield client


async def ada_spends(ledger: Ledger, clock: Clock) -> None:
    """Three weeks ago Ada got 100 sign-up credits (expiring ten days from now) and 20
    promotional ones, and used a little every few days; today she chats three messages
    (30 credits) and makes one model call through a hold."""
    clock.advance(-21 * 86_400)
    expires = clock.now + timedelta(days=31)
    await ledger.grant("ada", 100 * CREDIT, source="signup", expires_at=expires)
    await ledger.grant("ada", 20 * CREDIT, source="promotion", reason="welcome back")
    for day in range(7):
        await ledger.charge("ada", use=FeatureUse("ai_text_chat", Decimal(day % 3 + 1)))
        if day % 2:
            await ledger.charge("ada", use=FeatureUse("ai_image_generation"))
        clock.advance(3 * 86_400)
    await ledger.charge("ada", use=FeatureUse("chat_message", Decimal(3)))
    hold = await ledger.open_hold("ada", 5 * CREDIT, description="long answer")
    call = TokenUse("openai/gpt-4o", input_tokens=1_000, output_tokens=500)
    await ledger.capture_hold(hold.id, use=call)


async def portal_url(api: httpx.AsyncClient, account: str = "ada") -> str:
    """A portal link made through the API."""
    made = await api.post(
        "/v1/portal-sessions", json={"account_id": account, "return_url": RETURN_URL}
    )
    assert made.status_code == 201, made.text
    return str(body(made)["url"])


def _stripe_page(route: Route) -> Any:
    """Stands in for Stripe's hosted Checkout page, which tests cannot reach."""
    return route.fulfill(content_type="text/html", body="<title>Stripe Checkout</title>")


def _stripe_unreachable(route: Route) -> Any:
    """Stripe.js as a browser that cannot load it sees it: nothing."""
    return route.fulfill(content_type="text/javascript", body="")


# Stands in for Stripe.js's embedded Checkout: records what it was given and shows a form.
_STRIPE_JS = """
window.Stripe = function (publishableKey) {
  return {initEmbeddedCheckout: function (options) {
    return options.fetchClientSecret().then(function (secret) {
      window.embedded = {publishableKey: publishableKey, clientSecret: secret};
      return {mount: function (element) { element.textContent = "Stripe's payment form"; }};
    });
  }};
};
"""


# -- the whole story in a browser ---------------------------------------------------------


async def test_a_user_sees_their_credits_and_tops_up_through_stripe(
    shop: Ledger, app_key: str, fake: FakeStripe, context: BrowserContext, clock: Clock
) -> None:
    await ada_spends(shop, clock)
    async with serve_app(shop) as base, httpx.AsyncClient(base_url=base) as http:
        http.headers["Authorization"] = f"Bearer {app_key}"
        link = await portal_url(http, "ada")
        token = link.partition("token=")[2]
        assert link.startswith(f"{base}/billing/open?token=")

        seen: list[str] = []
        context.on("request", lambda request: seen.append(request.url))
        page = await context.new_page()
        await page.route("https://checkout.stripe.com/**", _stripe_page)
        await page.route("https://js.stripe.com/**", _stripe_unreachable)
        await page.goto(link)
        assert page.url == f"{base}/billing"

        balance = (await shop.get_account("ada")).balance
        shown = shop.money.to_decimal(balance)
        await expect(page.get_by_test_id("balance")).to_contain_text(f"{shown}")
        assert balance < 100 * CREDIT
        await expect(page.get_by_test_id("low-balance")).to_contain_text(
            "Your balance is low: below 100 credits"
        )
        await expect(page.get_by_test_id("paid")).to_have_text("0")
        await expect(page.locator(".expiring")).to_contain_text("sign-up credits expire on")
        await expect(page.get_by_role("link", name="Back to the app")).to_have_attribute(
            "href", RETURN_URL
        )
        chat = page.locator(".entry", has_text="Chat message")
        await expect(chat).to_contain_text("Used · Chat message")
        await expect(chat).to_contain_text("3 uses at 10 credits each")
        why = chat.locator("details")
        await expect(why).not_to_have_attribute("open", "")
        await chat.get_by_text("Why 30 credits?").click()
        await expect(why).to_contain_text("Taken from your credits: 30 sign-up")
        model = page.locator(".entry", has_text="GPT-4o")
        await expect(model).to_contain_text("1,000 input tokens, 500 output tokens")
        await model.locator("summary").click()
        await expect(model).to_contain_text("500 output tokens: 0.5 credits")
        await expect(model).to_contain_text("5 credits were set aside when the work started")
        await expect(page.locator(".chart svg rect").first).to_be_visible()
        await page.get_by_text("Show usage as a table").click()
        await expect(page.locator(".chart table")).to_contain_text("Chat message")
        await shoot(page, "billing-overview")

        await page.get_by_role("button", name="Buy 1,000 credits").click()
        # A publishable key is set: Stripe's form would be embedded in our page; with
        # Stripe.js out of reach (as offline here) the page's way round is the hosted page.
        await expect(page.locator("h1")).to_have_text("Buy 1,000 credits")
        await page.get_by_role("button", name="Pay on Stripe's page instead").click()
        await page.wait_for_url(CHECKOUT)
        match = CHECKOUT.fullmatch(page.url)
        assert match is not None
        session_id = match.group(1)
        started = fake.objects[session_id]
        assert started["client_reference_id"] == "ada"
        assert (
            started["success_url"] == f"{base}/billing/success?session_id={{CHECKOUT_SESSION_ID}}"
        )

        success = f"{base}/billing/success?session_id={session_id}"
        await page.goto(success)
        await expect(page.locator("h1")).to_have_text("Payment not finished")

        completed = fake.complete_session(session_id)
        await page.goto(success)
        await expect(page.locator("h1")).to_have_text("Payment received")
        await expect(page.locator('meta[http-equiv="refresh"]')).to_have_attribute("content", "3")
        await shoot(page, "billing-pending")

        delivered = await deliver(http, fake.event("checkout.session.completed", completed))
        assert delivered.json()["outcome"] == "granted"
        # No reload from the test: the page's own refresh finds the credits.
        await expect(page.locator("h1")).to_have_text(
            "Thank you: 1,000 credits added", timeout=8_000
        )
        now = shop.money.to_decimal((await shop.get_account("ada")).balance)
        await expect(page.get_by_test_id("balance")).to_contain_text(f"{now:,f}".rstrip("0"))
        await shoot(page, "billing-success")

        await page.goto(f"{base}/billing")
        await expect(page.get_by_test_id("low-balance")).to_have_count(0)
        await expect(page.get_by_test_id("paid")).to_have_text("1,000")
        purchase = page.locator(".entry", has_text="Bought")
        await expect(purchase).to_contain_text("Bought · Credit pack")
        await purchase.get_by_text("Why 1,000 credits?").click()
        await expect(purchase).to_contain_text("Paid by card through Stripe.")
        await expect(purchase).to_contain_text("Added as 1,000 paid credits.")

        await page.goto(f"{base}/billing/cancel")
        await expect(page.locator("h1")).to_have_text("No payment made")
        await shoot(page, "billing-cancel")

        secrets = [token, app_key, fake.api_key, WEBHOOK_SECRET]
        opened = seen[seen.index(link) + 1 :]
        assert opened and not [url for url in opened if any(s in url for s in secrets)]
        for path in (f"{base}/billing", success):
            await page.goto(path)
            html = await page.content()
            assert not [secret for secret in secrets if secret in html]

        await page.goto(link.replace("token=", "token=x"))
        await expect(page.locator("h1")).to_have_text("Please sign in again")
        await shoot(page, "billing-refused")


async def test_stripe_s_form_is_embedded_when_a_publishable_key_is_set(
    shop: Ledger, app_key: str, fake: FakeStripe, context: BrowserContext
) -> None:
    async with serve_app(shop) as base, httpx.AsyncClient(base_url=base) as http:
        http.headers["Authorization"] = f"Bearer {app_key}"
        link = await portal_url(http, "ada")
        page = await context.new_page()
        await page.route(
            "https://js.stripe.com/**",
            lambda route: route.fulfill(content_type="text/javascript", body=_STRIPE_JS),
        )
        await page.goto(link)
        await page.get_by_role("button", name="Buy 10,000 credits for $90").click()
        await expect(page.get_by_test_id("embedded-checkout")).to_have_text("Stripe's payment form")
        await expect(page.get_by_role("button", name="Pay on Stripe's page instead")).to_be_hidden()
        given = await page.evaluate("window.embedded")
        (started,) = [o for o in fake.objects.values() if o["object"] == "checkout.session"]
        assert given == {
            "publishableKey": "pk_test_creditsd",
            "clientSecret": started["client_secret"],
        }
        assert (started["ui_mode"], started["client_reference_id"]) == ("embedded_page", "ada")
        assert started["return_url"] == (
            f"{base}/billing/success?session_id={{CHECKOUT_SESSION_ID}}"
        )
        await shoot(page, "billing-checkout")


async def test_without_a_publishable_key_a_top_up_goes_to_stripe_s_page(
    make_ledger: LedgerFactory, fake: FakeStripe
) -> None:
    stripe = {k: v for k, v in stripe_settings(fake).items() if k != "publishable_key"}
    ledger = await make_ledger(stripe=stripe, packs=PACKS)
    app = create_app(ledger, sweep=False)
    async with client_for(ledger, await create_key(ledger, "app", "web")) as api:
        link = httpx.URL(await portal_url(api, "ada"))
    origin = f"{link.scheme}://{link.host}"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=origin
    ) as browser:
        assert (await browser.get(link)).status_code == 303
        page = await browser.get("/billing")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None, page.text
        bought = await browser.post("/billing/top-up", data={"csrf": csrf.group(1), "pack": "1k"})
    await app.state.stripe.close()
    await app.state.proxy.aclose()
    assert bought.status_code == 303
    assert CHECKOUT.fullmatch(bought.headers["location"])


# -- the link -----------------------------------------------------------------------------


async def test_opening_a_link_starts_a_session_and_drops_the_token(
    api: httpx.AsyncClient, shop: Ledger
) -> None:
    await shop.grant("ada", 5 * CREDIT)
    made = await api.post(
        "/v1/portal-sessions", json={"account_id": "ada", "return_url": RETURN_URL}
    )
    assert made.status_code == 201
    expires_at = datetime.fromisoformat(body(made)["expires_at"])
    assert abs(expires_at - (shop.now() + timedelta(seconds=300))) < timedelta(seconds=1)
    opened = await api.get(body(made)["url"])
    assert opened.status_code == 303 and opened.headers["location"] == "/billing"
    cookie = opened.headers["set-cookie"]
    assert "Path=/billing" in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    page = await api.get("/billing")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'data-testid="balance">5 <small>' in page.text
    assert page.headers["cache-control"] == "no-store"


async def test_a_link_opens_once(api: httpx.AsyncClient, shop: Ledger) -> None:
    link = await portal_url(api, "ada")
    assert (await api.get(link)).status_code == 303
    async with client_for(shop, "") as elsewhere:  # a copy from a history, log or referrer
        again = await elsewhere.get(link)
    assert again.status_code == 401 and "opened already" in again.text
    assert "set-cookie" not in again.headers
    assert (await api.get(await portal_url(api, "ada"))).status_code == 303  # a new one does


async def test_a_link_follows_public_url_when_one_is_set(
    make_ledger: LedgerFactory, fake: FakeStripe
) -> None:
    ledger = await make_ledger(web={"public_url": "https://billing.example/"})
    async with client_for(ledger, await create_key(ledger, "app")) as client:
        url = await portal_url(client)
    assert url.startswith("https://billing.example/billing/open?token=")


@pytest.mark.parametrize(
    "request_body",
    [
        {"account_id": "ada"},
        {"account_id": "ada", "return_url": "javascript:alert(1)"},
        {"account_id": "ada", "return_url": "ftp://app.example"},
        {"account_id": "ada", "return_url": RETURN_URL, "scope": "admin"},
        {"account_id": "@stripe", "return_url": RETURN_URL},
        {"account_id": 7, "return_url": RETURN_URL},
    ],
)
async def test_bad_portal_requests_are_refused(
    api: httpx.AsyncClient, request_body: dict[str, Any]
) -> None:
    refused = await api.post("/v1/portal-sessions", json=request_body)
    assert refused.status_code == 422
    assert body(refused)["error"]["code"] == "validation_error"


async def test_a_read_key_cannot_ask_for_a_link(shop: Ledger) -> None:
    async with client_for(shop, await create_key(shop, "read", "dash")) as reader:
        refused = await reader.post(
            "/v1/portal-sessions", json={"account_id": "ada", "return_url": RETURN_URL}
        )
    assert refused.status_code == 403


async def test_a_link_for_an_account_not_yet_made_creates_nothing(
    api: httpx.AsyncClient, shop: Ledger
) -> None:
    opened = await api.get(await portal_url(api, "newcomer"))
    assert opened.status_code == 303
    page = await api.get("/billing")
    assert 'data-testid="balance">0 <small>' in page.text
    assert "No transactions yet." in page.text
    assert await shop.count_accounts() == 0


async def test_without_auto_create_an_unknown_account_gets_no_link(
    make_ledger: LedgerFactory, fake: FakeStripe
) -> None:
    ledger = await make_ledger(accounts={"auto_create": "false"})
    async with client_for(ledger, await create_key(ledger, "app")) as client:
        refused = await client.post(
            "/v1/portal-sessions", json={"account_id": "ghost", "return_url": RETURN_URL}
        )
    assert refused.status_code == 404
    assert body(refused)["error"]["code"] == "account_not_found"


async def test_an_alias_gets_a_link_to_its_account(api: httpx.AsyncClient, shop: Ledger) -> None:
    await shop.open_account("user_2abc", aliases=("42",), initial_grant=7 * CREDIT)
    await api.get(await portal_url(api, "42"))
    assert 'data-testid="balance">7 <small>' in (await api.get("/billing")).text


async def test_an_expired_link_is_refused(
    api: httpx.AsyncClient, shop: Ledger, clock: Clock
) -> None:
    url = await portal_url(api)
    clock.advance(301)
    refused = await api.get(url)
    assert refused.status_code == 401
    assert "<h1>Please sign in again</h1>" in refused.text
    assert "has expired" in refused.text
    assert "set-cookie" not in refused.headers


async def test_a_tampered_link_is_refused(api: httpx.AsyncClient, shop: Ledger) -> None:
    await shop.grant("bo", 999 * CREDIT)
    ada = await portal_url(api, "ada")
    bo = await portal_url(api, "bo")
    ada_payload, _, ada_signature = ada.partition("token=")[2].partition(".")
    bo_payload = bo.partition("token=")[2].partition(".")[0]
    base = ada.partition("token=")[0] + "token="
    for token in (
        f"{bo_payload}.{ada_signature}",  # bo's account under ada's signature
        f"{ada_payload}x.{ada_signature}",
        f"{ada_payload}.{ada_signature[:-2]}",
        ada_payload,
        "",
    ):
        refused = await api.get(base + token)
        assert refused.status_code == 401, token
        assert "set-cookie" not in refused.headers
    assert (await api.get("/billing")).status_code == 401


async def test_a_browser_is_refused_expired_tampered_and_other_account_links(
    shop: Ledger, app_key: str, context: BrowserContext, clock: Clock
) -> None:
    await shop.grant("bo", 999 * CREDIT)
    async with serve_app(shop) as base, httpx.AsyncClient(base_url=base) as http:
        http.headers["Authorization"] = f"Bearer {app_key}"
        ada, bo, late = [await portal_url(http, name) for name in ("ada", "bo", "ada")]
        ada_payload, _, ada_signature = ada.partition("token=")[2].partition(".")
        bo_payload = bo.partition("token=")[2].partition(".")[0]
        start = ada.partition("token=")[0] + "token="
        clock.advance(301)
        page = await context.new_page()
        for link, said in (
            (late, "has expired"),
            (f"{start}{bo_payload}.{ada_signature}", "is not valid"),  # bo's, ada's signature
            (f"{start}{ada_payload}.{ada_signature[:-2]}", "is not valid"),
        ):
            answer = await page.goto(link)
            assert answer is not None and answer.status == 401
            await expect(page.locator("h1")).to_have_text("Please sign in again")
            await expect(page.locator("main")).to_contain_text(said)
        assert await context.cookies() == []
        answer = await page.goto(f"{base}/billing")
        assert answer is not None and answer.status == 401
        await expect(page.locator("main")).not_to_contain_text("999")


async def test_a_session_cookie_is_no_link_and_a_link_is_no_session(
    api: httpx.AsyncClient,
) -> None:
    url = await portal_url(api)
    link_token = url.partition("token=")[2]
    await api.get(url)
    session_token = api.cookies["creditsd_billing"]
    assert (await api.get(f"/billing/open?token={session_token}")).status_code == 401
    api.cookies.clear()
    api.cookies.set("creditsd_billing", link_token, path="/billing")
    refused = await api.get("/billing")
    assert refused.status_code == 401
    assert "open the billing page from the app again" in refused.text


async def test_a_session_ends(api: httpx.AsyncClient, clock: Clock) -> None:
    await api.get(await portal_url(api))
    assert (await api.get("/billing")).status_code == 200
    clock.advance(3601)
    assert (await api.get("/billing")).status_code == 401


# -- one account only ---------------------------------------------------------------------


async def test_a_session_shows_its_own_account_and_no_other(
    api: httpx.AsyncClient, shop: Ledger, fake: FakeStripe
) -> None:
    await shop.grant("ada", 12 * CREDIT, reason="ada's gift")
    await shop.grant("bo", 340 * CREDIT, reason="bo's secret grant")
    await shop.charge("bo", use=FeatureUse("canvas_generation_complex"))
    await api.get(await portal_url(api, "bo"))
    async with client_for(shop, "") as bo_browser:
        bo_browser.cookies = api.cookies
        bo_page = await bo_browser.get("/billing")
        assert "bo&#39;s secret grant" in bo_page.text
        bo_checkout = await _buy(bo_browser, bo_page.text, "1k")

    api.cookies.clear()
    await api.get(await portal_url(api, "ada"))
    page = await api.get("/billing")
    assert 'data-testid="balance">12 <small>' in page.text
    assert "ada&#39;s gift" in page.text
    for bos in ("bo&#39;s", "340", "canvas_generation_complex"):
        assert bos not in page.text

    theirs = await api.get(f"/billing/success?session_id={bo_checkout}")
    assert theirs.status_code == 404
    fake.complete_session(bo_checkout)
    assert (await api.get(f"/billing/success?session_id={bo_checkout}")).status_code == 404
    for bogus in ("cs_test_nothing", "pi_123", "cs_../x", ""):
        missing = await api.get("/billing/success", params={"session_id": bogus})
        assert missing.status_code == 404 and "<h1>Not found</h1>" in missing.text


async def test_a_purchase_by_another_account_is_not_shown_once_granted(
    api: httpx.AsyncClient, shop: Ledger, fake: FakeStripe
) -> None:
    await api.get(await portal_url(api, "bo"))
    bo_checkout = await _buy(api, (await api.get("/billing")).text, "10k")
    completed = fake.complete_session(bo_checkout)
    assert (await deliver(api, fake.event("checkout.session.completed", completed))).json()[
        "outcome"
    ] == "granted"
    mine = await api.get(f"/billing/success?session_id={bo_checkout}")
    assert "Thank you: 10,000 credits added" in mine.text

    api.cookies.clear()
    await api.get(await portal_url(api, "ada"))
    theirs = await api.get(f"/billing/success?session_id={bo_checkout}")
    assert theirs.status_code == 404 and "10,000" not in theirs.text


# -- forms --------------------------------------------------------------------------------


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def _buy(client: httpx.AsyncClient, html: str, pack: str) -> str:
    """Buy a pack on Stripe's own page (the way round the embedded form); the Checkout
    Session that page would show."""
    form = {"csrf": _csrf(html), "pack": pack, "hosted": "true"}
    started = await client.post("/billing/top-up", data=form)
    assert started.status_code == 303, started.text
    match = CHECKOUT.fullmatch(started.headers["location"])
    assert match is not None
    return match.group(1)


async def test_a_top_up_without_its_csrf_token_is_refused(
    api: httpx.AsyncClient, fake: FakeStripe, shop: Ledger
) -> None:
    await api.get(await portal_url(api))
    page = (await api.get("/billing")).text
    for form in ({"pack": "1k"}, {"pack": "1k", "csrf": "forged"}, {}):
        refused = await api.post("/billing/top-up", data=form)
        assert refused.status_code == 403
        assert "<h1>Not allowed</h1>" in refused.text
    async with client_for(shop, "") as other:  # another browser, with bo's session
        await other.get(await portal_url(api, "bo"))
        stolen = await other.post("/billing/top-up", data={"pack": "1k", "csrf": _csrf(page)})
    assert stolen.status_code == 403
    assert not [r for r in fake.requests if r[1] == "/v1/checkout/sessions"]


async def test_an_unknown_pack_or_no_session_starts_nothing(
    api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    unsigned = await api.post("/billing/top-up", data={"pack": "1k", "csrf": "x"})
    assert unsigned.status_code == 401
    await api.get(await portal_url(api))
    csrf = _csrf((await api.get("/billing")).text)
    unknown = await api.post("/billing/top-up", data={"pack": "5k", "csrf": csrf})
    assert unknown.status_code == 422 and "text/html" in unknown.headers["content-type"]
    assert not [r for r in fake.requests if r[1] == "/v1/checkout/sessions"]


async def test_without_stripe_no_packs_are_offered_nor_sold(make_ledger: LedgerFactory) -> None:
    ledger = await make_ledger(packs=PACKS, web={"secret": PAGE_SECRET})
    async with client_for(ledger, await create_key(ledger, "app")) as client:
        await client.get(await portal_url(client))
        page = await client.get("/billing")
        # the form of a page shown before Stripe was taken out of the configuration
        signer = Signer(PAGE_SECRET)
        claims = signer.verify("billing", client.cookies["creditsd_billing"], ledger.now())
        form = {"pack": "1k", "csrf": signer.tag("csrf", claims["sid"])}
        bought = await client.post("/billing/top-up", data=form)
        back = await client.get("/billing/success", params={"session_id": "cs_test_1"})
    assert page.status_code == 200 and "Top up" not in page.text
    for answer in (bought, back):
        assert answer.status_code == 404  # for good, until an operator sets Stripe up
        assert "buying credits is not available here" in answer.text
        assert "try again" not in answer.text and "stripe." not in answer.text.lower()
    assert await ledger.count_accounts() == 0  # nothing was made for a purchase


# -- history and usage --------------------------------------------------------------------


@pytest.mark.parametrize(
    "stamp",
    [
        # a price that reads like creditsd's own, planted by the gateway
        {"catalog_version": 1, "exact": "0.1", "rounding": "up", "amount": 99_999},
        {"catalog_version": 2},
        {"catalog_version": [], "rounding": {}, "exact": "x", "amount": None},
        {"lines": "not a list"},
        {"lines": [7, {"description": {"nested": True}}, {"item": "no description"}]},
        {"settlement": {"outcome": "within_hold"}},
        {"settlement": "all settled"},
        {"settlement": {"estimate": 1e308, "actual": "1e999999", "released": True}},
        {"source": "catalog", "kind": "model", "usd": 0.1, "markup_percent": "x"},
    ],
)
async def test_a_gateway_s_own_fields_never_break_or_explain_the_page(
    make_ledger: LedgerFactory, stamp: dict[str, Any]
) -> None:
    ledger = await make_ledger(gateway={"internal_secret": INTERNAL_SECRET})
    async with client_for(ledger, "no-key") as gateway:
        gateway.headers["X-Internal-Secret"] = INTERNAL_SECRET
        posted = await gateway.post(USAGE, json={**SEED_USAGE, **stamp, "requestId": "req-1"})
    assert posted.status_code == 200 and body(posted)["status"] == "charged", posted.text
    async with client_for(ledger, await create_key(ledger, "app")) as client:
        await client.get(await portal_url(client, "123"))
        page = await client.get("/billing")
    assert page.status_code == 200
    entry = page.text.partition('class="entry"')[2]
    assert "Used" in entry and "gpt-4o-mini" in entry and "−0.3" in entry
    for planted in ("price list", "99,999", "set aside", "not a list", "nested", "markup"):
        assert planted not in entry
    assert "Priced at 0.003 USD, at 100 credits a dollar." in entry


async def test_transactions_come_a_page_at_a_time(api: httpx.AsyncClient, shop: Ledger) -> None:
    await shop.grant("ada", 100 * CREDIT)
    for _ in range(24):
        await shop.charge("ada", use=FeatureUse("ai_text_chat"))
    await api.get(await portal_url(api))
    first = await api.get("/billing")
    assert first.text.count('class="entry"') == 20
    older = re.search(r'href="(/billing\?before=[^"#]+)', first.text)
    assert older is not None
    second = await api.get(older.group(1).replace("&amp;", "&"))
    assert second.text.count('class="entry"') == 5
    assert "Granted" in second.text and "Newest" in second.text
    assert (await api.get("/billing?before=garbage")).status_code == 422


async def test_usage_is_charted_per_day_by_item(
    api: httpx.AsyncClient, shop: Ledger, clock: Clock
) -> None:
    await shop.grant("ada", 1_000 * CREDIT)
    clock.advance(-40 * 86_400)  # too old for the chart
    await shop.charge("ada", use=FeatureUse("training_job", Decimal(1)))
    clock.advance(38 * 86_400)
    await shop.charge("ada", use=FeatureUse("chat_message", Decimal(2)))
    await shop.charge("ada", 7 * CREDIT, description="export")
    clock.advance(2 * 86_400)
    await shop.charge("ada", use=FeatureUse("video_generation", Decimal("1.5")))
    await api.get(await portal_url(api))
    page = (await api.get("/billing")).text
    assert "42 credits used from" in page  # 20 + 7 + 15; the training job is too old
    assert "Training job" not in page.partition("Transactions")[0]
    table = page.partition("<tbody>")[2].partition("</tbody>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", table)
    assert len(rows) == 2  # two days with usage, newest first
    totals = [re.findall(r'data-label="([^"]*)">([^<]*)</td>', row) for row in rows]
    assert totals == [
        [("Chat message", "0"), ("Video generation", "15"), ("export", "0"), ("Total", "15")],
        [("Chat message", "20"), ("Video generation", "0"), ("export", "7"), ("Total", "27")],
    ]
    assert page.count("<rect ") == 3 + 3  # three blocks, plus three legend swatches


async def test_a_delayed_payment_is_shown_processing(
    api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    await api.get(await portal_url(api))
    session_id = await _buy(api, (await api.get("/billing")).text, "1k")
    fake.complete_session(session_id, paid=False)
    page = await api.get(f"/billing/success?session_id={session_id}")
    assert "<h1>Payment processing</h1>" in page.text
    assert '<meta http-equiv="refresh" content="30">' in page.text


async def test_an_account_s_own_threshold_decides_the_warning(
    api: httpx.AsyncClient, shop: Ledger
) -> None:
    await shop.open_account("ada", initial_grant=150 * CREDIT)
    await api.get(await portal_url(api))
    assert 'data-testid="low-balance"' not in (await api.get("/billing")).text
    await shop.open_account("ada", low_balance_threshold=200 * CREDIT)
    warned = (await api.get("/billing")).text
    assert "Your balance is low: below 200 credits." in warned
    await shop.open_account("ada", low_balance_threshold=0)
    assert 'data-testid="low-balance"' not in (await api.get("/billing")).text


async def test_a_frozen_account_is_shown_so_and_its_credits_lapse(
    api: httpx.AsyncClient, shop: Ledger, clock: Clock
) -> None:
    await shop.grant("ada", 10 * CREDIT, source="signup", expires_at=clock.now + timedelta(days=1))
    await shop.open_account("ada", status="frozen")
    clock.advance(2 * 86_400)
    await shop.expire_lots()
    await api.get(await portal_url(api))
    page = (await api.get("/billing")).text
    assert "This account is frozen" in page and "Top up" not in page
    assert 'data-testid="balance">0 <small>' in page
    assert "Expired" in page and "reached their expiry date unspent" in page


async def test_an_account_frozen_while_its_page_is_open_buys_nothing(
    api: httpx.AsyncClient, shop: Ledger, fake: FakeStripe
) -> None:
    await shop.grant("ada", 5 * CREDIT)
    await api.get(await portal_url(api))
    page = (await api.get("/billing")).text
    await shop.set_status("ada", "frozen", reason="dispute")
    forced = await api.post(
        "/billing/top-up", data={"csrf": _csrf(page), "pack": "1k", "hosted": "true"}
    )
    assert forced.status_code == 409 and "is frozen" in forced.text
    assert not [r for r in fake.requests if r[1] == "/v1/checkout/sessions"]


async def test_the_page_reads_in_order_and_shows_where_the_keyboard_is(
    shop: Ledger, app_key: str, context: BrowserContext, clock: Clock
) -> None:
    await ada_spends(shop, clock)
    async with serve_app(shop) as base, httpx.AsyncClient(base_url=base) as http:
        http.headers["Authorization"] = f"Bearer {app_key}"
        page = await context.new_page()
        await page.goto(await portal_url(http))
        levels = await page.locator("h1, h2, h3").evaluate_all(
            "found => found.map(heading => Number(heading.tagName[1]))"
        )
        assert levels[0] == 1 and levels.count(1) == 1
        assert all(after - before <= 1 for before, after in itertools.pairwise(levels))
        for role in ("button", "link"):
            names = [
                (await control.get_attribute("aria-label")) or (await control.inner_text())
                for control in await page.get_by_role(role).all()
            ]
            assert names and all(name.strip() for name in names), role
        await page.keyboard.press("Tab")
        await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        await page.keyboard.press("Tab")
        focused = page.get_by_role("link", name="Back to the app")
        await expect(focused).to_be_focused()
        outline = await focused.evaluate("link => getComputedStyle(link).outlineStyle")
        assert outline == "solid"
        await expect(page.get_by_role("img", name="Credits used per day")).to_be_visible()


# -- one browser, two accounts ------------------------------------------------------------


def _named(html: str) -> str:
    """The account a billing page says it is for."""
    found = re.search(r'data-testid="account">([^<]+)<', html)
    assert found is not None, html
    return found[1]


async def test_every_billing_page_names_its_account(
    api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    await api.get(await portal_url(api, "ada"))
    page = await api.get("/billing")
    assert _named(page.text) == "ada"
    checkout = await _buy(api, page.text, "1k")
    for path in ("/billing/cancel", f"/billing/success?session_id={checkout}"):
        assert _named((await api.get(path)).text) == "ada", path


async def test_another_account_s_link_asks_before_switching(
    api: httpx.AsyncClient, shop: Ledger
) -> None:
    await shop.grant("bo", 340 * CREDIT)
    await api.get(await portal_url(api, "ada"))
    ada_page = (await api.get("/billing")).text
    bo_link = await portal_url(api, "bo")
    opened = await api.get(bo_link)
    assert (opened.status_code, opened.headers["location"]) == (303, "/billing/switch")
    assert _named((await api.get("/billing")).text) == "ada"  # nothing switched yet

    asked = await api.get("/billing/switch")
    assert asked.status_code == 200
    assert _named(asked.text) == "ada"
    for said in ("account <strong>ada</strong>", "account <strong>bo</strong>", "Switch to bo"):
        assert said in asked.text, said
    assert "340" not in asked.text  # bo's figures are shown only once switched to
    for forged in ({"choice": "switch"}, {"choice": "switch", "csrf": _csrf(ada_page)}):
        refused = await api.post("/billing/switch", data=forged)
        assert refused.status_code == 403
    assert _named((await api.get("/billing")).text) == "ada"
    assert (await api.get(bo_link)).status_code == 401  # the link was spent on asking

    confirm = {"choice": "switch", "csrf": _csrf(asked.text)}
    switched = await api.post("/billing/switch", data=confirm)
    assert (switched.status_code, switched.headers["location"]) == (303, "/billing")
    page = (await api.get("/billing")).text
    assert _named(page) == "bo" and 'data-testid="balance">340 <small>' in page
    gone = await api.get("/billing/switch")  # asked once: nothing more to confirm
    assert (gone.status_code, gone.headers["location"]) == (303, "/billing")


async def test_staying_keeps_the_account_and_the_same_account_s_link_opens_at_once(
    api: httpx.AsyncClient,
) -> None:
    await api.get(await portal_url(api, "ada"))
    await api.get(await portal_url(api, "bo"))
    asked = await api.get("/billing/switch")
    stayed = await api.post("/billing/switch", data={"choice": "stay", "csrf": _csrf(asked.text)})
    assert (stayed.status_code, stayed.headers["location"]) == (303, "/billing")
    assert _named((await api.get("/billing")).text) == "ada"
    late = await api.post("/billing/switch", data={"choice": "switch", "csrf": _csrf(asked.text)})
    assert late.status_code == 303 and _named((await api.get("/billing")).text) == "ada"

    again = await api.get(await portal_url(api, "ada"))
    assert (again.status_code, again.headers["location"]) == (303, "/billing")


async def test_a_browser_is_asked_before_another_account_s_link_takes_over(
    shop: Ledger, app_key: str, context: BrowserContext
) -> None:
    await shop.grant("bo", 340 * CREDIT)
    async with serve_app(shop) as base, httpx.AsyncClient(base_url=base) as http:
        http.headers["Authorization"] = f"Bearer {app_key}"
        page = await context.new_page()
        await page.goto(await portal_url(http, "ada"))
        await expect(page.get_by_test_id("account")).to_have_text("ada")
        await page.goto(await portal_url(http, "bo"))
        assert page.url == f"{base}/billing/switch"
        await expect(page.locator("h1")).to_have_text("Switch accounts?")
        await expect(page.locator("main")).to_contain_text("account ada")
        await expect(page.locator("main")).to_contain_text("account bo")
        await shoot(page, "billing-switch")
        await page.get_by_role("button", name="Stay with ada").click()
        assert page.url == f"{base}/billing"
        await expect(page.get_by_test_id("account")).to_have_text("ada")

        await page.goto(await portal_url(http, "bo"))
        await page.get_by_role("button", name="Switch to bo").click()
        assert page.url == f"{base}/billing"
        await expect(page.get_by_test_id("account")).to_have_text("bo")
        await expect(page.get_by_test_id("balance")).to_contain_text("340")


# -- what the customer reads, on a phone --------------------------------------------------

INDIA = timedelta(hours=5, minutes=30)  # Asia/Kolkata keeps no daylight saving time
# What the billing page never shows: the seller's terms, the ledger's words, catalog ids.
NOT_FOR_CUSTOMERS = re.compile(
    r"markup|multiplier|\brate\b|catalog|version|\bUSD\b|\bcharge\b|\bcapture\b|"
    r"chat_message|video_generation|openai/|\btr_|\bhold_|\bcs_",
    re.IGNORECASE,
)


async def test_a_customer_reads_names_plurals_and_local_times_and_the_page_fits_a_phone(
    shop: Ledger, app_key: str, browser: Browser, clock: Clock
) -> None:
    await ada_spends(shop, clock)
    await shop.grant("ada", 200 * CREDIT, reason="Sorry about the outage")
    video = await shop.charge("ada", use=FeatureUse("video_generation", Decimal("14.5")))
    async with serve_app(shop) as base, httpx.AsyncClient(base_url=base) as http:
        http.headers["Authorization"] = f"Bearer {app_key}"
        link = await portal_url(http)
        context = await browser.new_context(
            viewport=WIDTHS["phone"],  # type: ignore[arg-type]
            timezone_id="Asia/Kolkata",
            locale="en-GB",
        )
        page = await context.new_page()
        await page.goto(link)
        for summary in await page.locator("main summary").all():
            await summary.click()

        newest = page.locator(".entry").first
        await expect(newest).to_contain_text("Used · Video generation")
        await expect(newest).to_contain_text("14.5 seconds at 10 credits a second")
        await expect(newest).to_contain_text("Why 145 credits?")
        await expect(page.locator(".entry", has_text="Chat message")).to_contain_text(
            "3 uses at 10 credits each"
        )
        model = page.locator(".entry", has_text="GPT-4o")
        await expect(model).to_contain_text("1,000 input tokens, 500 output tokens")
        await expect(model).to_contain_text("1,000 input tokens: 0.25 credits")
        await expect(page.locator(".entry", has_text="Sorry about the outage")).to_contain_text(
            "Granted · Sorry about the outage"
        )
        summaries = await page.locator("main summary").all_inner_texts()
        assert "Why 1 credit?" in summaries and "Why 1 credits?" not in summaries
        said = await page.locator("main").inner_text()
        assert not NOT_FOR_CUSTOMERS.findall(said), NOT_FOR_CUSTOMERS.findall(said)
        assert video.id not in await page.content()

        shown = newest.locator("time")
        utc = video.created_at.astimezone(UTC)
        await expect(shown).to_have_attribute("datetime", utc.strftime("%Y-%m-%dT%H:%M:%SZ"))
        await expect(shown).to_have_attribute("title", f"{utc.day} {utc:%b %Y, %H:%M} UTC")
        local = utc + INDIA
        await expect(shown).to_have_text(f"{local.day} {local:%b %Y}, {local:%H:%M} GMT+5:30")

        await expect(page.get_by_test_id("usage-table")).to_be_visible()
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= WIDTHS["phone"]["width"], width
        await shoot(page, "billing-words")
        await context.close()

        plain = await browser.new_context(java_script_enabled=False, timezone_id="Asia/Kolkata")
        page = await plain.new_page()
        await page.goto(await portal_url(http))
        await expect(page.locator(".entry time").first).to_have_text(
            f"{utc.day} {utc:%b %Y, %H:%M} UTC"
        )
        await plain.close()


# -- when Stripe fails ----------------------------------------------------------------------


async def test_buying_while_stripe_is_out_of_reach_says_so_and_offers_a_way_back(
    make_ledger: LedgerFactory, fake: FakeStripe, context: BrowserContext
) -> None:
    unreachable = {"api_base": f"http://127.0.0.1:{refusing_port()}", "timeout_seconds": 1}
    shop = await make_ledger(stripe=stripe_settings(fake, **unreachable), packs=PACKS)
    await shop.grant("ada", 7 * CREDIT)
    async with serve_app(shop) as base, httpx.AsyncClient(base_url=base) as http:
        http.headers["Authorization"] = f"Bearer {await create_key(shop, 'app', 'web')}"
        page = await context.new_page()
        await page.goto(await portal_url(http))
        async with page.expect_response(f"{base}/billing/top-up") as answered:
            await page.get_by_role("button", name="Buy 1,000 credits").click()
        answer = await answered.value
        assert answer.status == 503 and answer.headers["retry-after"] == "60"
        await expect(page.locator("h1")).to_have_text("We could not reach our payment provider")
        await expect(page.locator("main")).to_contain_text(
            "Nothing was charged: your balance is still 7 credits."
        )
        await shoot(page, "billing-not-started")
        async with page.expect_response(f"{base}/billing/top-up") as again:
            await page.get_by_role("button", name="Try again").click()
        assert (await again.value).status == 503
        await page.get_by_role("link", name="Back to your credits").click()
        assert page.url == f"{base}/billing#top-up"
        await expect(page.get_by_test_id("balance")).to_contain_text("7")

        looked_up = await page.goto(f"{base}/billing/success?session_id=cs_test_1")
        assert looked_up is not None and looked_up.status == 503
        await expect(page.locator("h1")).to_have_text("Something went wrong on our side")
        await expect(page.get_by_role("link", name="Back to your credits")).to_have_attribute(
            "href", "/billing"
        )


async def test_buying_what_stripe_refuses_says_so_without_stripe_s_words(
    make_ledger: LedgerFactory, fake: FakeStripe
) -> None:
    gone = {**PACKS, "gone": {"credits": 5, "price_id": "price_gone"}}
    shop = await make_ledger(stripe=stripe_settings(fake), packs=gone)
    async with client_for(shop, await create_key(shop, "app", "web")) as api:
        await api.get(await portal_url(api))
        form = {"csrf": _csrf((await api.get("/billing")).text), "pack": "gone", "hosted": "true"}
        refused = await api.post("/billing/top-up", data=form)
    assert refused.status_code == 502 and "retry-after" not in refused.headers
    assert '<h1 id="not-started-heading">The payment could not be started</h1>' in refused.text
    assert (
        'name="pack" value="gone"' in refused.text and 'name="hosted" value="true"' in refused.text
    )
    for internal in ("price_gone", "resource_missing", "No such price", fake.api_key, "req_"):
        assert internal not in refused.text
