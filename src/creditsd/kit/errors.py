"""The error base every domain error derives from, and the errors shared by all domains."""

from __future__ import annotations

from typing import Any, ClassVar


class CreditsError(Exception):
    """An error a caller can act on: a stable ``code``, an HTTP ``status`` and details."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidRequest(CreditsError):
    """The request is well-formed JSON but breaks a rule of the API."""

    code = "invalid_request"
    status = 422


class InvalidAmount(InvalidRequest):
    """An amount that is not exact at the deployment's scale, or out of range."""

    code = "invalid_amount"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field} {reason}", field=field)


class NotFound(CreditsError):
    """The thing named in the request does not exist."""

    code = "not_found"
    status = 404


class Conflict(CreditsError):
    """The request clashes with the current state."""

    code = "conflict"
    status = 409


class RuleViolated(Conflict):
    """A write the database refused by one of its rules (a ``CHECK``): it clashed with a
    change that committed meanwhile, or with the rule itself; nothing was written."""

    code = "rule_violated"

    def __init__(self, rule: str) -> None:
        message = f"the write would break the ledger's rule {rule}; nothing was written"
        super().__init__(message, rule=rule)


class InvalidSignature(CreditsError):
    """A webhook whose signature is missing, wrong or too old; nothing was stored."""

    code = "invalid_signature"
    status = 400

    def __init__(self) -> None:
        super().__init__("the webhook signature is missing, wrong or expired")


class InvalidEvent(CreditsError):
    """A correctly signed webhook whose body is not an event of its sender; nothing was stored."""

    code = "invalid_event"
    status = 400


class Unauthenticated(CreditsError):
    """No valid API key."""

    code = "unauthenticated"
    status = 401


class Forbidden(CreditsError):
    """The API key's scope does not allow this."""

    code = "forbidden"
    status = 403


class Unavailable(CreditsError):
    """The database could not be reached or stayed busy; safe to retry with the same key."""

    code = "unavailable"
    status = 503


class RateLimited(CreditsError):
    """Too many requests for now; ``retry_after`` says in how many seconds one may go."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)
