"""Create, check, list and revoke API keys. Only a hash of each secret is stored."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from creditsd.audit import repository as audit
from creditsd.kit import ids, jsonio
from creditsd.kit.errors import InvalidRequest, NotFound, Unauthenticated
from creditsd.ledger.models import INTERNAL_APPS
from creditsd.tables import SCOPES, api_keys

SECRET_PREFIX = "cdk_"  # noqa: S105 - a prefix, not a secret
APP_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}"
_APP_NAME = re.compile(APP_NAME_PATTERN)
# Each scope and the scopes it includes.
GRANTS_OF = {"admin": {"admin", "app", "read"}, "app": {"app", "read"}, "read": {"read"}}
MAX_LIFETIME = timedelta(days=3650)
_LIFETIME = re.compile(r"([0-9]{1,9})([hd])")  # nine digits: beyond any bound, within timedelta
_LIFETIME_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1)}

_K = api_keys.c
_COLUMNS = (_K.id, _K.name, _K.scope, _K.hint, _K.created_at, _K.revoked_at, _K.expires_at)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as stored: never the secret, only a hint of it."""

    id: str
    name: str
    scope: str
    hint: str
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None

    def allows(self, scope: str) -> bool:
        """Whether this key may act with ``scope``."""
        return scope in GRANTS_OF[self.scope]

    def expired(self, now: datetime) -> bool:
        """Whether the key has stopped working because its expiry has come."""
        return self.expires_at is not None and self.expires_at <= now


class KeyNotFound(NotFound):
    """No API key with this id."""

    code = "key_not_found"


class KeyExpired(Unauthenticated):
    """The key's expiry has come: it no longer works."""

    code = "key_expired"

    def __init__(self, key: ApiKey) -> None:
        assert key.expires_at is not None  # only a key with an expiry expires
        super().__init__(
            f"this API key expired at {jsonio.format_timestamp(key.expires_at)}; "
            "create a new one (creditsd keys create)"
        )


def parse_lifetime(text: str) -> timedelta:
    """How long a new key lives, written in hours or days: ``12h`` → 12 hours, ``30d`` →
    30 days; within :func:`check_lifetime`'s bounds."""
    match = _LIFETIME.fullmatch(text)
    if match is None:
        raise InvalidRequest(f"{text!r} is not a lifetime: write hours or days, like 12h or 30d")
    return check_lifetime(int(match[1]) * _LIFETIME_UNITS[match[2]])


def check_lifetime(lifetime: timedelta) -> timedelta:
    """A key's lifetime, if more than zero and at most :data:`MAX_LIFETIME` (422 if not)."""
    if not timedelta(0) < lifetime <= MAX_LIFETIME:
        raise InvalidRequest(
            f"expires_in must be more than zero and at most {MAX_LIFETIME.days} days"
        )
    return lifetime


@dataclass(frozen=True, slots=True)
class Secret:
    """A new secret: its text (shown once), its digest (all that is stored) and the hint
    shown in its place (``cdk_…x7Qa``)."""

    text: str
    digest: str
    hint: str


def new_secret(prefix: str) -> Secret:
    """A fresh random secret starting with ``prefix``."""
    text = prefix + secrets.token_urlsafe(32)
    return Secret(text, digest(text), f"{prefix}…{text[-4:]}")


def digest(secret: str) -> str:
    """What is stored of a secret: its SHA-256, in hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


async def find_by_secret(
    conn: AsyncConnection,
    table: Table,
    columns: tuple[ColumnElement[Any], ...],
    secret: str,
    prefix: str,
) -> Row[*tuple[Any, ...]] | None:
    """The unrevoked row of ``table`` (a ``secret_hash`` and a ``revoked_at`` column) that
    this secret belongs to, as ``columns``; None for any other secret."""
    if not secret.startswith(prefix) or len(secret) > 200:
        return None
    wanted = digest(secret)
    row = (
        await conn.execute(
            select(*columns, table.c.secret_hash).where(
                table.c.secret_hash == wanted, table.c.revoked_at.is_(None)
            )
        )
    ).first()
    # The lookup is by digest; the comparison repeats it in constant time all the same.
    if row is None or not hmac.compare_digest(row.secret_hash, wanted):
        return None
    return row


async def create_key(
    conn: AsyncConnection,
    name: str,
    scope: str,
    now: datetime,
    *,
    actor: str,
    expires_in: timedelta | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its secret; the secret is returned once and never stored. A key
    given ``expires_in`` stops working that long after ``now``."""
    if scope not in SCOPES:
        raise InvalidRequest(f"scope must be one of {', '.join(SCOPES)}")
    if not _APP_NAME.fullmatch(name):
        raise InvalidRequest("key names are 1-64 letters, digits and _ . : -")
    if name in INTERNAL_APPS:
        raise InvalidRequest(f"the key name {name!r} is reserved for creditsd's own writes")
    expires_at = None if expires_in is None else now + check_lifetime(expires_in)
    secret = new_secret(SECRET_PREFIX)
    key = ApiKey(ids.new_id("key"), name, scope, secret.hint, now, None, expires_at)
    await conn.execute(
        insert(api_keys).values(
            id=key.id,
            name=name,
            scope=scope,
            secret_hash=secret.digest,
            hint=key.hint,
            created_at=now,
            expires_at=expires_at,
        )
    )
    await audit.record(
        conn,
        actor=actor,
        action="key.create",
        target=key.id,
        before=None,
        after={
            "name": name,
            "scope": scope,
            "expires_at": None if expires_at is None else expires_at.isoformat(),
        },
        now=now,
    )
    return key, secret.text


async def authenticate(conn: AsyncConnection, secret: str, now: datetime) -> ApiKey | None:
    """The live key this secret belongs to, if any. An expired key is refused (401
    ``key_expired``), and so is one stored under a name since reserved for creditsd's own
    writes: it could take their keys."""
    row = await find_by_secret(conn, api_keys, _COLUMNS, secret, SECRET_PREFIX)
    if row is None:
        return None
    if row.name in INTERNAL_APPS:
        raise Unauthenticated(
            f"keys named {row.name!r} are refused: the name is reserved for creditsd's own "
            "writes; create a key with another name and revoke this one"
        )
    key = ApiKey(*row[:-1])
    if key.expired(now):
        raise KeyExpired(key)
    return key


async def live_key(conn: AsyncConnection, key_id: str, now: datetime) -> ApiKey | None:
    """The key with this id while it still works: not revoked, not expired (None after)."""
    row = (
        await conn.execute(select(*_COLUMNS).where(_K.id == key_id, _K.revoked_at.is_(None)))
    ).first()
    if row is None or row.name in INTERNAL_APPS:
        return None
    key = ApiKey(*row)
    return None if key.expired(now) else key


async def list_keys(conn: AsyncConnection) -> list[ApiKey]:
    """Every key, oldest first, revoked ones included."""
    rows = await conn.execute(select(*_COLUMNS).order_by(_K.id))
    return [ApiKey(*row) for row in rows]


async def revoke_key(conn: AsyncConnection, key_id: str, now: datetime, *, actor: str) -> ApiKey:
    """Stop a key from working; revoking twice is harmless."""
    row = (
        await conn.execute(
            update(api_keys)
            .where(_K.id == key_id, _K.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(_K.id)
        )
    ).first()
    if row is not None:
        await audit.record(
            conn,
            actor=actor,
            action="key.revoke",
            target=key_id,
            before=None,
            after={"revoked_at": now.isoformat()},
            now=now,
        )
    found = (await conn.execute(select(*_COLUMNS).where(_K.id == key_id))).first()
    if found is None:
        raise KeyNotFound(f"no API key {key_id!r}", key_id=key_id)
    return ApiKey(*found)
