"""Idempotency keys and request fingerprints."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Collection, Mapping
from dataclasses import field, fields
from typing import Any, ClassVar, Protocol

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


class Command(Protocol):
    """A write as a typed request: a dataclass whose fields say what it asks, and the
    ``operation`` it is."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def operation(self) -> str:
        """What kind of write this is (``charge``, ``hold``…)."""
        ...


_ROLE = "creditsd_fingerprint"


def not_asked(**options: Any) -> Any:
    """A command field that says how a write is carried out, not what it asks (its key,
    its app, its price, when it ran): left out of its fingerprint."""
    return field(**options, metadata={_ROLE: ("not_asked",)})


def asked_if_given(render: Callable[[Any], object] | None = None, **options: Any) -> Any:
    """A command field asked only when given (left out of the fingerprint when None),
    fingerprinted as ``render`` writes it."""
    return field(**options, metadata={_ROLE: ("if_given", render)})


def asked_as_items(
    instead_of: str | None = None, leaving_out: Collection[str] = (), **options: Any
) -> Any:
    """A mapping whose items are asked one by one (but for the keys ``leaving_out``), when
    it is given, in place of the field ``instead_of``: a priced amount is asked as the use
    it was priced from, so that a replay matches whatever the catalog says by then."""
    return field(**options, metadata={_ROLE: ("items", instead_of, frozenset(leaving_out))})


def fingerprint_of(command: Command) -> str:
    """The one place a write's fingerprint is computed, so that a key reused with another
    request is caught: a digest of its ``operation`` and every field of the command that
    asks, as the field's declaration says."""
    asked: dict[str, object] = {}
    spread: list[tuple[str | None, Mapping[str, object], frozenset[str]]] = []
    for declared in fields(command):
        value = getattr(command, declared.name)
        role = declared.metadata.get(_ROLE, ("asked",))
        left_out = value is None or (role[0] == "items" and not value)
        if role[0] == "not_asked" or (role[0] != "asked" and left_out):
            continue
        if role[0] == "items":
            spread.append((role[1], value, role[2]))
        elif role[0] == "if_given" and role[1] is not None:
            asked[declared.name] = role[1](value)
        else:
            asked[declared.name] = value
    for replaced, items, leaving_out in spread:
        if replaced is not None:
            del asked[replaced]
        asked |= {name: item for name, item in items.items() if name not in leaving_out}
    canonical = jsonio.canonical({"operation": command.operation, **asked})
    return hashlib.sha256(canonical.encode()).hexdigest()
