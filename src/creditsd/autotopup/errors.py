"""Errors of auto top-up."""

from __future__ import annotations

from creditsd.kit.errors import InvalidRequest, NotFound


class InvalidRule(InvalidRequest):
    """A rule that cannot work as asked."""

    code = "invalid_auto_topup"

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message, field=field)


class NoAutoTopup(NotFound):
    """The account has never set up auto top-up."""

    code = "auto_topup_not_found"

    def __init__(self, account: str) -> None:
        super().__init__(f"account {account!r} has no auto top-up", account_id=account)
