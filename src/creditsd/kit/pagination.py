"""Opaque list cursors."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Generic, TypeVar

from creditsd.kit.errors import InvalidRequest

T = TypeVar("T")

MAX_LIMIT = 100
_ROW_ID = re.compile(r"[1-9][0-9]{0,17}")  # a positive id that fits a 64-bit column


class InvalidCursor(InvalidRequest):
    """A cursor we did not hand out."""

    code = "invalid_cursor"

    def __init__(self) -> None:
        super().__init__("this cursor was not issued by this service")


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
        raise InvalidCursor
    return position


def decode_id_cursor(cursor: str | None) -> int | None:
    """The row id inside a cursor from ``encode_cursor(str(id))``: ``MTI`` → 12."""
    position = decode_cursor(cursor)
    if position is None:
        return None
    if not _ROW_ID.fullmatch(position):
        raise InvalidCursor
    return int(position)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list and the cursor for the next, if any."""

    items: list[T]
    next_cursor: str | None
