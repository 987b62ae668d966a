"""Errors of proxy keys."""

from __future__ import annotations

from creditsd import jsonio
from creditsd.errors import CreditsError, Forbidden, NotFound, Unauthenticated
from creditsd.ledger.errors import Units
from creditsd.proxy.keys.models import ProxyKey


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

    def __init__(self, key: ProxyKey) -> None:
        assert key.expires_at is not None  # only a key with an expiry expires
        super().__init__(
            f"this proxy key expired at {jsonio.format_timestamp(key.expires_at)}; mint a new one"
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
