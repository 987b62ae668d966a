"""When Client and AsyncClient try again, and when they do not, against scripted answers."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from creditsd.client import (
    AccountNotActiveError,
    APIError,
    AsyncClient,
    Client,
    ConflictError,
    IdempotencyConflictError,
    InsufficientCreditsError,
    LimitReachedError,
    NotFoundError,
    PaymentProviderError,
    RateLimitError,
    ServerError,
    SpendRefusedError,
    TransportError,
    ValidationError,
)
from tests.client.conftest import (
    BASE_URL,
    account_json,
    answer,
    delivery_json,
    endpoint_json,
    error_json,
    transfer_json,
)

Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


class Script:
    """Answers requests from a list, in order, and keeps every request it saw."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        return answer if isinstance(answer, httpx.Response) else answer(request)

    def keys(self) -> list[str | None]:
        """The Idempotency-Key of every request seen."""
        return [request.headers.get("Idempotency-Key") for request in self.requests]


class SDK:
    """One of the two clients on a script, called the same way whichever it is."""

    def __init__(self, kind: str, script: Script, **options: Any) -> None:
        options.setdefault("backoff", 0)
        transport = httpx.MockTransport(script)
        self.client: Client | AsyncClient = (
            Client(BASE_URL, "cdk_test", transport=transport, **options)
            if kind == "sync"
            else AsyncClient(BASE_URL, "cdk_test", transport=transport, **options)
        )
        self.pauses: list[float] = []

    def record_pauses(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Note each pause between attempts instead of sleeping it."""

        def pause(seconds: float) -> None:
            self.pauses.append(seconds)

        async def apause(seconds: float) -> None:
            self.pauses.append(seconds)

        sleep = pause if isinstance(self.client, Client) else apause
        monkeypatch.setattr(self.client, "_sleep", sleep)

    async def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.client, method)(*args, **kwargs)
        return await result if inspect.isawaitable(result) else result

    async def close(self) -> None:
        """Close the client, whichever it is."""
        if isinstance(self.client, Client):
            self.client.close()
        else:
            await self.client.aclose()


@pytest.fixture(params=["sync", "async"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., SDK]]:
    """Make SDKs of one kind: each test runs with Client and with AsyncClient."""
    made: list[SDK] = []

    def factory(script: Script, **options: Any) -> SDK:
        made.append(SDK(str(request.param), script, **options))
        return made[-1]

    yield factory
    for sdk in made:
        await sdk.close()


def unavailable() -> httpx.Response:
    """The server's answer when its database is out of reach."""
    return answer(503, error_json("unavailable", "the database is unavailable"))


async def test_a_5xx_is_retried_with_the_same_key_until_it_succeeds(
    make: Callable[..., SDK],
) -> None:
    script = Script(unavailable(), unavailable(), answer(201, transfer_json()))
    sdk = make(script, max_retries=2)
    transfer = await sdk("charge", "u", 10)
    assert (transfer.id, transfer.balance) == ("tr_1", 90)
    keys = script.keys()
    assert len(keys) == 3
    assert len(set(keys)) == 1
    assert str(keys[0]).startswith("sdk_")
    assert len({request.content for request in script.requests}) == 1


async def test_after_max_retries_the_last_error_is_raised(make: Callable[..., SDK]) -> None:
    script = Script(unavailable(), unavailable(), unavailable())
    sdk = make(script, max_retries=2)
    with pytest.raises(ServerError) as failed:
        await sdk("grant", "u", 5)
    assert (failed.value.status, failed.value.code) == (503, "unavailable")
    assert failed.value.idempotency_key == script.keys()[0]
    assert len(script.requests) == 3


async def test_max_retries_zero_tries_once(make: Callable[..., SDK]) -> None:
    script = Script(unavailable())
    with pytest.raises(ServerError):
        await make(script, max_retries=0)("get_balance", "u")
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (
            402,
            error_json("insufficient_credits", account_id="u", required=10, available=Decimal(4)),
            InsufficientCreditsError,
        ),
        (402, error_json("limit_reached", limit_source="app", required=10), LimitReachedError),
        (402, error_json("key_limit_reached", key_id="pxk_1", required=10), SpendRefusedError),
        (409, error_json("idempotency_conflict", idempotency_key="k"), IdempotencyConflictError),
        (409, error_json("hold_not_open", hold_id="h", status="captured"), ConflictError),
        (409, error_json("account_frozen", account_id="u"), AccountNotActiveError),
        (409, error_json("account_closed", account_id="u"), AccountNotActiveError),
        (404, error_json("account_not_found", account_id="u"), NotFoundError),
        (422, error_json("invalid_amount", field="amount"), ValidationError),
        (400, error_json("invalid_json"), ValidationError),
        (400, error_json("invalid_signature"), ValidationError),
        (422, error_json("unknown_pack", pack="huge", known=["1k"]), ValidationError),
        (413, error_json("body_too_large"), APIError),
    ],
)
async def test_client_errors_other_than_429_are_never_retried(
    make: Callable[..., SDK], status: int, body: Any, error: type[APIError]
) -> None:
    script = Script(answer(status, body), answer(201, transfer_json()))
    with pytest.raises(error) as refused:
        await make(script)("charge", "u", 10)
    assert type(refused.value) is error
    assert (refused.value.status, refused.value.code) == (status, body["error"]["code"])
    assert len(script.requests) == 1


async def test_a_frozen_account_names_itself(make: Callable[..., SDK]) -> None:
    body = error_json("account_frozen", "account u is frozen", account_id="u")
    with pytest.raises(ConflictError) as refused:
        await make(Script(answer(409, body)))("charge", "u", 1)
    assert isinstance(refused.value, AccountNotActiveError)
    assert (refused.value.account_id, refused.value.code) == ("u", "account_frozen")


async def test_a_payment_provider_failure_is_retried_then_raised(
    make: Callable[..., SDK],
) -> None:
    failed = answer(502, error_json("payment_provider_error", stripe_request_id="req_1"))
    session = {
        "id": "cs_1",
        "account_id": "u",
        "pack": "1k",
        "credits": 1000,
        "ui_mode": "embedded",
        "url": None,
        "client_secret": "cs_1_secret",
        "publishable_key": None,
    }
    script = Script(failed, answer(201, session), failed, failed, failed)
    sdk = make(script, max_retries=2)
    checkout = {"success_url": "https://app.test/ok", "ui_mode": "embedded"}
    assert (await sdk("create_checkout_session", "u", "1k", **checkout)).id == "cs_1"
    with pytest.raises(PaymentProviderError) as refused:
        await sdk("create_checkout_session", "u", "1k", **checkout)
    assert isinstance(refused.value, ServerError)
    assert (refused.value.status, refused.value.stripe_request_id) == (502, "req_1")
    first, second = script.keys()[:2], script.keys()[2:]
    assert (len(set(first)), len(second), len(set(second))) == (1, 3, 1)
    assert first[0] != second[0]


async def test_stripe_not_configured_stays_a_plain_server_error(
    make: Callable[..., SDK],
) -> None:
    body = error_json("stripe_not_configured", "Stripe is not configured: set stripe.secret_key")
    with pytest.raises(ServerError) as unconfigured:
        await make(Script(answer(503, body)), max_retries=0)(
            "create_checkout_session",
            "u",
            "1k",
            success_url="https://app.test/ok",
            ui_mode="embedded",
        )
    assert type(unconfigured.value) is ServerError
    assert (unconfigured.value.status, unconfigured.value.code) == (503, "stripe_not_configured")


async def test_insufficient_credits_carries_exact_figures(make: Callable[..., SDK]) -> None:
    body = error_json(
        "insufficient_credits", account_id="u", required=Decimal("10.25"), available=4
    )
    with pytest.raises(InsufficientCreditsError) as refused:
        await make(Script(answer(402, body)))("charge", "u", "10.25")
    assert (refused.value.required, refused.value.available) == (Decimal("10.25"), Decimal(4))
    assert isinstance(refused.value.available, Decimal)
    assert refused.value.details["account_id"] == "u"


async def test_a_limit_refusal_names_its_limit_exactly(make: Callable[..., SDK]) -> None:
    body = error_json(
        "limit_reached",
        limit_source="member",
        period="week",
        limit=Decimal("12.5"),
        remaining=Decimal("2.5"),
        resets_at="2026-12-14T00:00:00Z",
        required=3,
    )
    with pytest.raises(LimitReachedError) as refused:
        await make(Script(answer(402, body)))("charge", "u", 3)
    limit = refused.value
    assert (limit.limit_source, limit.period) == ("member", "week")
    assert (limit.limit, limit.remaining) == (Decimal("12.5"), Decimal("2.5"))
    assert limit.required == Decimal(3)
    assert all(type(n) is Decimal for n in (limit.limit, limit.remaining, limit.required))
    assert limit.resets_at == datetime(2026, 12, 14, tzinfo=UTC)
    lifetime = error_json("limit_reached", period="lifetime", resets_at=None, required=3)
    with pytest.raises(LimitReachedError) as never:
        await make(Script(answer(402, lifetime)))("charge", "u", 3)
    assert (never.value.resets_at, never.value.limit, never.value.limit_source) == (None,) * 3


async def test_429_waits_as_long_as_retry_after_asks(
    make: Callable[..., SDK], monkeypatch: pytest.MonkeyPatch
) -> None:
    limited = answer(429, error_json("rate_limited"), **{"Retry-After": "2"})
    sdk = make(Script(limited, answer(200, account_json())), backoff=0.2)
    sdk.record_pauses(monkeypatch)
    assert await sdk("get_balance", "u") == 100
    assert sdk.pauses == [2.0]


async def test_a_retry_after_beyond_the_cap_goes_to_the_caller(
    make: Callable[..., SDK], monkeypatch: pytest.MonkeyPatch
) -> None:
    limited = answer(429, error_json("rate_limited"), **{"Retry-After": "3600"})
    script = Script(limited, answer(200, account_json()))
    sdk = make(script)
    sdk.record_pauses(monkeypatch)
    with pytest.raises(RateLimitError) as refused:
        await sdk("get_balance", "u")
    assert refused.value.retry_after == 3600.0
    assert (len(script.requests), sdk.pauses) == (1, [])


async def test_backoff_doubles_with_jitter(
    make: Callable[..., SDK], monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script(unavailable(), unavailable(), unavailable(), answer(200, account_json()))
    sdk = make(script, max_retries=3, backoff=1)
    sdk.record_pauses(monkeypatch)
    await sdk("get_account", "u")
    first, second, third = sdk.pauses
    assert 0.5 <= first <= 1 <= second <= 2 <= third <= 4


async def test_network_failures_are_retried_then_reported(make: Callable[..., SDK]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    script = Script(refuse, refuse, refuse)
    with pytest.raises(TransportError) as unreachable:
        await make(script, max_retries=2)("charge", "u", 1)
    assert unreachable.value.attempts == 3
    assert unreachable.value.status is None
    assert isinstance(unreachable.value.__cause__, httpx.ConnectError)
    assert "no answer after 3 attempts" in str(unreachable.value)
    assert unreachable.value.idempotency_key == script.keys()[0]
    assert len(set(script.keys())) == 1


async def test_reads_are_retried_after_a_timeout(make: Callable[..., SDK]) -> None:
    def too_slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    script = Script(too_slow, answer(200, account_json(available="12.5")))
    assert await make(script)("get_balance", "u") == Decimal("12.5")
    assert script.keys() == [None, None]  # reads carry no idempotency key


async def test_a_non_json_gateway_error_is_a_server_error(make: Callable[..., SDK]) -> None:
    gateway = httpx.Response(502, text="<html>Bad Gateway</html>")
    with pytest.raises(ServerError) as failed:
        await make(Script(gateway), max_retries=0)("get_balance", "u")
    assert (failed.value.status, failed.value.code) == (502, "http_error")
    assert failed.value.message == "Bad Gateway"


def lost(request: httpx.Request) -> httpx.Response:
    """The request went out; its answer never came back."""
    raise httpx.RemoteProtocolError("Server disconnected without sending a response.")


def too_slow(request: httpx.Request) -> httpx.Response:
    """The request went out; the server took too long to answer."""
    raise httpx.ReadTimeout("timed out", request=request)


@pytest.mark.parametrize("failure", [unavailable, lambda: lost, lambda: too_slow])
async def test_a_new_webhook_endpoint_is_retried_under_one_key(
    make: Callable[..., SDK], failure: Callable[[], Answer]
) -> None:
    # The server answers a repeated key with the endpoint it made: a retry cannot make two.
    script = Script(failure(), answer(201, endpoint_json(secret="whsec_full")))
    created = await make(script, max_retries=2)(
        "create_webhook_endpoint", "https://app.example/hooks", ["balance.low"]
    )
    assert (created.id, created.secret) == ("we_1", "whsec_full")
    keys = script.keys()
    assert len(keys) == 2 and keys[0] is not None and keys[0] == keys[1]


async def test_other_webhook_calls_are_retried_like_any_read_or_write(
    make: Callable[..., SDK],
) -> None:
    page = {"data": [delivery_json()], "next_cursor": None}
    script = Script(
        unavailable(),
        answer(200, page),
        too_slow,
        answer(200, delivery_json(status="pending")),
        lost,
        answer(200, endpoint_json(disabled_at="2026-11-23T08:00:00Z")),
    )
    sdk = make(script, max_retries=1)
    assert [d.id for d in (await sdk("list_webhook_deliveries", status="dead")).data] == [7]
    assert (await sdk("retry_webhook_delivery", 7)).status == "pending"
    assert (await sdk("disable_webhook_endpoint", "we_1")).disabled_at is not None
    keys = script.keys()
    assert keys[:2] == [None, None]
    assert keys[2] == keys[3] != keys[4] == keys[5]
    assert str(keys[2]).startswith("sdk_")


@pytest.mark.parametrize(
    ("method", "argument", "code"),
    [
        ("disable_webhook_endpoint", "we_nope", "endpoint_not_found"),
        ("retry_webhook_delivery", 999999, "delivery_not_found"),
    ],
)
async def test_unknown_webhook_ids_are_not_found(
    make: Callable[..., SDK], method: str, argument: object, code: str
) -> None:
    script = Script(answer(404, error_json(code, "no such thing")))
    with pytest.raises(NotFoundError) as missing:
        await make(script)(method, argument)
    assert (missing.value.status, missing.value.code) == (404, code)
    assert len(script.requests) == 1
