"""Mint, check, list and revoke proxy keys. Each runs in its caller's transaction; the
posting engine keeps the holds a key pays for within its limit."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.audit import repository as audit
from creditsd.keys.service import check_lifetime, find_by_secret, new_secret
from creditsd.kit import ids
from creditsd.kit.pagination import Page, decode_cursor, encode_cursor
from creditsd.ledger import accounts as ledger_accounts
from creditsd.ledger import repository as ledger_repo
from creditsd.ledger import service as ledger_service
from creditsd.ledger.errors import ProxyKeyExpired, ProxyKeyNotFound
from creditsd.members.service import require_member
from creditsd.proxy_keys import repository as repo
from creditsd.proxy_keys.models import ProxyKey
from creditsd.tables import proxy_keys

SECRET_PREFIX = "cdp_"  # noqa: S105 - a prefix, not a secret


@dataclass(frozen=True, slots=True, kw_only=True)
class Minting:
    """A proxy key asked for: the account it pays for (an id or alias), the app minting
    it, and its optional member of the account (every call is that member's), name,
    lifetime, spend limit (minor units) and rate limit (calls a minute)."""

    account_id: str
    app: str
    member: str | None = None
    name: str | None = None
    expires_in: timedelta | None = None
    spend_limit: int | None = None
    rate_limit: int | None = None


async def mint(
    conn: AsyncConnection,
    asked: Minting,
    policy: ledger_service.Policy,
    now: datetime,
    *,
    actor: str,
) -> tuple[ProxyKey, str]:
    """A new key for the account an id or alias names (created if the policy allows) and
    its secret, which is returned once and never stored (audited). A key for a member
    needs the account to have that member now (404 ``member_not_found``); one removed
    later leaves the key's calls refused as the engine refuses any unknown member."""
    app, name, spend_limit, rate_limit = asked.app, asked.name, asked.spend_limit, asked.rate_limit
    owner = await ledger_accounts.resolve_account(conn, asked.account_id, policy, now)
    if asked.member is not None:
        await require_member(conn, owner, asked.member)
    lifetime = asked.expires_in
    expires_at = None if lifetime is None else now + check_lifetime(lifetime)
    secret = new_secret(SECRET_PREFIX)
    key = ProxyKey(
        id=ids.new_id("pxk"),
        account_id=owner,
        member_id=asked.member,
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
            "member": asked.member,
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
        assert key.expires_at is not None
        raise ProxyKeyExpired(key.expires_at)
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
