"""Identifiers: ours sort by creation time (a prefix, 48 bits of milliseconds, 80 random
bits); account ids are the caller's own."""

from __future__ import annotations

import base64
import secrets
import time

# RFC 4648's base32 digits written as Crockford's, lower case (which sort as they count).
_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789abcdefghjkmnpqrstvwxyz")
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
    # 130 bits, written as 26 base32 digits: the top two are always zero.
    encoded = base64.b32encode(value.to_bytes(20, "big")).decode().translate(_CROCKFORD)
    return f"{prefix}_{encoded[-26:]}"
