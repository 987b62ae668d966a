"""The fake speaks Stripe's wire format: the official SDK, sync and async, works against it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import stripe
from stripe.params.checkout import SessionCreateParams

from tests.stripe.fake import FakeStripe, parse_form, sign

PRICES = {"price_small": 500, "price_large": 2000}
SECRET = "whsec_test_secret"


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe(prices=PRICES) as fake:
        yield fake


@pytest.fixture
def client(fake: FakeStripe) -> Iterator[stripe.StripeClient]:
    http = stripe.RequestsClient()
    yield stripe.StripeClient(fake.api_key, base_addresses={"api": fake.api_base}, http_client=http)
    http.close()  # type: ignore[no-untyped-call]


@pytest.fixture
async def aclient(fake: FakeStripe) -> AsyncIterator[stripe.StripeClient]:
    http = stripe.HTTPXClient()
    yield stripe.StripeClient(fake.api_key, base_addresses={"api": fake.api_base}, http_client=http)
    await http.close_async()  # type: ignore[no-untyped-call]


def session_params(customer: str | None = None) -> SessionCreateParams:
    params: SessionCreateParams = {
        "mode": "payment",
        "line_items": [
            {"price": "price_small", "quantity": 3},
            {"price": "price_large", "quantity": 1},
        ],
        "client_reference_id": "acct_42",
        "metadata": {"account_id": "acct_42", "credits": "3500"},
        "payment_intent_data": {"metadata": {"account_id": "acct_42"}},
        "success_url": "https://app.example/paid",
        "cancel_url": "https://app.example/cancelled",
    }
    if customer is not None:
        params["customer"] = customer
    return params


def test_parse_form_builds_nested_dicts_and_lists() -> None:
    body = (
        "mode=payment&line_items[0][price]=p1&line_items[0][quantity]=2&line_items[1][price]=p2"
        "&metadata[0]=zero&payment_intent_data[metadata][k]=v&expand[0]=a&expand[1]=b.c"
    )
    assert parse_form(body.replace("[", "%5B").replace("]", "%5D")) == {
        "mode": "payment",
        "line_items": [{"price": "p1", "quantity": "2"}, {"price": "p2"}],
        "metadata": {"0": "zero"},
        "payment_intent_data": {"metadata": {"k": "v"}},
        "expand": ["a", "b.c"],
    }


def test_customers_round_trip(fake: FakeStripe, client: stripe.StripeClient) -> None:
    created = client.v1.customers.create(
        {"email": "a@example.com", "name": "Ada", "metadata": {"account_id": "acct_42"}}
    )
    assert created.object == "customer"
    assert created.id.startswith("cus_")
    assert (created.email, created.name, created.livemode) == ("a@example.com", "Ada", False)
    assert created.to_dict()["metadata"] == {"account_id": "acct_42"}
    assert isinstance(created.created, int)
    fetched = client.v1.customers.retrieve(created.id)
    assert fetched.to_dict() == created.to_dict()
    method, path, params, key = fake.requests[0]
    assert (method, path) == ("POST", "/v1/customers")
    assert params["metadata"] == {"account_id": "acct_42"}
    assert key is not None  # the SDK sends one on every POST


def test_checkout_session_and_line_items(fake: FakeStripe, client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({"email": "a@example.com"})
    session = client.v1.checkout.sessions.create(session_params(customer.id))
    assert session.object == "checkout.session"
    assert session.id.startswith("cs_test_")
    assert (session.mode, session.status, session.payment_status) == ("payment", "open", "unpaid")
    assert (session.amount_total, session.amount_subtotal, session.currency) == (3500, 3500, "usd")
    assert (session.customer, session.client_reference_id) == (customer.id, "acct_42")
    assert session.to_dict()["metadata"] == {"account_id": "acct_42", "credits": "3500"}
    assert session.payment_intent is None
    assert session.ui_mode == "hosted_page"
    assert session.url == f"https://checkout.stripe.com/c/pay/{session.id}"
    assert session.client_secret is None
    assert fake.requests[-1][2]["line_items"] == [
        {"price": "price_small", "quantity": "3"},
        {"price": "price_large", "quantity": "1"},
    ]
    assert fake.requests[-1][2]["payment_intent_data"] == {"metadata": {"account_id": "acct_42"}}

    items = client.v1.checkout.sessions.line_items.list(session.id)
    assert items.to_dict()["object"] == "list"
    assert items.has_more is False
    assert items.url == f"/v1/checkout/sessions/{session.id}/line_items"
    first, second = items.data
    assert first.object == "item"
    assert first.id.startswith("li_")
    assert first.price is not None
    assert (first.price.id, first.price.unit_amount, first.price.type) == (
        "price_small",
        500,
        "one_time",
    )
    assert (first.quantity, first.amount_total, first.amount_subtotal) == (3, 1500, 1500)
    assert (second.quantity, second.amount_total, second.currency) == (1, 2000, "usd")
    page = client.v1.checkout.sessions.line_items.list(session.id, {"limit": 1})
    assert ([item.id for item in page.data], page.has_more) == ([first.id], True)

    assert client.v1.checkout.sessions.retrieve(session.id).to_dict() == session.to_dict()
    price = client.v1.prices.retrieve("price_large")
    assert (price.object, price.unit_amount, price.currency, price.active) == (
        "price",
        2000,
        "usd",
        True,
    )


async def test_async_client(fake: FakeStripe, aclient: stripe.StripeClient) -> None:
    customer = await aclient.v1.customers.create_async({"email": "b@example.com"})
    session = await aclient.v1.checkout.sessions.create_async(session_params(customer.id))
    items = await aclient.v1.checkout.sessions.line_items.list_async(session.id)
    assert [(item.price and item.price.id, item.quantity) for item in items.data] == [
        ("price_small", 3),
        ("price_large", 1),
    ]
    fake.complete_session(session.id)
    paid = await aclient.v1.checkout.sessions.retrieve_async(session.id)
    assert (paid.status, paid.payment_status) == ("complete", "paid")
    assert paid.payment_intent is not None
    intent = await aclient.v1.payment_intents.retrieve_async(str(paid.payment_intent))
    assert (intent.object, intent.status, intent.amount) == ("payment_intent", "succeeded", 3500)
    assert intent.to_dict()["metadata"] == {"account_id": "acct_42"}


async def test_idempotency_key_replays_the_first_response(
    fake: FakeStripe, aclient: stripe.StripeClient
) -> None:
    create = aclient.v1.customers.create_async
    racing = await asyncio.gather(
        *(create({"email": "c@example.com"}, {"idempotency_key": "cust-acct_42"}) for _ in range(5))
    )
    assert len({customer.id for customer in racing}) == 1
    assert len([o for o in fake.objects.values() if o["object"] == "customer"]) == 1
    replayed = [
        c.last_response and c.last_response.headers.get("Idempotent-Replayed") for c in racing
    ]
    assert sorted(replayed, key=str) == [None, "true", "true", "true", "true"]
    other = await create({"email": "c@example.com"}, {"idempotency_key": "cust-acct_43"})
    assert other.id != racing[0].id
    with pytest.raises(stripe.IdempotencyError):
        await create({"email": "d@example.com"}, {"idempotency_key": "cust-acct_42"})


def test_wrong_api_key_is_rejected(fake: FakeStripe) -> None:
    http = stripe.RequestsClient()
    bad = stripe.StripeClient(
        "sk_test_wrong", base_addresses={"api": fake.api_base}, http_client=http
    )
    with pytest.raises(stripe.AuthenticationError) as raised:
        bad.v1.customers.create({"email": "a@example.com"})
    http.close()  # type: ignore[no-untyped-call]
    assert raised.value.http_status == 401
    assert not [o for o in fake.objects.values() if o["object"] == "customer"]


def test_unknown_price_and_ids(client: stripe.StripeClient) -> None:
    params = session_params()
    params["line_items"] = [{"price": "price_nope", "quantity": 1}]
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.checkout.sessions.create(params)
    assert (raised.value.http_status, raised.value.code) == (400, "resource_missing")
    assert raised.value.param == "line_items[0][price]"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.customers.retrieve("cus_nope")
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")


def test_errors_on_the_wire(fake: FakeStripe) -> None:
    auth = {"Authorization": f"Bearer {fake.api_key}"}
    with httpx.Client(base_url=fake.api_base) as http:
        unknown = http.get("/v1/nope", headers=auth)
        unauthorized = http.get("/v1/customers/cus_1")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "invalid_request_error"
    assert unauthorized.status_code == 401
    assert set(unauthorized.json()["error"]) >= {"type", "message", "code"}


def test_embedded_sessions_carry_a_client_secret(client: stripe.StripeClient) -> None:
    session = client.v1.checkout.sessions.create(
        {
            "mode": "payment",
            "ui_mode": "embedded_page",
            "line_items": [{"price": "price_small", "quantity": 1}],
            "return_url": "https://app.example/return?session_id={CHECKOUT_SESSION_ID}",
        }
    )
    assert session.ui_mode == "embedded_page"
    assert session.url is None
    assert session.client_secret is not None
    assert session.client_secret.startswith(f"{session.id}_secret_")
    with pytest.raises(stripe.InvalidRequestError) as legacy:  # renamed in 2026-03-25.dahlia
        client.v1.checkout.sessions.create(
            {
                "mode": "payment",
                "ui_mode": "embedded",
                "line_items": [{"price": "price_small", "quantity": 1}],
                "return_url": "https://app.example/return",
            }
        )
    assert legacy.value.param == "ui_mode"


def test_payment_refund_and_dispute(fake: FakeStripe, client: stripe.StripeClient) -> None:
    session = client.v1.checkout.sessions.create(session_params())
    processing = fake.complete_session(session.id, paid=False)
    assert (processing["status"], processing["payment_status"]) == ("complete", "unpaid")
    intent = client.v1.payment_intents.retrieve(processing["payment_intent"])
    assert intent.status == "processing"
    assert fake.pay_async(session.id)["payment_status"] == "paid"

    intent = client.v1.payment_intents.retrieve(intent.id, {"expand": ["latest_charge"]})
    assert intent.status == "succeeded"
    assert isinstance(intent.latest_charge, stripe.Charge)
    charge_id = intent.latest_charge.id
    assert charge_id.startswith("ch_")
    assert (intent.latest_charge.paid, intent.latest_charge.amount) == (True, 3500)

    assert fake.refund(charge_id, 1000)["refunded"] is False
    refunded = fake.refund(charge_id, 2500)
    assert (refunded["amount_refunded"], refunded["refunded"]) == (3500, True)
    assert [r["amount"] for r in refunded["refunds"]["data"]] == [2500, 1000]
    charge = client.v1.charges.retrieve(charge_id)
    assert (charge.object, charge.amount_refunded, charge.refunded) == ("charge", 3500, True)
    assert "refunds" not in charge  # includable: only present when expanded
    charge = client.v1.charges.retrieve(charge_id, {"expand": ["refunds"]})
    assert charge.refunds is not None
    assert charge.refunds.data[0].id.startswith("re_")

    dispute = fake.dispute(charge_id)
    assert dispute["id"].startswith("dp_")
    assert (dispute["object"], dispute["status"], dispute["reason"]) == (
        "dispute",
        "needs_response",
        "fraudulent",
    )
    assert (dispute["charge"], dispute["payment_intent"], dispute["amount"]) == (
        charge_id,
        intent.id,
        3500,
    )
    assert fake.dispute(charge_id, 100)["amount"] == 100


def test_signed_events_verify_with_the_sdk(fake: FakeStripe, client: stripe.StripeClient) -> None:
    session = fake.complete_session(client.v1.checkout.sessions.create(session_params()).id)
    event = fake.event("checkout.session.completed", session)
    assert event["id"].startswith("evt_")
    assert (event["object"], event["api_version"]) == ("event", stripe.api_version)
    payload = json.dumps(event).encode()

    verified = stripe.Webhook.construct_event(payload, sign(payload, SECRET), SECRET)
    assert verified.type == "checkout.session.completed"
    assert verified.data.object["id"] == session["id"]
    assert verified.data.object["payment_status"] == "paid"
    assert client.v1.events.retrieve(event["id"]).type == "checkout.session.completed"

    tampered = payload.replace(b'"paid"', b'"unpaid"')
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(tampered, sign(payload, SECRET), SECRET)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, sign(payload, "whsec_other"), SECRET)
    with pytest.raises(stripe.SignatureVerificationError):  # outside the 5 minute tolerance
        stripe.Webhook.construct_event(payload, sign(payload, SECRET, timestamp=1), SECRET)


def test_an_intent_the_bank_wants_authenticated_is_confirmed_on_session(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    customer = client.v1.customers.create().id
    method = fake._new("payment_method", "pm_", type="card", customer=customer)["id"]
    fake.intent_outcomes = ["authentication_required"]
    params: Any = {
        "amount": 500,
        "currency": "usd",
        "customer": customer,
        "payment_method": method,
        "off_session": True,
        "confirm": True,
    }
    with pytest.raises(stripe.CardError) as refused:
        client.v1.payment_intents.create(params)
    assert refused.value.code == "authentication_required"
    intent = refused.value.error.payment_intent  # type: ignore[union-attr]
    assert intent is not None and intent.status == "requires_payment_method"
    back = "https://app.example/back?x=1"
    confirmed = client.v1.payment_intents.confirm(
        intent.id, {"payment_method": method, "return_url": back}
    )
    assert confirmed.status == "requires_action"
    action = confirmed.next_action
    assert action is not None and action.type == "redirect_to_url"
    redirect = action.redirect_to_url
    assert redirect is not None and redirect.return_url == back
    assert redirect.url is not None
    assert redirect.url.startswith(
        f"https://hooks.stripe.com/3d_secure_2/authenticate/{intent.id}/"
    )
    page = httpx.get(fake.bank_url(redirect.url))
    assert page.status_code == 200 and "Complete authentication" in page.text
    done = httpx.post(f"{fake.bank_url(redirect.url)}/complete", data={"result": "pass"})
    assert done.status_code == 302
    returned = httpx.URL(done.headers["location"])
    assert (returned.host, returned.params["x"]) == ("app.example", "1")
    assert returned.params["payment_intent"] == intent.id
    assert returned.params["redirect_status"] == "succeeded"
    assert returned.params["payment_intent_client_secret"] == intent.client_secret
    paid = client.v1.payment_intents.retrieve(intent.id)
    assert (paid.status, paid.amount_received, paid.next_action) == ("succeeded", 500, None)
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.payment_intents.confirm(intent.id, {"return_url": back})
    assert again.value.code == "payment_intent_unexpected_state"
    assert httpx.get(fake.bank_url(redirect.url)).status_code == 404  # the check is over


def test_a_decline_is_replayed_to_a_retry_with_the_same_key(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    """Stripe saves the first answer of a request that ran, declined or not: a retry with its
    key gets the same decline and makes no second PaymentIntent. A request refused before it
    ran (missing parameters, a rate limit) is not saved."""
    fake.intent_outcomes = ["declined:insufficient_funds", "succeeded"]
    params: Any = {"amount": 450, "currency": "usd", "customer": "cus_1"}
    params |= {"payment_method": "pm_1", "off_session": True, "confirm": True}
    missing: Any = {"amount": 450}
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.create(missing, {"idempotency_key": "k"})
    declines = []
    for _ in range(2):
        with pytest.raises(stripe.CardError) as declined:
            client.v1.payment_intents.create(params, {"idempotency_key": "k"})
        declines.append((declined.value.http_status, declined.value.json_body))
    assert declines[0] == declines[1]
    assert declines[0][0] == 402
    assert len([o for o in fake.objects.values() if o["object"] == "payment_intent"]) == 1
    assert fake.intent_outcomes == ["succeeded"]
