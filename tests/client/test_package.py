"""The SDK's public surface, and its independence from the server."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from decimal import Decimal
from importlib.metadata import version

import creditsd.client
from creditsd.client import (
    APIError,
    ConflictError,
    CreditsError,
    InsufficientCreditsError,
    LimitReachedError,
    PaymentProviderError,
    ServerError,
    SpendRefusedError,
    TransportError,
)
from creditsd.client._base import VERSION

PUBLIC = {
    "Client",
    "AsyncClient",
    "Account",
    "Transfer",
    "Hold",
    "Capture",
    "Verification",
    "TransactionPage",
    "Quote",
    "Usage",
    "UsageResult",
    "LotPart",
    "Pack",
    "CheckoutSession",
    "PortalSession",
    "WebhookEndpoint",
    "WebhookDelivery",
    "WebhookDeliveryPage",
    "AuditRecord",
    "AuditRecordPage",
    "Limit",
    "LimitState",
    "Member",
    "MemberPage",
    "ProxyKey",
    "ProxyKeyPage",
    "CreditsError",
    "APIError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "IdempotencyConflictError",
    "AccountNotActiveError",
    "SpendRefusedError",
    "InsufficientCreditsError",
    "LimitReachedError",
    "ValidationError",
    "RateLimitError",
    "Runway",
    "AutoTopup",
    "AutoTopupAttempt",
    "AutoTopupCard",
    "AutoTopupCardSession",
    "ServerError",
    "PaymentProviderError",
    "TransportError",
}


def test_all_lists_exactly_the_public_names() -> None:
    assert set(creditsd.client.__all__) == PUBLIC
    assert len(creditsd.client.__all__) == len(PUBLIC)
    exposed = {name for name in vars(creditsd.client) if not name.startswith("_")}
    assert exposed == PUBLIC
    for name in PUBLIC:
        assert getattr(creditsd.client, name).__module__.startswith("creditsd.client._")


def test_every_error_is_a_credits_error() -> None:
    errors = [getattr(creditsd.client, name) for name in PUBLIC if name.endswith("Error")]
    assert all(issubclass(error, CreditsError) for error in errors)
    api_errors = {error.__name__ for error in errors if issubclass(error, APIError)}
    assert api_errors == {name for name in PUBLIC if name.endswith("Error")} - {
        "CreditsError",
        "TransportError",
    }
    assert issubclass(creditsd.client.IdempotencyConflictError, ConflictError)
    assert issubclass(creditsd.client.AccountNotActiveError, ConflictError)
    # A limit refusal is no shortage of credits: one except clause catches either, by the base.
    assert issubclass(InsufficientCreditsError, SpendRefusedError)
    assert issubclass(LimitReachedError, SpendRefusedError)
    assert not issubclass(LimitReachedError, InsufficientCreditsError)
    assert issubclass(creditsd.client.PaymentProviderError, ServerError)
    assert not issubclass(TransportError, APIError)


def test_importing_the_sdk_loads_nothing_of_the_server() -> None:
    # A fresh interpreter: this one has loaded the whole server for the other tests.
    probe = (
        "import json, sys; import creditsd.client, creditsd; "
        "print(json.dumps([sorted(sys.modules), sorted(vars(creditsd))]))"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    loaded, package_names = json.loads(output)
    ours = [name for name in loaded if name == "creditsd" or name.startswith("creditsd.")]
    assert "creditsd.client" in ours
    assert [name for name in ours if not name.startswith("creditsd.client")] == ["creditsd"]
    server_libraries = {"fastapi", "starlette", "pydantic", "sqlalchemy", "simplejson", "asyncpg"}
    assert server_libraries.isdisjoint(loaded)
    # creditsd is a namespace package that the server shares: no code of its own runs.
    assert {name for name in package_names if not name.startswith("__")} == {"client"}


def test_the_sdk_says_which_version_it_is() -> None:
    assert version("creditsd-client") == VERSION


def test_errors_survive_pickling() -> None:
    refused = InsufficientCreditsError(
        "insufficient credits",
        status=402,
        code="insufficient_credits",
        details={"account_id": "u", "required": Decimal("10.5"), "available": 4},
    )
    refused.idempotency_key = "sdk_1"
    copy = pickle.loads(pickle.dumps(refused))
    assert type(copy) is InsufficientCreditsError
    assert (copy.required, copy.available, copy.idempotency_key) == (
        Decimal("10.5"),
        Decimal(4),
        "sdk_1",
    )
    assert str(copy) == str(refused) == "insufficient credits (402 insufficient_credits)"
    stripe = PaymentProviderError(
        "Stripe could not complete the request",
        status=502,
        code="payment_provider_error",
        details={"stripe_request_id": "req_1"},
    )
    assert pickle.loads(pickle.dumps(stripe)).stripe_request_id == "req_1"
    limit = LimitReachedError(
        "this would take the member past its day spend limit",
        status=402,
        code="limit_reached",
        details={"period": "day", "resets_at": "2026-12-08T00:00:00Z", "required": 5},
    )
    copied = pickle.loads(pickle.dumps(limit))
    assert (copied.period, copied.resets_at, copied.required) == (
        "day",
        limit.resets_at,
        Decimal(5),
    )
    lost = pickle.loads(pickle.dumps(TransportError("no answer", attempts=3)))
    assert (lost.attempts, lost.status, lost.code) == (3, None, "transport_error")
