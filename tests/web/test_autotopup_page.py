"""The billing page's auto top-up: its forms turn it on (a rule, then a card saved through
Stripe Checkout, the consent the customer's own), off (at once), and confirm a payment the
bank wants authenticated; bad input, forged forms and other accounts' sessions change
nothing; and what the section says of the state and the runway."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from creditsd.autotopup.models import Attempt, AutoTopup, Card, Consent, Rule
from creditsd.inprocess import Ledger
from creditsd.kit.money import Money
from creditsd.ledger.runway import Runway, at_burn
from creditsd.stripe.billing import StripeBilling
from creditsd.web.autotopup_view import NO_BURN, TOO_SOON, shown
from creditsd.worker import charge_auto_topups
from tests.conftest import body, client_for, create_key, put_member
from tests.stripe.conftest import deliver
from tests.stripe.fake import FakeStripe
from tests.web.test_portal import CHECKOUT, CREDIT, api, app_key, fake, portal_url, shop

__all__ = ["api", "app_key", "fake", "shop"]  # the portal suite's fixtures, served here too

RULE = {"threshold": "100", "buy": "target", "target_balance": "500", "monthly_cap": "5000"}


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html[-1500:]
    return found.group(1)


async def signed_in(client: httpx.AsyncClient, api: httpx.AsyncClient, account: str) -> str:
    """Open ``account``'s billing page in ``client``; its forms' CSRF token."""
    assert (await client.get(await portal_url(api, account))).status_code == 303
    return csrf_of((await client.get("/billing")).text)


async def turn_on(client: httpx.AsyncClient, csrf: str, **form: str) -> httpx.Response:
    return await client.post("/billing/auto-top-up", data={"csrf": csrf, **RULE, **form})


async def save_card(client: httpx.AsyncClient, fake: FakeStripe, started: httpx.Response) -> str:
    """Save a card on the Checkout page ``started`` sent the browser to; the session id."""
    assert started.status_code == 303, started.text
    match = CHECKOUT.fullmatch(started.headers["location"])
    assert match is not None
    completed = fake.complete_setup(match.group(1), last4="4242", fingerprint="fp_ada")
    delivered = await deliver(client, fake.event("checkout.session.completed", completed))
    assert delivered.json()["outcome"] == "card_saved", delivered.text
    return match.group(1)


async def topup(api: httpx.AsyncClient, account: str = "ada") -> Any:
    return body(await api.get(f"/v1/accounts/{account}/auto-topup"))


async def charge_pass(shop: Ledger) -> list[str]:
    billing = StripeBilling(shop)
    try:
        return await charge_auto_topups(shop, billing)
    finally:
        await billing.close()


def intents(fake: FakeStripe) -> list[str]:
    return [oid for oid, obj in fake.objects.items() if obj["object"] == "payment_intent"]


# -- turning it on and off ------------------------------------------------------------------


async def test_turning_on_saves_a_card_and_records_the_customer_s_consent(
    api: httpx.AsyncClient, shop: Ledger, fake: FakeStripe
) -> None:
    csrf = await signed_in(api, api, "ada")
    page = (await api.get("/billing")).text
    assert 'id="auto-top-up"' in page and "Turn on automatic top-up" in page
    started = await turn_on(api, csrf)
    assert (await topup(api))["state"] == "awaiting_card"
    session = await save_card(api, fake, started)
    sent = fake.objects[session]
    assert (sent["mode"], sent["metadata"]["creditsd_app"]) == (
        "setup",
        "customer on the billing page",
    )
    assert sent["success_url"].endswith("/billing#auto-top-up")
    shown_ = await topup(api)
    assert (shown_["state"], shown_["target_balance"], shown_["monthly_cap"]) == (
        "active",
        500,
        5000,
    )
    assert shown_["card"]["consented_by"] == f"customer on the billing page (checkout {session})"
    page = (await api.get("/billing")).text
    assert "Visa •••• 4242" in page and "buy enough to bring it to 500 credits" in page
    assert "0 of 5,000 credits bought this month" in page
    async with client_for(shop, await create_key(shop, "admin", "ops")) as admin:
        log = body(await admin.get("/v1/audit-log", params={"action": "auto_topup.updated"}))
    assert [r["actor"] for r in log["data"]] == ["customer on the billing page"]


async def test_turning_off_takes_effect_at_once(
    api: httpx.AsyncClient, shop: Ledger, fake: FakeStripe
) -> None:
    csrf = await signed_in(api, api, "ada")
    session = await save_card(api, fake, await turn_on(api, csrf))
    await shop.grant("ada", 150 * CREDIT)
    await shop.charge("ada", 100 * CREDIT)  # 50 left: an attempt is queued
    assert (await topup(api))["last_attempt"]["status"] == "queued"
    off = await api.post("/billing/auto-top-up/off", data={"csrf": csrf})
    assert (off.status_code, off.headers["location"]) == (303, "/billing#auto-top-up")
    assert (await topup(api))["state"] == "off"
    assert await charge_pass(shop) == []  # canceled before it reached Stripe
    assert intents(fake) == []
    shown_ = await topup(api)
    assert (shown_["last_attempt"]["status"], shown_["enabled"]) == ("canceled", False)
    page = (await api.get("/billing")).text
    assert "Turn on automatic top-up" in page and "Your Visa •••• 4242 is charged" in page
    # On again with the same card: it charges again, the consent recorded anew.
    again = await turn_on(api, csrf)
    assert again.headers["location"] == "/billing#auto-top-up"
    assert (await topup(api))["state"] == "active"
    async with client_for(shop, await create_key(shop, "admin", "ops")) as admin:
        log = body(await admin.get("/v1/audit-log", params={"action": "auto_topup.consented"}))
    by_page = "customer on the billing page"
    assert [r["actor"] for r in log["data"]] == [by_page, f"{by_page} (checkout {session})"]


async def test_a_pack_rule_is_taken_from_the_form(api: httpx.AsyncClient) -> None:
    csrf = await signed_in(api, api, "ada")
    started = await turn_on(api, csrf, buy="pack", pack="1k", target_balance="")
    assert started.status_code == 303
    shown_ = await topup(api)
    assert (shown_["pack"], shown_["target_balance"]) == ("1k", None)
    page = (await api.get("/billing")).text
    assert "When your balance falls below 100 credits, buy a pack of 1,000 credits" in page


@pytest.mark.parametrize(
    ("form", "said"),
    [
        ({"threshold": "NaN"}, "Top up when below must be a decimal number"),
        ({"threshold": "-5"}, "Top up when below must not be negative"),
        ({"threshold": ""}, "Top up when below must be a decimal number"),
        ({"threshold": "1e3"}, "Top up when below must be a decimal number"),
        ({"monthly_cap": "9" * 30}, "At most a month is out of range"),
        ({"monthly_cap": "12.00001"}, "At most a month has more than 4 decimal places"),
        ({"monthly_cap": "0"}, "At most a month must be greater than zero"),
        ({"target_balance": "Infinity"}, "Bring the balance to must be a decimal number"),
        ({"target_balance": "50"}, "target_balance must be above threshold"),
        ({"buy": "pack", "pack": "5k"}, "5k"),
        ({"buy": "both"}, None),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_set(
    api: httpx.AsyncClient, fake: FakeStripe, form: dict[str, str], said: str | None
) -> None:
    csrf = await signed_in(api, api, "ada")
    refused = await turn_on(api, csrf, **form)
    assert refused.status_code == 422 and "text/html" in refused.headers["content-type"]
    if said is not None:
        assert said in refused.text
    assert (await api.get("/v1/accounts/ada/auto-topup")).status_code == 404
    assert not [r for r in fake.requests if r[1] == "/v1/checkout/sessions"]


FORMS = ["/billing/auto-top-up", "/billing/auto-top-up/off", "/billing/auto-top-up/card"]


@pytest.mark.parametrize("path", [*FORMS, "/billing/auto-top-up/confirm"])
async def test_a_form_without_its_csrf_token_is_refused(
    api: httpx.AsyncClient, shop: Ledger, fake: FakeStripe, path: str
) -> None:
    csrf = await signed_in(api, api, "ada")
    await save_card(api, fake, await turn_on(api, csrf))
    for token in ({}, {"csrf": "forged"}):
        refused = await api.post(path, data={**RULE, **token})
        assert refused.status_code == 403 and "<h1>Not allowed</h1>" in refused.text
    async with client_for(shop, "") as other:  # another browser, with bo's session
        await signed_in(other, api, "bo")
        stolen = await other.post(path, data={**RULE, "csrf": csrf})
    assert stolen.status_code == 403
    assert (await topup(api))["state"] == "active"
    assert len([r for r in fake.requests if r[1] == "/v1/checkout/sessions"]) == 1


async def test_another_account_s_session_reaches_only_its_own(
    api: httpx.AsyncClient, shop: Ledger, fake: FakeStripe
) -> None:
    csrf = await signed_in(api, api, "ada")
    await save_card(api, fake, await turn_on(api, csrf))
    await shop.grant("ada", 150 * CREDIT)
    fake.intent_outcomes = ["authentication_required"]
    await shop.charge("ada", 100 * CREDIT)
    assert await charge_pass(shop) == ["needs_action"]
    (intent,) = intents(fake)
    async with client_for(shop, "") as bo:
        bo_csrf = await signed_in(bo, api, "bo")
        assert "Automatic top-up" in (await bo.get("/billing")).text
        assert "Visa" not in (await bo.get("/billing")).text
        off = await bo.post("/billing/auto-top-up/off", data={"csrf": bo_csrf})
        assert off.status_code == 404  # bo has none: ada's is out of reach
        confirm = await bo.post("/billing/auto-top-up/confirm", data={"csrf": bo_csrf})
        assert confirm.status_code == 404
        back = await bo.get(f"/billing/auto-top-up/confirmed?payment_intent={intent}")
        assert back.status_code == 404
    assert (await topup(api))["state"] == "needs_action"
    assert not [r for r in fake.requests if r[1].endswith("/confirm")]


async def test_a_member_s_page_controls_nothing(
    api: httpx.AsyncClient, shop: Ledger, fake: FakeStripe
) -> None:
    csrf = await signed_in(api, api, "org")
    await save_card(api, fake, await turn_on(api, csrf))
    await put_member(shop, "org", "ada")
    async with client_for(shop, "") as member:
        made = await api.post(
            "/v1/portal-sessions",
            json={"account_id": "org", "member": "ada", "return_url": "https://app.example/"},
        )
        await member.get(body(made)["url"])
        page = (await member.get("/billing")).text
        assert "Automatic top-up" not in page and "auto-top-up" not in page
        member_csrf = csrf_of(page) if 'name="csrf"' in page else "none"
        for path in FORMS:
            refused = await member.post(path, data={**RULE, "csrf": member_csrf})
            assert refused.status_code in (403,), (path, refused.status_code)
    assert (await topup(api, "org"))["state"] == "active"


# -- what the section says ------------------------------------------------------------------

MONEY = Money(4)
NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)


def _topup(state: str = "active", **fields: Any) -> AutoTopup:
    card = Card(
        customer_id="cus_1", payment_method_id="pm_1", fingerprint="f", last4="4242", brand="visa"
    )
    rule = Rule(
        enabled=True,
        threshold=100 * CREDIT,
        target_balance=500 * CREDIT,
        pack=None,
        monthly_cap=5000 * CREDIT,
    )
    defaults: dict[str, Any] = {
        "account_id": "ada",
        "rule": rule,
        "state": state,
        "paused_reason": None,
        "consecutive_declines": 0,
        "next_attempt_at": None,
        "consent": Consent(card=card, by="x", at=NOW, rule={}),
        "last_attempt": None,
        "month_total": 450 * CREDIT,
    }
    return AutoTopup(**{**defaults, **fields})


def test_with_auto_top_up_on_the_page_says_how_long_without_it_and_when_the_card_pays() -> None:
    runway = at_burn(400 * CREDIT, 100 * CREDIT, NOW)  # 4 days; 3 until the threshold
    said = shown(_topup(), runway, MONEY, NOW)
    assert said.runway == "Without top-up: 4 days"
    assert said.charge_at == NOW + timedelta(days=3)
    assert said.headline == "On" and said.card == "Visa •••• 4242"
    assert said.month == "450 of 5,000 credits bought this month"
    below = shown(_topup(), at_burn(50 * CREDIT, 100 * CREDIT, NOW), MONEY, NOW)
    assert (below.runway, below.charge_at, below.charge_now) == (
        "Without top-up: less than a day",
        None,
        True,
    )


def test_without_enough_history_the_page_says_so() -> None:
    soon = Runway(400 * CREDIT, None, None, None, "too_little_history")
    assert shown(_topup(), soon, MONEY, NOW).runway == TOO_SOON
    idle = at_burn(400 * CREDIT, 0, NOW)
    assert shown(_topup(), idle, MONEY, NOW).runway == NO_BURN
    assert shown(_topup("off"), at_burn(400 * CREDIT, 100 * CREDIT, NOW), MONEY, NOW).runway is None


def test_a_pause_says_why_and_needs_action_names_the_payment() -> None:
    runway = at_burn(400 * CREDIT, 100 * CREDIT, NOW)
    paused = shown(
        _topup("paused", paused_reason="card declined 4 times in a row"), runway, MONEY, NOW
    )
    assert paused.headline == "Paused: card declined 4 times in a row"
    assert (paused.runway, paused.charge_at) == ("Without top-up: 4 days", None)
    last = Attempt(
        id="atu_1",
        status="needs_action",
        credits=450 * CREDIT,
        payment_intent_id="pi_1",
        decline_code=None,
        created_at=NOW,
        updated_at=NOW,
    )
    waiting = shown(_topup("needs_action", last_attempt=last), runway, MONEY, NOW)
    assert waiting.confirm_credits == Decimal(450)
    assert waiting.last == "450 credits, waiting for you to confirm it with your bank"


# -- confirming a payment the bank wants authenticated --------------------------------------


async def bank_wants_the_customer(api: httpx.AsyncClient, shop: Ledger, fake: FakeStripe) -> str:
    """Auto top-up on, and its payment waiting for the customer; the PaymentIntent."""
    csrf = await signed_in(api, api, "ada")
    await save_card(api, fake, await turn_on(api, csrf))
    await shop.grant("ada", 150 * CREDIT)
    fake.intent_outcomes = ["authentication_required"]
    await shop.charge("ada", 100 * CREDIT)
    assert await charge_pass(shop) == ["needs_action"]
    (intent,) = intents(fake)
    assert fake.objects[intent]["status"] == "requires_payment_method"  # as Stripe leaves it
    return intent


async def test_an_unfinished_check_changes_nothing_and_a_failed_one_is_a_decline(
    api: httpx.AsyncClient, shop: Ledger, fake: FakeStripe
) -> None:
    intent = await bank_wants_the_customer(api, shop, fake)
    back = f"/billing/auto-top-up/confirmed?payment_intent={intent}"
    untried = await api.get(back)  # before any check: the off-session error is no decline
    assert "The payment is not confirmed yet" in untried.text
    csrf = csrf_of((await api.get("/billing")).text)
    sent = await api.post("/billing/auto-top-up/confirm", data={"csrf": csrf})
    assert sent.status_code == 303
    assert sent.headers["location"].startswith(
        f"https://hooks.stripe.com/3d_secure_2/authenticate/{intent}/"
    )
    early = await api.get(back)  # came back without finishing the bank's check
    assert early.status_code == 200 and "The payment is not confirmed yet" in early.text
    assert (await topup(api))["state"] == "needs_action"
    returned = httpx.URL(fake.authenticate(intent, passed=False))
    assert returned.params["redirect_status"] == "failed"
    for _ in range(2):  # a reload counts it once
        failed = await api.get(returned.path, params=dict(returned.params))
        assert "Your bank did not confirm the payment" in failed.text
    shown_ = await topup(api)
    assert (shown_["state"], shown_["consecutive_declines"]) == ("active", 1)
    assert shown_["last_attempt"]["status"] == "declined"
    assert body(await api.get("/v1/accounts/ada"))["balance"] == 50
    assert "needs-action" not in (await api.get("/billing")).text


async def test_a_frictionless_confirmation_grants_at_once(
    api: httpx.AsyncClient, shop: Ledger, fake: FakeStripe
) -> None:
    await bank_wants_the_customer(api, shop, fake)
    fake.confirm_outcomes = ["succeeded"]
    csrf = csrf_of((await api.get("/billing")).text)
    sent = await api.post("/billing/auto-top-up/confirm", data={"csrf": csrf})
    assert sent.headers["location"].startswith("/billing/auto-top-up/confirmed?payment_intent=pi_")
    done = await api.get(sent.headers["location"])
    assert "Thank you: 450 credits added" in done.text
    assert body(await api.get("/v1/accounts/ada"))["balance"] == 500
    assert (await topup(api))["state"] == "active"
    again = await api.post("/billing/auto-top-up/confirm", data={"csrf": csrf})
    assert again.status_code == 404  # nothing is waiting any more


async def test_the_webhook_first_lifts_the_wait_too(
    api: httpx.AsyncClient, shop: Ledger, fake: FakeStripe
) -> None:
    intent = await bank_wants_the_customer(api, shop, fake)
    csrf = csrf_of((await api.get("/billing")).text)
    await api.post("/billing/auto-top-up/confirm", data={"csrf": csrf})
    fake.authenticate(intent)  # the customer's browser never comes back
    event = fake.event("payment_intent.succeeded", fake.objects[intent])
    assert (await deliver(api, event)).json()["outcome"] == "granted"
    assert (await topup(api))["state"] == "active"
    late = await api.get(f"/billing/auto-top-up/confirmed?payment_intent={intent}")
    assert "Thank you: 450 credits added" in late.text
    assert body(await api.get("/v1/accounts/ada"))["balance"] == 500
