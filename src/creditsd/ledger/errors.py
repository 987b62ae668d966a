"""Errors the ledger raises; the API renders each with its code and status."""

from __future__ import annotations

from datetime import datetime

from creditsd.kit import jsonio
from creditsd.kit.errors import (
    Conflict,
    CreditsError,
    Forbidden,
    InvalidRequest,
    NotFound,
    Unauthenticated,
)


class Units(int):
    """An amount in minor units inside error details; rendered in credits at the edge."""


class AccountNotFound(NotFound):
    """No account answers to this id or alias (and auto-creation is off)."""

    code = "account_not_found"

    def __init__(self, account_id: str) -> None:
        super().__init__(f"no account {account_id!r}", account_id=account_id)


class TransferNotFound(NotFound):
    """No transfer with this id."""

    code = "transfer_not_found"

    def __init__(self, transfer_id: str) -> None:
        super().__init__(f"no transfer {transfer_id!r}", transfer_id=transfer_id)


class InsufficientCredits(CreditsError):
    """The account cannot afford it: ``required`` is more than ``available``."""

    code = "insufficient_credits"
    status = 402

    def __init__(self, account_id: str, required: int, available: int) -> None:
        super().__init__(
            "insufficient credits",
            account_id=account_id,
            required=Units(required),
            available=Units(available),
        )
        self.required = required
        self.available = available


class BalanceLimit(Conflict):
    """The balance would pass the largest amount the ledger can hold."""

    code = "balance_limit"

    def __init__(self, account_id: str) -> None:
        super().__init__(
            "the balance would exceed the largest storable amount", account_id=account_id
        )


class AccountNotActive(Conflict):
    """The account spends nothing in its present status; its ledger is kept."""

    code = "account_not_active"
    reason = "is not active"

    def __init__(self, account_id: str) -> None:
        super().__init__(f"account {account_id} {self.reason}", account_id=account_id)


class AccountFrozen(AccountNotActive):
    """Frozen (a dispute or refund is open) until an operator unfreezes it."""

    code = "account_frozen"
    reason = "is frozen until an operator unfreezes it"


class AccountClosed(AccountNotActive):
    """Closed (its user was deleted): history kept, nothing more spent."""

    code = "account_closed"
    reason = "is closed; its history is kept but it spends nothing more"


def not_active(account_id: str, status: str) -> AccountNotActive:
    """The error for spending from an account in ``status``."""
    return {"frozen": AccountFrozen, "closed": AccountClosed}[status](account_id)


class IdempotencyConflict(Conflict):
    """The idempotency key was already used for a different request."""

    code = "idempotency_conflict"

    def __init__(self, key: str) -> None:
        super().__init__(
            "this idempotency key was already used with a different request", idempotency_key=key
        )


class AliasTaken(Conflict):
    """The alias already names another account."""

    code = "alias_taken"

    def __init__(self, alias: str) -> None:
        super().__init__(f"{alias!r} already names another account", alias=alias)


class OverdraftInUse(Conflict):
    """Lowering the overdraft limit would leave the account below zero available."""

    code = "overdraft_in_use"

    def __init__(self, account_id: str) -> None:
        super().__init__(
            "the account is using more overdraft than the new limit allows", account_id=account_id
        )


class InvalidAccountId(InvalidRequest):
    """Account ids are 1–128 characters of letters, digits and ``_ - . : @ + =``."""

    code = "invalid_account_id"

    def __init__(self, account_id: str) -> None:
        super().__init__(
            "account ids are 1-128 characters: letters, digits and _ - . : @ + = "
            "(not starting with @)",
            account_id=account_id[:200],
        )


class HoldNotFound(NotFound):
    """No hold with this id."""

    code = "hold_not_found"

    def __init__(self, hold_id: str) -> None:
        super().__init__(f"no hold {hold_id!r}", hold_id=hold_id)


class HoldNotOpen(Conflict):
    """The hold was already captured, released or expired."""

    code = "hold_not_open"

    def __init__(self, hold_id: str, status: str) -> None:
        super().__init__(f"the hold is {status}", hold_id=hold_id, status=status)


class HoldExceeded(Conflict):
    """A non-final capture may take only what the hold still reserves."""

    code = "hold_exceeded"

    def __init__(self, hold_id: str) -> None:
        super().__init__(
            "a capture with final=false may not take more than the hold still reserves",
            hold_id=hold_id,
        )


class ProxyKeyNotFound(NotFound):
    """No proxy key with this id."""

    code = "proxy_key_not_found"

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no proxy key {key_id!r}", key_id=key_id)


class ProxyKeyRevoked(Unauthenticated):
    """The key was revoked: it pays for nothing more."""

    code = "key_revoked"

    def __init__(self) -> None:
        super().__init__("this proxy key was revoked")


class ProxyKeyExpired(Unauthenticated):
    """The key's expiry has come: it no longer works."""

    code = "key_expired"

    def __init__(self, expires_at: datetime) -> None:
        super().__init__(
            f"this proxy key expired at {jsonio.format_timestamp(expires_at)}; mint a new one"
        )


class WrongAccount(Forbidden):
    """A proxy key pays only for its own account."""

    code = "wrong_account"

    def __init__(self, key_id: str, account_id: str) -> None:
        super().__init__(
            f"this proxy key pays only for account {account_id!r}",
            key_id=key_id,
            account_id=account_id,
        )


class KeyLimitReached(CreditsError):
    """The call's estimate is more than what the key's limit leaves: ``required`` is more
    than ``available`` (the limit less what the key spent and its other calls hold)."""

    code = "key_limit_reached"
    status = 402

    def __init__(self, key_id: str, limit: int, required: int, available: int) -> None:
        super().__init__(
            "this call would take the proxy key past its spend limit",
            key_id=key_id,
            limit=Units(limit),
            required=Units(required),
            available=Units(available),
        )
