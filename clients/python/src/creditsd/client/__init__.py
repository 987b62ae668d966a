"""The creditsd Python SDK: ``Client`` for blocking code, ``AsyncClient`` for asyncio.

It needs only httpx and imports nothing of the server::

    from creditsd.client import Client, InsufficientCreditsError

    with Client("http://127.0.0.1:8000", api_key) as credits:
        try:
            credits.charge("user_2abc", feature="chat_message")
        except InsufficientCreditsError as exc:
            print(f"needs {exc.required}, has {exc.available}")

Credits go in and come out as ``decimal.Decimal`` (floats are refused).
"""

from creditsd.client._async import AsyncClient
from creditsd.client._autotopup import (
    AutoTopup,
    AutoTopupAttempt,
    AutoTopupCard,
    AutoTopupCardSession,
)
from creditsd.client._errors import (
    AccountNotActiveError,
    APIError,
    AuthenticationError,
    ConflictError,
    CreditsError,
    IdempotencyConflictError,
    InsufficientCreditsError,
    LimitReachedError,
    NotFoundError,
    PaymentProviderError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    SpendRefusedError,
    TransportError,
    ValidationError,
)
from creditsd.client._models import (
    Account,
    AuditRecord,
    AuditRecordPage,
    Capture,
    CheckoutSession,
    Hold,
    Limit,
    LimitState,
    LotPart,
    Member,
    MemberPage,
    Pack,
    PortalSession,
    ProxyKey,
    ProxyKeyPage,
    Quote,
    Runway,
    TransactionPage,
    Transfer,
    Usage,
    UsageResult,
    Verification,
    WebhookDelivery,
    WebhookDeliveryPage,
    WebhookEndpoint,
)
from creditsd.client._sync import Client

__all__ = [
    "APIError",
    "Account",
    "AccountNotActiveError",
    "AsyncClient",
    "AuditRecord",
    "AuditRecordPage",
    "AuthenticationError",
    "AutoTopup",
    "AutoTopupAttempt",
    "AutoTopupCard",
    "AutoTopupCardSession",
    "Capture",
    "CheckoutSession",
    "Client",
    "ConflictError",
    "CreditsError",
    "Hold",
    "IdempotencyConflictError",
    "InsufficientCreditsError",
    "Limit",
    "LimitReachedError",
    "LimitState",
    "LotPart",
    "Member",
    "MemberPage",
    "NotFoundError",
    "Pack",
    "PaymentProviderError",
    "PermissionDeniedError",
    "PortalSession",
    "ProxyKey",
    "ProxyKeyPage",
    "Quote",
    "RateLimitError",
    "Runway",
    "ServerError",
    "SpendRefusedError",
    "TransactionPage",
    "Transfer",
    "TransportError",
    "Usage",
    "UsageResult",
    "ValidationError",
    "Verification",
    "WebhookDelivery",
    "WebhookDeliveryPage",
    "WebhookEndpoint",
]
