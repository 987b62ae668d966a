"""Errors of the holds service (the engine's own, such as ``HoldNotOpen``, are in
:mod:`creditsd.ledger.errors`)."""

from __future__ import annotations

from creditsd.kit.errors import InvalidRequest


class ExpiryTooLong(InvalidRequest):
    """The requested lifetime passes the configured maximum."""

    code = "expiry_too_long"

    def __init__(self, maximum: int) -> None:
        super().__init__(f"expires_in may be at most {maximum} seconds", max_expires_in=maximum)
