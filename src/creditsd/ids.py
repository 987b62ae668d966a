"""Identifiers: ours sort by creation time (a prefix, 48 bits of milliseconds, 80 random
bits); account ids are the caller's own."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
# What an account id (or alias) may be: the caller's own ids, never starting with @.
ACCOUNT_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:@+=-]{0,127}"


_last = 0


def new_id(prefix: str) -> str:
    """A new id such as ``tr_01jd3x…``; ids a process makes later sort after earlier ones.

    Within one millisecond the random part counts up from the first id's, so a batch's
    lots and transfers keep the order they were made in (lots are spent oldest first).
    """
    global _last  # noqa: PLW0603 - one counter per process, like the clock it extends
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    if value >> 80 <= _last >> 80:
        value = _last + 1
    _last = value
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"
