"""Signed, expiring tokens: portal links, the billing page's session cookies and the
console's notices.

A token is ``<payload>.<signature>``: the payload is base64url JSON carrying its purpose
and its expiry (``exp``, Unix seconds), the signature an HMAC-SHA256 of the payload under
the deployment's page secret. A token signed for one purpose is refused for another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Any

from creditsd.kit import jsonio
from creditsd.kit.errors import Unauthenticated

SECRET_BYTES = 32
RESERVED_CLAIMS = frozenset({"p", "exp"})  # the purpose and the expiry every token carries


class BadToken(Unauthenticated):
    """A token that is malformed, tampered with, expired or meant for something else."""

    code = "invalid_token"


def new_secret() -> str:
    """A fresh page secret."""
    return secrets.token_urlsafe(SECRET_BYTES)


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs and checks tokens under one secret."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"creditsd-pages:" + secret.encode()).digest()

    def _mac(self, text: str) -> str:
        return _encode(hmac.new(self._key, text.encode(), hashlib.sha256).digest())

    def sign(self, purpose: str, claims: dict[str, Any], expires_at: datetime) -> str:
        """A token for ``purpose`` carrying ``claims`` until ``expires_at``. A claim named
        like the purpose or the expiry (``p``, ``exp``) is refused (ValueError): it would
        replace them."""
        if reserved := RESERVED_CLAIMS.intersection(claims):
            raise ValueError(f"claims may not be named {', '.join(sorted(reserved))}")
        payload = {"p": purpose, "exp": int(expires_at.timestamp()), **claims}
        body = _encode(jsonio.dumps(payload).encode())
        return f"{body}.{self._mac(body)}"

    def verify(self, purpose: str, token: str, now: datetime) -> dict[str, Any]:
        """The claims of a live token signed for ``purpose``; :class:`BadToken` otherwise."""
        body, dot, signature = token.partition(".")
        if not dot or not hmac.compare_digest(signature.encode(), self._mac(body).encode()):
            raise BadToken("this link or session is not valid")
        try:
            payload = jsonio.loads(_decode(body))
        except (ValueError, binascii.Error) as exc:  # pragma: no cover - signed by us
            raise BadToken("this link or session is not valid") from exc
        if not isinstance(payload, dict) or payload.get("p") != purpose:
            raise BadToken("this link or session is not valid")
        if not isinstance(payload.get("exp"), int) or payload["exp"] <= now.timestamp():
            raise BadToken("this link or session has expired")
        return payload

    def tag(self, purpose: str, value: str) -> str:
        """A keyed digest of ``value`` (a form's CSRF token from its session's id)."""
        return self._mac(f"{purpose}:{value}")
