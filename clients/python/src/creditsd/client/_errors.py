"""The exceptions the SDK raises, one class per kind of failure a caller handles differently.

::

    CreditsError
    ├── APIError                      the server answered with an error
    │   ├── AuthenticationError       401
    │   ├── PermissionDeniedError     403
    │   ├── NotFoundError             404
    │   ├── ConflictError             409
    │   │   ├── IdempotencyConflictError
    │   │   └── AccountNotActiveError account_frozen, account_closed (account_id)
    │   ├── SpendRefusedError         402 (required): key_limit_reached, …
    │   │   ├── InsufficientCreditsError   insufficient_credits (account_id, available)
    │   │   └── LimitReachedError          limit_reached (limit_source, period, limit,
    │   │                                  remaining, resets_at)
    │   ├── ValidationError           400, 422 (unknown_pack, invalid_signature, …)
    │   ├── RateLimitError            429 (retry_after)
    │   └── ServerError               5xx (stripe_not_configured, …)
    │       └── PaymentProviderError  502, 503 payment_provider_error (stripe_request_id)
    └── TransportError                no answer, even after the retries
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any


class CreditsError(Exception):
    """Every error the SDK raises: a stable ``code``, the HTTP ``status`` (if any) and details.

    ``idempotency_key`` is the key a failed write was sent with (None for reads): sending
    the write again with it is safe, whether or not the server applied the first one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "error",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details: dict[str, Any] = dict(details or {})
        self.idempotency_key: str | None = None

    def __str__(self) -> str:
        where = f"{self.status} " if self.status is not None else ""
        return f"{self.message} ({where}{self.code})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle by state: the keyword-only constructors cannot be called with ``args``
        # alone, and errors do cross processes (task queues, multiprocessing).
        return (_restore, (type(self), self.message), self.__dict__)


class APIError(CreditsError):
    """The server answered with an error; ``details`` holds the body's extra fields."""

    status: int

    def __init__(
        self, message: str, *, status: int, code: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message, status=status, code=code, details=details)


class AuthenticationError(APIError):
    """401: the API key is missing, unknown, revoked or expired."""


class PermissionDeniedError(APIError):
    """403: the API key's scope does not allow this (grants need an admin key)."""


class NotFoundError(APIError):
    """404: the account, hold, transaction or member named does not exist."""


class ConflictError(APIError):
    """409: the request clashes with the current state (a hold no longer open, …)."""


class IdempotencyConflictError(ConflictError):
    """409: this idempotency key was already used with a different request."""


class AccountNotActiveError(ConflictError):
    """409: the account is frozen (``account_frozen``) or closed (``account_closed``).

    It spends nothing until an operator reactivates it; its history is kept.
    """

    def __init__(
        self, message: str, *, status: int, code: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message, status=status, code=code, details=details)
        self.account_id: str | None = self.details.get("account_id")


class SpendRefusedError(APIError):
    """402: the write may not spend what it needs (``required``): the account cannot afford
    it, a spend limit does not allow it (the two subclasses), or another refusal such as a
    proxy key's ``key_limit_reached``."""

    def __init__(
        self, message: str, *, status: int, code: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message, status=status, code=code, details=details)
        self.required = _decimal_or_none(self.details.get("required"))


class InsufficientCreditsError(SpendRefusedError):
    """402: the account cannot afford it; ``required`` and ``available`` say by how much."""

    def __init__(
        self, message: str, *, status: int, code: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message, status=status, code=code, details=details)
        self.account_id: str | None = self.details.get("account_id")
        self.available = _decimal_or_none(self.details.get("available"))


class LimitReachedError(SpendRefusedError):
    """402: a hard spend limit leaves less than the write needs, whatever the balance.

    ``limit_source`` says whose limit (``wallet``, ``member``, ``app`` or ``key``) and
    ``period`` which (``day``, ``week``, ``month`` or ``lifetime``); ``limit`` is its
    amount, ``remaining`` what its current window leaves of it (less than ``required``),
    and ``resets_at`` when that window ends (None: a lifetime limit never resets).
    """

    def __init__(
        self, message: str, *, status: int, code: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message, status=status, code=code, details=details)
        self.limit_source: str | None = self.details.get("limit_source")
        self.period: str | None = self.details.get("period")
        self.limit = _decimal_or_none(self.details.get("limit"))
        self.remaining = _decimal_or_none(self.details.get("remaining"))
        self.resets_at = _datetime_or_none(self.details.get("resets_at"))


class ValidationError(APIError):
    """400 or 422: the server refused the request as written."""


class RateLimitError(APIError):
    """429: too many requests; ``retry_after`` is the wait the server asked for, in seconds."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str,
        details: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, details=details)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the server or the database failed; writes are safe to retry with the same key."""


class PaymentProviderError(ServerError):
    """502: Stripe failed or refused, ``stripe_request_id`` finds the request in its
    dashboard; 503: Stripe could not be reached (``details["retry_after"]``: seconds to wait).

    Like any 5xx it is retried: the write's idempotency key, passed on to Stripe, keeps a
    retry to one checkout session.
    """

    def __init__(
        self, message: str, *, status: int, code: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message, status=status, code=code, details=details)
        self.stripe_request_id: str | None = self.details.get("stripe_request_id")


class TransportError(CreditsError):
    """No answer from the server (connection refused or dropped, timeout) after every retry."""

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message, code="transport_error")
        self.attempts = attempts


def _restore(cls: type[CreditsError], message: str) -> CreditsError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    return error


def _decimal_or_none(value: object) -> Decimal | None:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | str) and not isinstance(value, bool):
        try:
            return Decimal(value)
        except InvalidOperation:
            return None
    return None


def _datetime_or_none(value: object) -> datetime | None:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


_BY_CODE: dict[str, type[APIError]] = {
    "account_closed": AccountNotActiveError,
    "account_frozen": AccountNotActiveError,
    "account_not_active": AccountNotActiveError,
    "idempotency_conflict": IdempotencyConflictError,
    "insufficient_credits": InsufficientCreditsError,
    "limit_reached": LimitReachedError,
    "payment_provider_error": PaymentProviderError,
}

_BY_STATUS: dict[int, type[APIError]] = {
    400: ValidationError,
    401: AuthenticationError,
    402: SpendRefusedError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
}


def error_for(
    status: int, payload: object, *, reason: str = "", retry_after: float | None = None
) -> APIError:
    """The exception for an error answer, chosen by its ``code`` first, then by its status."""
    error = payload.get("error") if isinstance(payload, Mapping) else None
    if isinstance(error, Mapping) and isinstance(error.get("code"), str):
        code: str = error["code"]
        message = str(error.get("message") or code)
        details = {key: value for key, value in error.items() if key not in {"code", "message"}}
    else:  # not creditsd's error shape: a proxy or load balancer answered
        code = "http_error"
        message = reason or f"HTTP {status}"
        details = {}
    if status == 429:
        return RateLimitError(
            message, status=status, code=code, details=details, retry_after=retry_after
        )
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else APIError
    return cls(message, status=status, code=code, details=details)
