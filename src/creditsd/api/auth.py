"""API key authentication and scopes, enforced here and nowhere else."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from creditsd import db
from creditsd.errors import Forbidden, Unauthenticated
from creditsd.inprocess import Ledger
from creditsd.keys import service as keys
from creditsd.keys.service import ApiKey

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer cdk_…`")


def get_ledger(request: Request) -> Ledger:
    """The ledger the app serves."""
    return request.app.state.ledger  # type: ignore[no-any-return]


def require(scope: str) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency that admits only keys whose scope includes ``scope``."""

    async def authenticated(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> ApiKey:
        if credentials is None:
            raise Unauthenticated("send an API key as 'Authorization: Bearer <key>'")
        ledger = get_ledger(request)
        key = await db.run(
            ledger.engine,
            lambda conn: keys.authenticate(conn, credentials.credentials),
            readonly=True,
        )
        if key is None:
            raise Unauthenticated("unknown or revoked API key")
        return ensure_scope(key, scope)

    return authenticated


def ensure_scope(key: ApiKey, scope: str, what: str = "this") -> ApiKey:
    """Refuse with 403 unless the key's scope includes ``scope`` (``what`` says for what)."""
    if not key.allows(scope):
        raise Forbidden(f"{what} needs a key with scope {scope!r}; this key's is {key.scope!r}")
    return key


def actor(key: ApiKey) -> str:
    """How an API key appears in the audit log."""
    return f"key:{key.id}:{key.name}"


LedgerDep = Annotated[Ledger, Depends(get_ledger)]
AdminKey = Annotated[ApiKey, Depends(require("admin"))]
AppKey = Annotated[ApiKey, Depends(require("app"))]
ReadKey = Annotated[ApiKey, Depends(require("read"))]
