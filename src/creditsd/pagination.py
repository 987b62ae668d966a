"""Opaque list cursors."""

from __future__ import annotations

import base64
import binascii

from creditsd.errors import InvalidRequest

MAX_LIMIT = 100


class InvalidCursor(InvalidRequest):
    """A cursor we did not hand out."""

    code = "invalid_cursor"


def encode_cursor(position: str) -> str:
    """Wrap a position so callers treat it as opaque."""
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """The position inside a cursor from :func:`encode_cursor`."""
    if cursor is None:
        return None
    try:
        position = base64.b64decode(
            cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True
        ).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        position = ""
    if not position:
        raise InvalidCursor("this cursor was not issued by this service")
    return position
