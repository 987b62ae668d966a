"""Idempotency keys and request fingerprints."""

from __future__ import annotations

import hashlib
import re
import secrets

from creditsd.kit import jsonio
from creditsd.kit.errors import InvalidRequest

KEY_PATTERN = r"[\x21-\x7e]{1,255}"
_KEY = re.compile(KEY_PATTERN)


class InvalidIdempotencyKey(InvalidRequest):
    """Keys are 1–255 printable ASCII characters without spaces."""

    code = "invalid_idempotency_key"


def resolve_key(key: str | None) -> str:
    """The caller's key, checked; or a fresh one when the caller sent none (no replay then)."""
    if key is None:
        return f"auto_{secrets.token_urlsafe(18)}"
    if not _KEY.fullmatch(key):
        raise InvalidIdempotencyKey("idempotency keys are 1-255 printable ASCII characters")
    return key


def fingerprint(operation: str, **fields: object) -> str:
    """A digest of what a write asked for, so a reused key with another request is caught."""
    canonical = jsonio.canonical({"operation": operation, **fields})
    return hashlib.sha256(canonical.encode()).hexdigest()
