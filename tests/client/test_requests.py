"""What the SDK sends and how it reads the answers, checked on the wire with MockTransport."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest

from creditsd.client import (
    APIError,
    AsyncClient,
    Client,
    Limit,
    PaymentProviderError,
    Usage,
    ValidationError,
)
from tests.client.conftest import (
    BASE_URL,
    account_json,
    answer,
    audit_json,
    delivery_json,
    endpoint_json,
    error_json,
    hold_json,
    limit_json,
    member_json,
    transfer_json,
)


class Wire:
    """Answers every request with one canned answer and keeps what was sent."""

    def __init__(self, reply: httpx.Response) -> None:
        self.reply = reply
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.reply

    @property
    def last(self) -> httpx.Request:
        """The last request sent."""
        return self.requests[-1]

    def body(self) -> Any:
        """The last request's JSON body, fractions as Decimal."""
        return json.loads(self.last.content, parse_float=Decimal)


@pytest.fixture
def wire() -> Wire:
    """A wire answering with a charge unless a test says otherwise."""
    return Wire(answer(201, transfer_json()))


@pytest.fixture
def client(wire: Wire) -> Iterator[Client]:
    """A Client whose requests go to ``wire``."""
    with Client(
        BASE_URL, "cdk_test", transport=httpx.MockTransport(wire), app="chat-api/1.4"
    ) as sdk:
        yield sdk


USAGE: Usage = {
    "model": "claude-sonnet-4",
    "input_tokens": 1200,
    "output_tokens": 350,
    "cache_read_tokens": 800,
    "cache_write_tokens": 0,
    "reasoning_tokens": 64,
}


def test_an_amount_charge_is_sent_exactly_with_a_fresh_key(client: Client, wire: Wire) -> None:
    client.charge("user_2abc", Decimal("0.0001"), description="chat_message", metadata={"n": 1})
    request = wire.last
    assert (request.method, request.url.path) == ("POST", "/v1/charges")
    assert request.content == (
        b'{"account_id":"user_2abc","amount":0.0001,'
        b'"description":"chat_message","metadata":{"n":1}}'
    )
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == "Bearer cdk_test"
    assert request.headers["User-Agent"].startswith("creditsd-python/")
    assert request.headers["User-Agent"].endswith(" chat-api/1.4")
    key = request.headers["Idempotency-Key"]
    client.charge("user_2abc", 1)
    assert wire.last.headers["Idempotency-Key"] not in {key, ""}


def test_a_charge_by_feature_or_by_usage_sends_them_as_given(client: Client, wire: Wire) -> None:
    client.charge("u", feature="chat_message")
    assert wire.body() == {"account_id": "u", "feature": "chat_message"}
    client.charge("u", feature="image", quantity=3, idempotency_key="img-7")
    assert wire.body() == {"account_id": "u", "feature": "image", "quantity": 3}
    assert wire.last.headers["Idempotency-Key"] == "img-7"
    client.deduct("u", usage=USAGE, description="chat")
    assert wire.body() == {"account_id": "u", "usage": USAGE, "description": "chat"}


def test_holds_and_captures_take_the_same_pricing(wire: Wire, client: Client) -> None:
    wire.reply = answer(201, hold_json())
    hold = client.hold("u", feature="video_minute", quantity="2.5", expires_in=3600)
    assert wire.body() == {
        "account_id": "u",
        "feature": "video_minute",
        "quantity": Decimal("2.5"),
        "expires_in": 3600,
    }
    assert hold.expires_at == datetime(2026, 11, 22, 10, 15, tzinfo=UTC)

    captured = {"hold": hold_json(status="captured", held=0), "transfer": transfer_json()}
    wire.reply = answer(200, captured, **{"Idempotent-Replayed": "true"})
    capture = client.capture(hold.id, usage=USAGE)
    assert (wire.last.url.path, wire.body()) == (
        "/v1/holds/hold_1/capture",
        {"usage": USAGE, "final": True},
    )
    # A final capture without a caller's key is keyed by its hold on the server.
    assert "Idempotency-Key" not in wire.last.headers
    assert capture.transfer.replayed
    assert capture.hold.status == "captured"

    client.capture(hold.id, 5, final=False)
    assert wire.body() == {"amount": 5, "final": False}
    assert wire.last.headers["Idempotency-Key"].startswith("sdk_")

    wire.reply = answer(200, hold_json())
    client.extend(hold.id, 600)
    assert (wire.last.url.path, wire.body()) == ("/v1/holds/hold_1/extend", {"expires_in": 600})
    client.release(hold.id)
    assert (wire.last.url.path, wire.last.content) == ("/v1/holds/hold_1/release", b"")


def test_a_quote_prices_without_charging(client: Client, wire: Wire) -> None:
    wire.reply = answer(
        200,
        {
            "amount": Decimal("0.0123"),
            "breakdown": {
                "lines": [{"description": "1200 input tokens", "amount": Decimal("0.0036")}],
                "summary": "claude-sonnet-4: 1200 input tokens + …",
            },
            "catalog_version": 3,
        },
    )
    quote = client.quote(usage=USAGE)
    assert (wire.last.url.path, wire.body()) == ("/v1/quotes", {"usage": USAGE})
    assert "Idempotency-Key" not in wire.last.headers
    assert quote.amount == Decimal("0.0123")
    assert quote.breakdown["lines"][0]["amount"] == Decimal("0.0036")
    assert quote.breakdown["summary"].startswith("claude-sonnet-4")
    assert quote.catalog_version == 3
    client.quote(feature="chat_message", quantity=2)
    assert wire.body() == {"feature": "chat_message", "quantity": 2}


async def test_usage_events_go_as_one_batch_and_answer_one_result_each(wire: Wire) -> None:
    wire.reply = answer(
        200,
        {
            "results": [
                {"id": "ev_1", "status": "charged", "transfer_id": "tr_9", "error": None},
                {
                    "id": "ev_2",
                    "status": "insufficient_credits",
                    "transfer_id": None,
                    "error": {"code": "insufficient_credits", "message": "insufficient credits"},
                },
            ]
        },
    )
    events: list[dict[str, Any]] = [
        {"id": "ev_1", "account_id": "u", "usage": USAGE},
        {"id": "ev_2", "account_id": "v", "feature": "chat_message"},
    ]
    async with AsyncClient(BASE_URL, "cdk_test", transport=httpx.MockTransport(wire)) as sdk:
        results = await sdk.send_usage(events)
    assert (wire.last.url.path, wire.body()) == ("/v1/usage", {"events": events})
    assert [(r.id, r.status, r.transfer_id) for r in results] == [
        ("ev_1", "charged", "tr_9"),
        ("ev_2", "insufficient_credits", None),
    ]
    assert results[1].error is not None
    assert results[1].error["code"] == "insufficient_credits"


def test_a_member_is_sent_only_when_named(client: Client, wire: Wire) -> None:
    charged = client.deduct("org:acme", 5)
    assert wire.body() == {"account_id": "org:acme", "amount": 5}
    assert charged.member is None
    wire.reply = answer(201, transfer_json(member="ada"))
    charged = client.charge("org:acme", 5, member="ada")
    assert wire.body() == {"account_id": "org:acme", "amount": 5, "member": "ada"}
    assert charged.member == "ada"
    wire.reply = answer(201, hold_json(member="ada"))
    hold = client.hold("org:acme", feature="image", member="ada", expires_in=60)
    assert wire.body() == {
        "account_id": "org:acme",
        "feature": "image",
        "member": "ada",
        "expires_in": 60,
    }
    assert hold.member == "ada"


def test_members_are_put_listed_and_removed(client: Client, wire: Wire) -> None:
    wire.reply = answer(200, member_json())
    member = client.put_member(
        "org:acme",
        "ada/1",
        display_name="Ada",
        limits=[Limit(Decimal("0.5"), "day"), Limit("10", "month", mode="soft")],
    )
    assert (wire.last.method, wire.last.url.raw_path) == (
        "PUT",
        b"/v1/accounts/org%3Aacme/members/ada%2F1",
    )
    assert wire.last.content == (
        b'{"display_name":"Ada","limits":[{"amount":0.5,"period":"day","mode":"hard"},'
        b'{"amount":10,"period":"month","mode":"soft"}]}'
    )
    (day,) = member.limits
    assert (day.scope, day.subject, day.amount, day.spent) == (
        "member",
        "ada",
        Decimal(1000),
        Decimal(600),
    )
    assert (day.held, day.remaining) == (Decimal("50.5"), Decimal("349.5"))
    assert day.resets_at == datetime(2026, 12, 8, tzinfo=UTC)
    client.put_member("org:acme", "ada")
    assert wire.body() == {}  # its name and limits stay as they are
    client.put_member("org:acme", "ada", limits=[])
    assert wire.body() == {"limits": []}  # every limit removed

    client.remove_member("org:acme", "ada")
    assert (wire.last.method, wire.last.url.path) == ("DELETE", "/v1/accounts/org:acme/members/ada")

    wire.reply = answer(200, {"data": [member_json()], "next_cursor": "c2"})
    page = client.list_members("org:acme")
    assert (wire.last.url.path, dict(wire.last.url.params)) == (
        "/v1/accounts/org:acme/members",
        {"limit": "50"},
    )
    assert ([m.member_id for m in page.data], page.next_cursor) == (["ada"], "c2")
    client.list_members("org:acme", limit=10, cursor="c2")
    assert dict(wire.last.url.params) == {"limit": "10", "cursor": "c2"}


def test_each_subject_s_limits_are_put_whole(client: Client, wire: Wire) -> None:
    lifetime = limit_json(scope="key", subject="pxk_1", period="lifetime", resets_at=None)
    wire.reply = answer(200, {"data": [limit_json(), lifetime]})
    listed = client.list_limits("org:acme")
    assert (wire.last.method, wire.last.url.path) == ("GET", "/v1/accounts/org:acme/limits")
    assert [(s.scope, s.resets_at is None) for s in listed] == [("member", False), ("key", True)]
    week = [Limit(100, "week")]
    assert client.set_wallet_limits("org:acme", week) == listed
    assert client.set_app_limits("org:acme", "chat", week) == listed
    assert client.set_proxy_key_limits("pxk_1", week) == listed
    sent = {"limits": [{"amount": 100, "period": "week", "mode": "hard"}]}
    assert [(r.method, r.url.path, json.loads(r.content)) for r in wire.requests[1:]] == [
        ("PUT", "/v1/accounts/org:acme/limits", sent),
        ("PUT", "/v1/accounts/org:acme/apps/chat/limits", sent),
        ("PUT", "/v1/proxy-keys/pxk_1/limits", sent),
    ]


@pytest.mark.parametrize(
    "limits",
    [Limit(100, "day"), {"amount": 100, "period": "day"}, [{"amount": 100, "period": "day"}]],
)
def test_limits_are_a_list_of_limit(client: Client, wire: Wire, limits: Any) -> None:
    with pytest.raises(TypeError, match="Limit"):
        client.set_wallet_limits("org:acme", limits)
    assert wire.requests == []


def test_a_grant_sends_its_lot_options_only_when_set(client: Client, wire: Wire) -> None:
    client.grant("u", 100)
    assert wire.body() == {"account_id": "u", "amount": 100}
    paris = timezone(timedelta(hours=1))
    client.add(
        "u",
        "2.5",
        source="adjustment",
        expires_at=datetime(2027, 1, 31, 23, 59, 59, tzinfo=paris),
        priority=0,
        reason="outage",
    )
    assert (wire.last.url.path, wire.last.content) == (
        "/v1/grants",
        b'{"account_id":"u","amount":2.5,"source":"adjustment",'
        b'"expires_at":"2027-01-31T23:59:59+01:00","priority":0,"reason":"outage"}',
    )
    assert wire.last.headers["Idempotency-Key"].startswith("sdk_")


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"expires_at": datetime(2027, 1, 1)}, ValueError, "timezone-aware"),
        ({"expires_at": "2027-01-01T00:00:00Z"}, TypeError, "is a datetime"),
        ({"priority": True}, TypeError, "whole number"),
        ({"priority": "5"}, TypeError, "whole number"),
        ({"source": 1}, TypeError, "promotion"),
    ],
)
def test_grant_options_are_checked_before_anything_is_sent(
    client: Client, wire: Wire, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        client.grant("u", 5, **options)
    assert wire.requests == []


def test_a_transfer_names_the_lots_it_spent(client: Client, wire: Wire) -> None:
    lots = [
        {
            "lot_id": "lot_1",
            "source": "promotion",
            "amount": Decimal("2.5"),
            "expires_at": "2026-12-01T00:00:00Z",
        },
        {"lot_id": "lot_2", "source": "purchase", "amount": 8, "expires_at": None},
    ]
    wire.reply = answer(201, transfer_json(lots=lots, paid=8, free=Decimal("2.5")))
    transfer = client.charge("u", "10.5")
    first, second = transfer.lots
    assert (first.lot_id, first.source, first.amount) == ("lot_1", "promotion", Decimal("2.5"))
    assert first.expires_at == datetime(2026, 12, 1, tzinfo=UTC)
    assert (second.source, second.amount, second.expires_at) == ("purchase", Decimal(8), None)
    assert type(second.amount) is Decimal
    assert (transfer.paid, transfer.free) == (Decimal(8), Decimal("2.5"))
    assert type(transfer.paid) is Decimal
    assert second.raw["lot_id"] == "lot_2"


def test_an_account_splits_its_balance_by_source(client: Client, wire: Wire) -> None:
    split = {"purchase": Decimal("90.5"), "signup": 10, "overdrawn": 0}
    wire.reply = answer(200, account_json(balance=Decimal("100.5"), balance_by_source=split))
    account = client.get_account("u")
    assert account.status == "active"
    assert account.balance_by_source == {
        "purchase": Decimal("90.5"),
        "signup": Decimal(10),
        "overdrawn": Decimal(0),
    }
    assert all(type(value) is Decimal for value in account.balance_by_source.values())
    wire.reply = answer(200, account_json(status="frozen"))
    assert client.get_account("u").status == "frozen"


def test_the_packs_on_sale_are_a_read(client: Client, wire: Wire) -> None:
    wire.reply = answer(
        200,
        {
            "data": [
                {"name": "1k", "credits": 1000, "label": "Starter", "display_price": "$10"},
                {"name": "half", "credits": Decimal("0.5"), "label": None, "display_price": None},
            ]
        },
    )
    packs = client.list_packs()
    assert (wire.last.method, wire.last.url.path) == ("GET", "/v1/packs")
    assert "Idempotency-Key" not in wire.last.headers
    assert [(p.name, p.credits, p.label, p.display_price) for p in packs] == [
        ("1k", Decimal(1000), "Starter", "$10"),
        ("half", Decimal("0.5"), None, None),
    ]
    assert type(packs[0].credits) is Decimal


def checkout_json(**fields: Any) -> dict[str, Any]:
    """A hosted Checkout Session as the server writes it."""
    return {
        "id": "cs_test_1",
        "account_id": "user_2abc",
        "pack": "10k",
        "credits": 10000,
        "ui_mode": "hosted",
        "url": "https://checkout.stripe.com/c/pay/cs_test_1",
        "client_secret": None,
        "publishable_key": "pk_test_1",
        **fields,
    }


def test_a_checkout_session_is_a_keyed_write(client: Client, wire: Wire) -> None:
    wire.reply = answer(201, checkout_json())
    session = client.create_checkout_session(
        "user_2abc",
        "10k",
        success_url="https://app.test/paid?session={CHECKOUT_SESSION_ID}",
        cancel_url="https://app.test/pricing",
        idempotency_key="buy-10k-1",
    )
    request = wire.last
    assert (request.method, request.url.path) == ("POST", "/v1/checkout-sessions")
    assert request.content == (
        b'{"account_id":"user_2abc","pack":"10k",'
        b'"success_url":"https://app.test/paid?session={CHECKOUT_SESSION_ID}",'
        b'"cancel_url":"https://app.test/pricing","ui_mode":"hosted"}'
    )
    assert request.headers["Idempotency-Key"] == "buy-10k-1"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == "Bearer cdk_test"
    assert (session.id, session.account_id, session.pack) == ("cs_test_1", "user_2abc", "10k")
    assert (session.credits, type(session.credits)) == (Decimal(10000), Decimal)
    assert (session.ui_mode, session.url) == (
        "hosted",
        "https://checkout.stripe.com/c/pay/cs_test_1",
    )
    assert (session.client_secret, session.publishable_key) == (None, "pk_test_1")

    wire.reply = answer(
        201,
        checkout_json(ui_mode="embedded", url=None, client_secret="cs_test_1_secret_x"),
    )
    embedded = client.create_checkout_session(
        "user_2abc", "10k", success_url="https://app.test/return", ui_mode="embedded"
    )
    assert wire.body() == {
        "account_id": "user_2abc",
        "pack": "10k",
        "success_url": "https://app.test/return",
        "ui_mode": "embedded",
    }
    assert wire.last.headers["Idempotency-Key"].startswith("sdk_")
    assert (embedded.url, embedded.client_secret) == (None, "cs_test_1_secret_x")


def test_a_portal_session_is_asked_for_without_a_key(client: Client, wire: Wire) -> None:
    wire.reply = answer(
        201,
        {"url": f"{BASE_URL}/billing/open?token=t.s", "expires_at": "2026-12-01T10:05:00Z"},
    )
    link = client.create_portal_session("user_2abc", "https://app.test/settings")
    assert (wire.last.method, wire.last.url.path) == ("POST", "/v1/portal-sessions")
    assert wire.body() == {"account_id": "user_2abc", "return_url": "https://app.test/settings"}
    assert "Idempotency-Key" not in wire.last.headers
    assert link.url == f"{BASE_URL}/billing/open?token=t.s"
    assert link.expires_at == datetime(2026, 12, 1, 10, 5, tzinfo=UTC)
    client.create_portal_session("org:acme", "https://app.test/team", member="ada")
    assert wire.body() == {
        "account_id": "org:acme",
        "return_url": "https://app.test/team",
        "member": "ada",
    }


def test_a_checkout_session_is_checked_before_anything_is_sent(client: Client, wire: Wire) -> None:
    with pytest.raises(TypeError, match="cancel_url is required"):
        client.create_checkout_session("u", "10k", success_url="https://app.test/ok")
    with pytest.raises(ValueError, match="'hosted' or 'embedded'"):
        client.create_checkout_session(
            "u", "10k", success_url="https://app.test/ok", ui_mode="popup"
        )
    assert wire.requests == []


def test_checkout_errors_arrive_as_their_exception_classes(wire: Wire) -> None:
    with Client(BASE_URL, "cdk_test", transport=httpx.MockTransport(wire), backoff=0) as sdk:
        wire.reply = answer(
            422,
            error_json("unknown_pack", "there is no credit pack 'huge'", pack="huge", known=["1k"]),
        )
        with pytest.raises(ValidationError) as unknown:
            sdk.create_checkout_session(
                "u", "huge", success_url="https://app.test/ok", ui_mode="embedded"
            )
        assert (unknown.value.status, unknown.value.code) == (422, "unknown_pack")
        assert unknown.value.details == {"pack": "huge", "known": ["1k"]}
        assert len(wire.requests) == 1

        wire.reply = answer(
            502,
            error_json(
                "payment_provider_error",
                "Stripe could not complete the request",
                stripe_request_id="req_abc",
            ),
        )
        with pytest.raises(PaymentProviderError) as failed:
            sdk.create_checkout_session(
                "u",
                "1k",
                success_url="https://app.test/ok",
                ui_mode="embedded",
                idempotency_key="buy-1",
            )
        assert (failed.value.status, failed.value.code) == (502, "payment_provider_error")
        assert failed.value.stripe_request_id == "req_abc"
        assert failed.value.idempotency_key == "buy-1"
        # A 5xx is retried (twice by default), always with the same key.
        retried = wire.requests[1:]
        assert [request.headers["Idempotency-Key"] for request in retried] == ["buy-1"] * 3


def test_initialize_account_sends_only_what_is_set(client: Client, wire: Wire) -> None:
    wire.reply = answer(200, account_json(id="org:acme"))
    client.initialize_account("org:acme")
    assert (wire.last.method, wire.last.url.raw_path) == ("PUT", b"/v1/accounts/org%3Aacme")
    assert wire.last.content == b""
    client.initialize_account("org:acme", overdraft_limit=0, aliases=("123",))
    assert wire.body() == {"overdraft_limit": 0, "aliases": ["123"]}
    with pytest.raises(TypeError, match="list of account ids"):
        client.initialize_account("org:acme", aliases="123")


def test_initialize_account_sets_status_and_low_balance_threshold(
    client: Client, wire: Wire
) -> None:
    wire.reply = answer(200, account_json(status="frozen", low_balance_threshold=Decimal("12.5")))
    account = client.initialize_account("u", status="frozen", low_balance_threshold="12.5")
    assert wire.last.content == b'{"status":"frozen","low_balance_threshold":12.5}'
    assert (account.status, account.low_balance_threshold) == ("frozen", Decimal("12.5"))
    assert type(account.low_balance_threshold) is Decimal
    client.initialize_account("u", low_balance_threshold=0)  # 0: never for this account
    assert wire.body() == {"low_balance_threshold": 0}
    with pytest.raises(TypeError, match="'active', 'frozen' or 'closed'"):
        client.initialize_account("u", status=True)  # type: ignore[arg-type]
    assert len(wire.requests) == 2


def test_an_account_without_its_own_threshold_reads_none(client: Client, wire: Wire) -> None:
    wire.reply = answer(200, account_json(low_balance_threshold=None))
    assert client.get_account("u").low_balance_threshold is None
    wire.reply = answer(200, account_json())  # an older server does not send it
    assert client.get_account("u").low_balance_threshold is None


def test_a_webhook_endpoint_is_created_under_a_key_and_its_secret_read(
    client: Client, wire: Wire
) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    wire.reply = answer(201, endpoint_json(secret=secret, description="billing service"))
    created = client.create_webhook_endpoint(
        "https://app.example/hooks",
        ("charge.succeeded", "balance.low"),
        description="billing service",
    )
    request = wire.last
    assert (request.method, request.url.path) == ("POST", "/v1/webhook-endpoints")
    assert request.content == (
        b'{"url":"https://app.example/hooks","events":["charge.succeeded","balance.low"],'
        b'"description":"billing service"}'
    )
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"]  # a retry answers the same endpoint
    assert (created.id, created.url, created.secret) == (
        "we_1",
        "https://app.example/hooks",
        secret,
    )
    assert created.events == ("balance.low", "charge.succeeded")
    assert (created.description, created.disabled_at) == ("billing service", None)
    assert created.created_at == datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

    client.create_webhook_endpoint(
        "https://app.example/low", ["balance.low"], idempotency_key="hooks-1"
    )
    assert wire.body() == {"url": "https://app.example/low", "events": ["balance.low"]}
    assert wire.last.headers["Idempotency-Key"] == "hooks-1"
    with pytest.raises(TypeError, match="list of event types"):
        client.create_webhook_endpoint("https://app.example/hooks", "balance.low")
    assert len(wire.requests) == 2


def test_webhook_endpoints_are_listed_and_disabled(client: Client, wire: Wire) -> None:
    off = endpoint_json(id="we_2", events=["hold.expired"], disabled_at="2026-11-23T08:00:00Z")
    wire.reply = answer(200, {"data": [endpoint_json(), off]})
    endpoints = client.list_webhook_endpoints()
    assert (wire.last.method, wire.last.url.path) == ("GET", "/v1/webhook-endpoints")
    assert "Idempotency-Key" not in wire.last.headers
    assert [(e.id, e.events, e.disabled_at) for e in endpoints] == [
        ("we_1", ("balance.low", "charge.succeeded"), None),
        ("we_2", ("hold.expired",), datetime(2026, 11, 23, 8, 0, tzinfo=UTC)),
    ]
    assert endpoints[0].secret == "whsec_…Zx9Q"

    wire.reply = answer(200, off)
    disabled = client.disable_webhook_endpoint("we_2")
    assert (wire.last.method, wire.last.url.path, wire.last.content) == (
        "DELETE",
        "/v1/webhook-endpoints/we_2",
        b"",
    )
    assert disabled.disabled_at is not None
    client.disable_webhook_endpoint("we/../x")
    assert wire.last.url.raw_path == b"/v1/webhook-endpoints/we%2F..%2Fx"


def test_webhook_deliveries_are_a_filtered_page(client: Client, wire: Wire) -> None:
    delivered = delivery_json(
        id=6,
        event_type="charge.succeeded",
        status="delivered",
        attempts=3,
        last_error="HTTP 503",
        delivered_at="2026-11-22T10:00:09.5Z",
        payload={"type": "charge.succeeded", "data": {"transfer": transfer_json()}},
    )
    wire.reply = answer(200, {"data": [delivery_json(), delivered], "next_cursor": "c2"})
    page = client.list_webhook_deliveries()
    assert (wire.last.method, wire.last.url.path) == ("GET", "/v1/webhook-deliveries")
    assert dict(wire.last.url.params) == {"limit": "50"}
    pending, done = page.data
    assert page.next_cursor == "c2"
    assert (pending.id, pending.destination, pending.message_id) == (7, "we_1", "msg_1")
    assert (pending.event_type, pending.account_id, pending.status) == (
        "balance.low",
        "u",
        "pending",
    )
    assert (pending.attempts, pending.last_error, pending.delivered_at) == (0, None, None)
    assert pending.next_attempt_at == datetime(2026, 11, 22, 10, 0, 5, tzinfo=UTC)
    assert pending.payload["data"]["threshold"] == 50
    assert (done.status, done.attempts, done.last_error) == ("delivered", 3, "HTTP 503")
    assert done.delivered_at == datetime(2026, 11, 22, 10, 0, 9, 500000, tzinfo=UTC)
    assert done.payload["data"]["transfer"]["amount"] == 10
    assert done.raw["id"] == 6

    wire.reply = answer(200, {"data": [], "next_cursor": None})
    last = client.list_webhook_deliveries(
        destination="gateway", status="dead", limit=10, cursor="c2"
    )
    assert dict(wire.last.url.params) == {
        "limit": "10",
        "destination": "gateway",
        "status": "dead",
        "cursor": "c2",
    }
    assert (last.data, last.next_cursor) == ((), None)


def test_a_delivery_is_retried_by_its_number(client: Client, wire: Wire) -> None:
    wire.reply = answer(200, delivery_json(id=12, status="pending", attempts=5))
    retried = client.retry_webhook_delivery(12)
    assert (wire.last.method, wire.last.url.path, wire.last.content) == (
        "POST",
        "/v1/webhook-deliveries/12/retry",
        b"",
    )
    assert (retried.id, retried.status, retried.attempts) == (12, "pending", 5)
    for wrong in ("12", True, 12.0):
        with pytest.raises(TypeError, match="whole-number id"):
            client.retry_webhook_delivery(wrong)  # type: ignore[arg-type]
    assert len(wire.requests) == 1


def test_the_audit_log_is_a_filtered_page(client: Client, wire: Wire) -> None:
    frozen = audit_json(id=41, action="account.frozen", before={"status": "active"}, after=None)
    wire.reply = answer(200, {"data": [audit_json(), frozen], "next_cursor": "NDE"})
    page = client.list_audit_records()
    assert (wire.last.method, wire.last.url.path) == ("GET", "/v1/audit-log")
    assert dict(wire.last.url.params) == {"limit": "50"}
    granted, froze = page.data
    assert page.next_cursor == "NDE"
    assert (granted.id, granted.actor, granted.action, granted.target) == (
        42,
        "key:key_1:billing",
        "grant",
        "u",
    )
    assert (granted.before, granted.after) == (
        {"balance": 0},
        {"balance": 1000000, "transfer_id": "tr_1"},
    )
    assert granted.created_at == datetime(2026, 11, 22, 10, tzinfo=UTC)
    assert (froze.before, froze.after, froze.raw["id"]) == ({"status": "active"}, None, 41)

    wire.reply = answer(200, {"data": [], "next_cursor": None})
    since = datetime(2026, 11, 1, tzinfo=UTC)
    until = datetime(2026, 12, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    last = client.list_audit_records(
        target="u",
        actor="cli:ops",
        action="grant",
        since=since,
        until=until,
        limit=10,
        cursor="NDE",
    )
    assert dict(wire.last.url.params) == {
        "limit": "10",
        "target": "u",
        "actor": "cli:ops",
        "action": "grant",
        "since": "2026-11-01T00:00:00+00:00",
        "until": "2026-12-01T01:00:00+01:00",
        "cursor": "NDE",
    }
    assert (last.data, last.next_cursor) == ((), None)
    with pytest.raises(ValueError, match="timezone-aware"):
        client.list_audit_records(since=datetime(2026, 11, 1))
    assert len(wire.requests) == 2


def test_a_delivery_the_sdk_cannot_read_is_an_api_error(client: Client, wire: Wire) -> None:
    wire.reply = answer(200, {"data": [delivery_json(id="7")], "next_cursor": None})
    with pytest.raises(APIError) as unreadable:
        client.list_webhook_deliveries()
    assert unreadable.value.code == "invalid_response"


@pytest.mark.parametrize(
    "call",
    [
        lambda sdk: sdk.charge("u", 0.1),
        lambda sdk: sdk.grant("u", 100.0),
        lambda sdk: sdk.grant("u", 1, priority=1.0),
        lambda sdk: sdk.hold("u", 1.5),
        lambda sdk: sdk.charge("u", feature="image", quantity=2.0),
        lambda sdk: sdk.charge("u", 1, metadata={"temperature": 0.7}),
        lambda sdk: sdk.initialize_account("u", initial_grant=5.0),
        lambda sdk: sdk.initialize_account("u", low_balance_threshold=0.5),
        lambda sdk: sdk.quote(amount=0.5),
        lambda sdk: sdk.charge("u", True),
        lambda sdk: sdk.set_wallet_limits("u", [Limit(0.5, "day")]),  # type: ignore[arg-type]
    ],
)
def test_floats_are_refused_before_anything_is_sent(client: Client, wire: Wire, call: Any) -> None:
    with pytest.raises(TypeError):
        call(client)
    assert wire.requests == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of amount, feature or usage"),
        ({"amount": 1, "feature": "image"}, r"\(got amount, feature\)"),
        ({"feature": "image", "usage": USAGE}, r"\(got feature, usage\)"),
        ({"amount": 1, "quantity": 2}, "quantity goes with feature"),
    ],
)
def test_a_charge_names_exactly_one_price(
    client: Client, wire: Wire, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        client.charge("u", **kwargs)
    assert wire.requests == []


def test_unreadable_amounts_are_refused(client: Client, wire: Wire) -> None:
    with pytest.raises(ValueError, match="not a decimal number"):
        client.charge("u", "ten")
    with pytest.raises(ValueError, match="finite"):
        client.charge("u", Decimal("NaN"))
    assert wire.requests == []


def test_results_keep_what_a_newer_server_adds(client: Client, wire: Wire) -> None:
    wire.reply = answer(201, transfer_json(amount=Decimal("10.5"), tax=Decimal("0.21")))
    transfer = client.charge("u", "10.5")
    assert transfer.amount == Decimal("10.5")
    assert transfer.raw["tax"] == Decimal("0.21")
    assert transfer.created_at == datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert not transfer.replayed
    assert "raw" not in repr(transfer)


def test_whole_amounts_come_back_as_decimals_too(client: Client, wire: Wire) -> None:
    wire.reply = answer(200, account_json(balance=100, held=0, available=100))
    account = client.get_account("u")
    assert all(
        type(value) is Decimal
        for value in (account.balance, account.held, account.available, account.overdraft_limit)
    )
    assert type(client.get_balance("u")) is Decimal


def test_a_success_the_sdk_cannot_read_is_an_api_error(client: Client, wire: Wire) -> None:
    wire.reply = answer(200, {"unexpected": True})
    with pytest.raises(APIError) as unreadable:
        client.get_account("u")
    assert unreadable.value.code == "invalid_response"


def test_the_constructor_refuses_unusable_settings() -> None:
    with pytest.raises(ValueError, match="api_key"):
        Client(BASE_URL, "")
    with pytest.raises(ValueError, match="max_retries"):
        Client(BASE_URL, "cdk_test", max_retries=-1)
    with pytest.raises(ValueError, match="base_url"):
        Client("", "cdk_test")
