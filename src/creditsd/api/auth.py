"""API key authentication and scopes for the HTTP API: every ``/v1`` route names the scope
it needs here (the admin console and the proxy's payers check keys through it too).

A key that authenticated (an API key, or a proxy key on ``/openai/v1``) is remembered for
``[server] key_cache_seconds`` (default 5) by the hash of its secret, which spares every
request a database transaction; so a revoked API key keeps working for at most that long
in a process that saw it just before (a revoked proxy key pays for nothing from the
moment it is revoked: the hold of each call checks it again). A key with
an expiry is never served from the cache past it: the database lookup then refuses it
(401 ``key_expired``). Failed lookups are never remembered: a new key works at once, and
unknown secrets cannot fill the cache.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Generic, Protocol, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.inprocess import Ledger
from creditsd.keys.service import ApiKey
from creditsd.kit.errors import Forbidden, Unauthenticated
from creditsd.proxy_keys.service import SECRET_PREFIX as PROXY_KEY_PREFIX

API_KEY = "creditsd.api_key"  # the request scope's entry naming the key that authenticated
bearer = HTTPBearer(
    auto_error=False,
    description="An API key: `Authorization: Bearer cdk_…`; on /openai/v1, a proxy key "
    "(`cdp_…`) too",
)


class Expiring(Protocol):
    """A key that may stop working when its expiry comes."""

    @property
    def id(self) -> str:
        """The key's id."""

    def expired(self, now: datetime) -> bool:
        """Whether its expiry has come."""


K = TypeVar("K", bound=Expiring)
Lookup = Callable[[AsyncConnection, str, datetime], Awaitable[K | None]]


class KeyCache(Generic[K]):
    """Keys that authenticated, by the SHA-256 of their secret, each for ``ttl`` seconds;
    ``lookup`` finds a key by its secret in the database (API keys', proxy keys')."""

    def __init__(
        self,
        ttl: float,
        lookup: Lookup[K],
        *,
        size: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.lookup = lookup
        self.size = size
        self.clock = clock
        self._keys: dict[bytes, tuple[float, K]] = {}

    async def authenticate(self, ledger: Ledger, secret: str) -> K | None:
        """The live key this secret belongs to, from the cache or else the database."""
        digest = hashlib.sha256(secret.encode()).digest()
        now = self.clock()
        cached = self._keys.get(digest)
        if cached is not None and cached[0] > now and not cached[1].expired(ledger.now()):
            return cached[1]
        key = await ledger.database.read(lambda conn, now: self.lookup(conn, secret, now))
        if key is None or self.ttl <= 0:
            self._keys.pop(digest, None)
            return key
        if len(self._keys) >= self.size:
            del self._keys[next(iter(self._keys))]  # the oldest entry
        self._keys[digest] = (now + self.ttl, key)
        return key

    def forget(self, key_id: str) -> None:
        """Drop a key this process revoked, so that it is refused here at once."""
        for digest in [d for d, (_, key) in self._keys.items() if key.id == key_id]:
            del self._keys[digest]


def ledger_of(request: Request) -> Ledger:
    """The ledger the app serves."""
    return request.app.state.ledger  # type: ignore[no-any-return]


async def get_ledger(request: Request) -> Ledger:
    """The ledger the app serves, as a dependency.

    ``async`` so that FastAPI calls it on the event loop: a plain ``def`` dependency is sent
    to a worker thread and back on every request.
    """
    return ledger_of(request)


async def admit(
    request: Request, credentials: HTTPAuthorizationCredentials | None, scope: str
) -> ApiKey:
    """The API key these credentials carry, if its scope includes ``scope`` (401 or 403
    otherwise)."""
    if credentials is None:
        raise Unauthenticated("send an API key as 'Authorization: Bearer <key>'")
    cache: KeyCache[ApiKey] = request.app.state.key_cache
    key = await cache.authenticate(ledger_of(request), credentials.credentials)
    if key is None:
        if credentials.credentials.startswith(PROXY_KEY_PREFIX):
            raise Unauthenticated("a proxy key works only on /openai/v1")
        raise Unauthenticated("unknown or revoked API key")
    request.scope[API_KEY] = key  # for the access log
    return ensure_scope(key, scope)


async def authenticate(request: Request, scope: str) -> ApiKey:
    """The request's API key, if its scope includes ``scope`` (401 or 403 otherwise)."""
    return await admit(request, await bearer(request), scope)


def require(scope: str) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency that admits only keys whose scope includes ``scope``."""

    async def authenticated(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> ApiKey:
        return await admit(request, credentials, scope)

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
