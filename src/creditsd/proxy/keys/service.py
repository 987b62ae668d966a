"""Mint, check, list and revoke proxy keys, and keep the holds they pay for within their
limits. Each runs in its caller's transaction."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd import ids
from creditsd.audit import repository as audit
from creditsd.keys.service import check_lifetime, find_by_secret, new_secret
from creditsd.ledger import repository as ledger_repo
from creditsd.ledger import service as ledger
from creditsd.ledger.models import Hold, Page
from creditsd.pagination import decode_cursor, encode_cursor
from creditsd.proxy.keys import repository as repo
from creditsd.proxy.keys.errors import (
    KeyLimitReached,
    ProxyKeyExpired,
    ProxyKeyNotFound,
    ProxyKeyRevoked,
    WrongAccount,
)
from creditsd.proxy.keys.models import ProxyKey
from creditsd.tables import proxy_keys

SECRET_PREFIX = "cdp_"  # noqa: S105 - a prefix, not a secret


async def mint(
    conn: AsyncConnection,
    account_id: str,
    policy: ledger.Policy,
    now: datetime,
    *,
    app: str,
    actor: str,
    name: str | None = None,
    expires_in: timedelta | None = None,
    spend_limit: int | None = None,
    rate_limit: int | None = None,
) -> tuple[ProxyKey, str]:
    """A new key for the account an id or alias names (created if the policy allows) and
    its secret, which is returned once and never stored (audited)."""
    owner = await ledger.resolve_account(conn, account_id, policy, now)
    expires_at = None if expires_in is None else now + check_lifetime(expires_in)
    secret = new_secret(SECRET_PREFIX)
    key = ProxyKey(
        id=ids.new_id("pxk"),
        account_id=owner,
        app=app,
        name=name,
        hint=secret.hint,
        spend_limit=spend_limit,
        spent=0,
        rate_limit=rate_limit,
        created_at=now,
        expires_at=expires_at,
        revoked_at=None,
    )
    await repo.insert_key(conn, key, secret.digest)
    await audit.record(
        conn,
        actor=actor,
        action="proxy_key.create",
        target=key.id,
        before=None,
        after={
            "account_id": owner,
            "app": app,
            "name": name,
            "spend_limit": spend_limit,
            "rate_limit": rate_limit,
            "expires_at": None if expires_at is None else expires_at.isoformat(),
        },
        now=now,
    )
    return key, secret.text


async def authenticate(conn: AsyncConnection, secret: str, now: datetime) -> ProxyKey | None:
    """The unrevoked key this secret belongs to, if any; an expired one is refused (401
    ``key_expired``)."""
    row = await find_by_secret(conn, proxy_keys, repo.COLUMNS, secret, SECRET_PREFIX)
    if row is None:
        return None
    key = ProxyKey(*row[:-1])
    if key.expired(now):
        raise ProxyKeyExpired(key)
    return key


async def list_keys(
    conn: AsyncConnection, account_id: str | None, limit: int, cursor: str | None, now: datetime
) -> Page[ProxyKey]:
    """Keys newest first, revoked ones included: of the account an id or alias names,
    when given."""
    if account_id is not None:
        account_id = await ledger_repo.resolve_name(conn, account_id) or account_id
    found = await repo.keys_page(conn, account_id, decode_cursor(cursor), limit + 1)
    page = await _with_held(conn, found[:limit], now)
    return Page(page, encode_cursor(page[-1].id) if len(found) > limit else None)


async def revoke(conn: AsyncConnection, key_id: str, now: datetime, *, actor: str) -> ProxyKey:
    """Stop a key from paying for any new call (audited); revoking twice is harmless.
    Calls it already admitted still settle."""
    if await repo.revoke(conn, key_id, now):
        await audit.record(
            conn,
            actor=actor,
            action="proxy_key.revoke",
            target=key_id,
            before=None,
            after={"revoked_at": now.isoformat()},
            now=now,
        )
    key = await repo.get_key(conn, key_id)
    if key is None:
        raise ProxyKeyNotFound(key_id)
    (shown,) = await _with_held(conn, [key], now)
    return shown


async def _with_held(conn: AsyncConnection, keys: list[ProxyKey], now: datetime) -> list[ProxyKey]:
    held = await repo.held(conn, [key.id for key in keys], now)
    return [replace(key, held=held.get(key.id, 0)) for key in keys]


# The holds a key pays for. Its row is locked before the account's, by opens and captures
# alike, so the two never wait for each other in opposite orders.


async def admit(conn: AsyncConnection, key_id: str, now: datetime) -> ProxyKey:
    """Lock a key that is to open a hold: refused (401) once revoked or expired, whatever
    a cache said when the request came in."""
    key = await repo.get_key(conn, key_id, lock=True)
    if key is None:
        raise ProxyKeyNotFound(key_id)
    if key.revoked_at is not None:
        raise ProxyKeyRevoked
    if key.expired(now):
        raise ProxyKeyExpired(key)
    return key


async def check_limit(conn: AsyncConnection, key: ProxyKey, hold: Hold, now: datetime) -> None:
    """Refuse a hold the key just opened for another account (403), or that took its spend
    (captured plus every open hold, this one included) past its limit (402); raised, the
    error rolls the hold back with the transaction."""
    if hold.account_id != key.account_id:
        raise WrongAccount(key.id, key.account_id)
    if key.spend_limit is None:
        return
    held = (await repo.held(conn, [key.id], now)).get(key.id, 0)
    if key.spent + held > key.spend_limit:
        available = key.spend_limit - key.spent - (held - hold.amount)
        raise KeyLimitReached(key.id, key.spend_limit, hold.amount, available)


async def ceiling(
    conn: AsyncConnection, hold: Hold, amount: int, now: datetime, *, cap: bool
) -> int:
    """Lock the key a hold is paid by; the most a capture of ``amount`` may charge: all of
    it within the key's limit, else (``cap``) what the limit leaves, else 402. What the
    limit leaves (less what the key spent and its other open holds reserve) is never less
    than what the hold itself reserves."""
    assert hold.proxy_key_id is not None
    key = await repo.get_key(conn, hold.proxy_key_id, lock=True)
    assert key is not None  # the hold's foreign key
    if key.spend_limit is None:
        return amount
    reserved = hold.amount - hold.captured
    held = (await repo.held(conn, [key.id], now)).get(key.id, 0)
    left = key.spend_limit - key.spent - (held - reserved)
    if amount <= left:
        return amount
    if not cap or left <= 0:
        raise KeyLimitReached(key.id, key.spend_limit, amount - reserved, left - reserved)
    return left


async def add_spent(conn: AsyncConnection, hold: Hold, amount: int) -> None:
    """Count what a capture of the hold charged in its key's spend."""
    assert hold.proxy_key_id is not None
    await repo.add_spent(conn, hold.proxy_key_id, amount)
