"""Selling a credit pack: one Stripe customer per account, hosted or embedded Checkout."""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterator

import httpx
import pytest

from creditsd.inprocess import Ledger
from tests.conftest import LedgerFactory, body, client_for, create_key
from tests.stripe.conftest import PACKS, URLS, refusing_port, stripe_settings
from tests.stripe.fake import FakeStripe


async def test_hosted_and_embedded_sessions_share_one_customer_per_account(
    shop_api: httpx.AsyncClient, fake: FakeStripe
) -> None:
    hosted = await shop_api.post(
        "/v1/checkout-sessions", json={"account_id": "ada", "pack": "1k", **URLS}
    )
    assert hosted.status_code == 201
    session = body(hosted)
    assert session["url"].startswith("https://checkout.stripe.com/")
    assert (session["client_secret"], session["credits"], session["pack"]) == (None, 1000, "1k")
    assert session["publishable_key"] == "pk_test_creditsd"

    embedded = await shop_api.post(
        "/v1/checkout-sessions",
        json={
            "account_id": "ada",
            "pack": "100k",
            "success_url": "https://app.example/done?session={CHECKOUT_SESSION_ID}",
            "ui_mode": "embedded",
        },
    )
    assert embedded.status_code == 201
    assert body(embedded)["client_secret"].startswith(body(embedded)["id"])
    assert body(embedded)["url"] is None

    customers = [r for r in fake.requests if r[:2] == ("POST", "/v1/customers")]
    assert len(customers) == 1
    sessions = [r[2] for r in fake.requests if r[:2] == ("POST", "/v1/checkout/sessions")]
    assert [s["line_items"][0]["price"] for s in sessions] == ["price_1k", "price_100k"]
    assert {s["customer"] for s in sessions} == {fake.objects[body(hosted)["id"]]["customer"]}
    assert all(s["client_reference_id"] == "ada" for s in sessions)


async def test_the_same_idempotency_key_gives_the_same_session(
    shop_api: httpx.AsyncClient,
) -> None:
    request = {"account_id": "bo", "pack": "10k", **URLS}
    first = await shop_api.post(
        "/v1/checkout-sessions", json=request, headers={"Idempotency-Key": "buy-1"}
    )
    again = await shop_api.post(
        "/v1/checkout-sessions", json=request, headers={"Idempotency-Key": "buy-1"}
    )
    assert body(first)["id"] == body(again)["id"]


@pytest.mark.parametrize(
    ("request_body", "code"),
    [
        ({"account_id": "cy", "pack": "5k", **URLS}, "unknown_pack"),
        (
            {"account_id": "cy", "pack": "1k", "success_url": "https://a.example"},
            "validation_error",
        ),
        ({"account_id": "cy", "pack": "1k", **URLS, "amount": 1}, "validation_error"),
        ({"account_id": "cy", "pack": "1k", **URLS, "ui_mode": "popup"}, "validation_error"),
        (
            {"account_id": "cy", "pack": "1k", "success_url": "javascript:1", "cancel_url": "x"},
            "validation_error",
        ),
        ({"account_id": "cy", "pack": 1, **URLS}, "validation_error"),
    ],
)
async def test_bad_checkout_requests_are_refused_before_stripe_hears_of_them(
    shop_api: httpx.AsyncClient, fake: FakeStripe, request_body: dict[str, object], code: str
) -> None:
    response = await shop_api.post("/v1/checkout-sessions", json=request_body)
    assert response.status_code == 422
    assert body(response)["error"]["code"] == code
    if code == "unknown_pack":
        assert body(response)["error"]["known"] == ["100k", "10k", "1k"]
    assert not [r for r in fake.requests if r[1] == "/v1/checkout/sessions"]


@pytest.mark.parametrize(
    ("status", "code"), [("frozen", "account_frozen"), ("closed", "account_closed")]
)
async def test_an_account_that_cannot_spend_buys_nothing(
    shop: Ledger, shop_api: httpx.AsyncClient, fake: FakeStripe, status: str, code: str
) -> None:
    await shop.grant("ada", 1)
    await shop.set_status("ada", status, reason="test")
    response = await shop_api.post(
        "/v1/checkout-sessions", json={"account_id": "ada", "pack": "1k", **URLS}
    )
    assert (response.status_code, body(response)["error"]["code"]) == (409, code)
    assert not [r for r in fake.requests if r[1] in {"/v1/checkout/sessions", "/v1/customers"}]


async def test_packs_are_listed_for_a_read_key_and_checkout_needs_an_app_key(
    shop: Ledger,
) -> None:
    async with client_for(shop, await create_key(shop, "read", "page")) as reader:
        packs = body(await reader.get("/v1/packs"))["data"]
        assert [(p["name"], p["credits"], p["label"]) for p in packs] == [
            ("100k", 100_000, None),
            ("10k", 10_000, None),
            ("1k", 1_000, "Starter"),
        ]
        refused = await reader.post(
            "/v1/checkout-sessions", json={"account_id": "di", "pack": "1k", **URLS}
        )
        assert refused.status_code == 403


async def test_stripe_refusing_answers_502_without_its_internals(
    make_ledger: LedgerFactory, fake: FakeStripe, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = await make_ledger(
        stripe=stripe_settings(fake),
        packs={**PACKS, "gone": {"credits": 5, "price_id": "price_gone"}},
    )
    async with client_for(ledger, await create_key(ledger, "app", "web")) as api:
        with caplog.at_level(logging.WARNING, "creditsd.stripe"):
            response = await api.post(
                "/v1/checkout-sessions", json={"account_id": "ed", "pack": "gone", **URLS}
            )
    assert response.status_code == 502
    assert body(response)["error"]["code"] == "payment_provider_error"
    assert "price_gone" not in response.text and fake.api_key not in response.text
    (said,) = [r.getMessage() for r in caplog.records if r.name == "creditsd.stripe"]
    assert re.fullmatch(
        r"Stripe refused the request: resource_missing \(HTTP 400, request req_\w+\)", said
    )


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local port that accepts connections and never answers."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        yield listening.getsockname()[1]


@pytest.mark.parametrize("answer", ["refused", "silent"])
async def test_stripe_out_of_reach_answers_503_with_when_to_try_again(
    make_ledger: LedgerFactory,
    fake: FakeStripe,
    silent_port: int,
    caplog: pytest.LogCaptureFixture,
    answer: str,
) -> None:
    port = refusing_port() if answer == "refused" else silent_port
    where = {"api_base": f"http://127.0.0.1:{port}", "timeout_seconds": 0.2}
    ledger = await make_ledger(stripe=stripe_settings(fake, **where), packs=PACKS)
    async with client_for(ledger, await create_key(ledger, "app", "web")) as api:
        with caplog.at_level(logging.WARNING, "creditsd.stripe"):
            response = await api.post(
                "/v1/checkout-sessions", json={"account_id": "ed", "pack": "1k", **URLS}
            )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "60"
    error = body(response)["error"]
    assert (error["code"], error["retry_after"]) == ("payment_provider_error", 60)
    assert error["message"] == "Stripe could not be reached: nothing was charged; try again shortly"
    cause = "connection refused" if answer == "refused" else "timed out"
    said = [r.getMessage() for r in caplog.records if r.name == "creditsd.stripe"]
    assert said == [f"Stripe could not be reached: {cause} (127.0.0.1)"]
    assert fake.api_key not in caplog.text


async def test_checkout_without_a_secret_key_is_unavailable(
    make_ledger: LedgerFactory,
) -> None:
    ledger = await make_ledger(packs=PACKS)
    async with client_for(ledger, await create_key(ledger, "app", "web")) as api:
        response = await api.post(
            "/v1/checkout-sessions", json={"account_id": "fay", "pack": "1k", **URLS}
        )
    assert response.status_code == 503
    assert body(response)["error"]["code"] == "stripe_not_configured"
