"""Identifiers: ours sort by creation time (a prefix, 48 bits of milliseconds, 80 random
bits); account ids are the caller's own."""

from __future__ import annotations

import secrets
import time

# Crockford's base32 digits, lower case (they sort as they count), taken two at a time.
_DIGITS = "0123456789abcdefghjkmnpqrstvwxyz"
_PAIRS = [high + low for high in _DIGITS for low in _DIGITS]
_SHIFTS = range(120, -10, -10)
# What an account id (or alias) may be: the caller's own ids, never starting with @.
ACCOUNT_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:@+=-]{0,127}"


_last = 0


def new_id(prefix: str) -> str:
    """A new id such as ``tr_01jd3x…``; ids a process makes later sort after earlier ones.

    Within one millisecond the random part counts up from the first id's, so a batch's
    lots and transfers keep the order they were made in (lots are spent oldest first).
    """
    global _last  # noqa: PLW0603 - one counter per process, like the clock it extends
    millisecond = time.time_ns() // 1_000_000
    # Drawing the random part only for a new millisecond keeps a batch's ids cheap.
    _last = _last + 1 if millisecond <= _last >> 80 else millisecond << 80 | secrets.randbits(80)
    return f"{prefix}_{encode(_last)}"


def encode(value: int) -> str:
    """130 bits as 26 base32 digits, most significant first: ``encode(33)`` is
    ``'00000000000000000000000011'``."""
    return "".join([_PAIRS[value >> shift & 1023] for shift in _SHIFTS])
