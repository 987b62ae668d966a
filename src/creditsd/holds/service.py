"""The hold lifecycle, as entries of the posting engine: open (a pending transfer) →
capture (in slices or once) | release | extend | expire.

Each function here builds the entry a request asks for (its fingerprint computed from
what it asks, once); the engine applies it under its account's lock
(:mod:`creditsd.ledger.posting`), in a batch of its own or in a group commit's.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.holds import repository as repo
from creditsd.holds.errors import ExpiryTooLong
from creditsd.kit import ids
from creditsd.kit.idempotency import fingerprint
from creditsd.ledger import posting
from creditsd.ledger import service as ledger_service
from creditsd.ledger.errors import HoldNotFound
from creditsd.ledger.models import Hold, Metadata


def expiry(now: datetime, expires_in: int, maximum: int) -> datetime:
    """``expires_in`` seconds from ``now``; refused past ``maximum`` seconds."""
    if expires_in > maximum:
        raise ExpiryTooLong(maximum)
    return now + timedelta(seconds=expires_in)


def reservation(
    account_id: str,
    amount: int,
    expires_in: int,
    now: datetime,
    *,
    max_expires_in: int,
    app: str,
    idempotency_key: str,
    description: str | None = None,
    metadata: Metadata | None = None,
    pricing: Metadata | None = None,
    asked: Metadata | None = None,
    proxy_key_id: str | None = None,
    fresh_key: bool = False,
) -> posting.Reservation:
    """The hold to open: ``amount`` of the account's available credits reserved until it
    expires, ``expires_in`` seconds from ``now``.

    A priced estimate passes its breakdown as ``pricing`` and the use as ``asked``;
    ``proxy_key_id`` names the proxy key that pays (within its limit); ``fresh_key`` says
    the key was minted for this request (no replay to look for).
    """
    ledger_service.check_account_id(account_id)
    request = fingerprint(
        "hold",
        account_id=account_id,
        **(asked or {"amount": amount}),
        expires_in=expires_in,
        description=description,
        metadata=metadata,
        **({} if proxy_key_id is None else {"proxy_key_id": proxy_key_id}),
    )
    hold = Hold(
        id=ids.new_id("hold"),
        account_id=account_id,
        amount=amount,
        captured=0,
        status="open",
        expires_at=expiry(now, expires_in, max_expires_in),
        app=app,
        idempotency_key=idempotency_key,
        description=description,
        metadata=metadata,
        created_at=now,
        updated_at=now,
        pricing=pricing,
        proxy_key_id=proxy_key_id,
    )
    return posting.Reservation(hold, request, fresh_key=fresh_key)


def capture(
    hold_id: str,
    amount: int,
    *,
    app: str,
    idempotency_key: str,
    final: bool = True,
    overrun: str = "cap",
    description: str | None = None,
    metadata: Metadata | None = None,
    pricing: Metadata | None = None,
    asked: Metadata | None = None,
    finished_at: datetime | None = None,
) -> posting.Capture:
    """The capture of ``amount`` (the actual cost) against a hold (see
    :class:`~creditsd.ledger.posting.Capture` for how it settles). A priced amount passes
    its breakdown as ``pricing`` and the use as ``asked``, which the fingerprint covers in
    place of the amount."""
    request = fingerprint(
        "capture",
        hold_id=hold_id,
        **(asked or {"amount": amount}),
        final=final,
        description=description,
        metadata=metadata,
    )
    return posting.Capture(
        hold_id=hold_id,
        amount=amount,
        app=app,
        idempotency_key=idempotency_key,
        fingerprint=request,
        final=final,
        overrun=overrun,
        description=description,
        metadata=metadata,
        pricing=pricing,
        finished_at=finished_at,
    )


async def get_hold(conn: AsyncConnection, hold_id: str) -> Hold:
    """One hold by id."""
    hold = await repo.get_hold(conn, hold_id)
    if hold is None:
        raise HoldNotFound(hold_id)
    return hold


async def expire_due(
    conn: AsyncConnection, now: datetime, *, policy: ledger_service.Policy, limit: int = 500
) -> int:
    """Close the expired holds of up to ``limit`` accounts; how many holds it closed."""
    owners = await repo.accounts_with_expired_holds(conn, now, limit)
    swept = await posting.sweep(conn, owners, policy, now)
    return len({hold.hold_id for account in swept for hold in account.expired_holds})
