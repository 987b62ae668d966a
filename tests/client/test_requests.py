"""What the SDK sends and how it reads the answers, checked on the wire with MockTransport."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from creditsd.client import APIError, AsyncClient, Client, Usage
from tests.client.conftest import (
    BASE_URL,
    account_json,
    answer,
    hold_json,
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


def test_initialize_account_sends_only_what_is_set(client: Client, wire: Wire) -> None:
    wire.reply = answer(200, account_json(id="org:acme"))
    client.initialize_account("org:acme")
    assert (wire.last.method, wire.last.url.raw_path) == ("PUT", b"/v1/accounts/org%3Aacme")
    assert wire.last.content == b""
    client.initialize_account("org:acme", overdraft_limit=0, aliases=("123",))
    assert wire.body() == {"overdraft_limit": 0, "aliases": ["123"]}
    with pytest.raises(TypeError, match="list of account ids"):
        client.initialize_account("org:acme", aliases="123")


@pytest.mark.parametrize(
    "call",
    [
        lambda sdk: sdk.charge("u", 0.1),
        lambda sdk: sdk.grant("u", 100.0),
        lambda sdk: sdk.hold("u", 1.5),
        lambda sdk: sdk.charge("u", feature="image", quantity=2.0),
        lambda sdk: sdk.charge("u", 1, metadata={"temperature": 0.7}),
        lambda sdk: sdk.initialize_account("u", initial_grant=5.0),
        lambda sdk: sdk.quote(amount=0.5),
        lambda sdk: sdk.charge("u", True),
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
