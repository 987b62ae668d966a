"""Errors from the hold lifecycle."""

from __future__ import annotations

from creditsd.errors import Conflict, InvalidRequest, NotFound


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


class ExpiryTooLong(InvalidRequest):
    """The requested lifetime passes the configured maximum."""

    code = "expiry_too_long"

    def __init__(self, maximum: int) -> None:
        super().__init__(f"expires_in may be at most {maximum} seconds", max_expires_in=maximum)
