"""The hold lifecycle: open → capture (in slices or once) | release | extend | expire."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd import ids
from creditsd.holds import repository as repo
from creditsd.holds.errors import ExpiryTooLong, HoldExceeded, HoldNotFound, HoldNotOpen
from creditsd.idempotency import fingerprint
from creditsd.ledger import posting
from creditsd.ledger import repository as ledger_repo
from creditsd.ledger import service as ledger
from creditsd.ledger.errors import InsufficientCredits
from creditsd.ledger.models import REVENUE, Hold, Metadata, Transfer
from creditsd.money import Money
from creditsd.proxy.keys import service as proxy_keys


def _expiry(now: datetime, expires_in: int, maximum: int) -> datetime:
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
    ``proxy_key_id`` names the proxy key that pays; ``fresh_key`` says the key was minted
    for this request (no replay to look for).
    """
    ledger.check_account_id(account_id)
    expires_at = _expiry(now, expires_in, max_expires_in)
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
        expires_at=expires_at,
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


async def open_hold(
    conn: AsyncConnection, reservation: posting.Reservation, policy: ledger.Policy, now: datetime
) -> Hold:
    """Open a hold. One paid by a proxy key is refused when the key is revoked or expired
    (401), names another account (403) or would pass the key's spend limit (402)."""
    proxy_key_id = reservation.hold.proxy_key_id
    if proxy_key_id is None:
        return await posting.reserve(conn, reservation, policy, now)
    key = await proxy_keys.admit(conn, proxy_key_id, now)
    opened = await posting.reserve(conn, reservation, policy, now)
    await proxy_keys.check_limit(conn, key, opened, now)
    return opened


async def _locked(conn: AsyncConnection, hold_id: str) -> Hold:
    hold = await repo.get_hold(conn, hold_id, lock=True)
    if hold is None:
        raise HoldNotFound(hold_id)
    return hold


async def _expire(conn: AsyncConnection, hold: Hold, policy: ledger.Policy, now: datetime) -> Hold:
    """Close an open hold whose time has passed (no sweeper got to it yet)."""
    await posting.sweep(conn, [hold.account_id], policy, now)
    return await _locked(conn, hold.id)


async def capture_hold(
    conn: AsyncConnection,
    hold_id: str,
    amount: int,
    policy: ledger.Policy,
    now: datetime,
    *,
    money: Money,
    final: bool = True,
    overrun: str = "cap",
    app: str,
    idempotency_key: str,
    description: str | None = None,
    metadata: Metadata | None = None,
    pricing: Metadata | None = None,
    asked: Metadata | None = None,
) -> tuple[Hold, Transfer]:
    """Charge ``amount`` (the actual cost) against a hold.

    A final capture (the default) closes the hold and gives back whatever it still
    reserved. Past the hold it charges the difference when the account can afford it
    (and a proxy key paying for the hold stays within its limit); when it cannot,
    ``overrun="cap"`` charges what can still be paid and records the rest as
    uncollected, ``"refuse"`` answers 402 and changes nothing. A capture with
    ``final=False`` takes a slice, at most what the hold still reserves, and leaves the
    rest held. The transfer's ``pricing`` records the settlement.
    """
    locked = await repo.lock_for_capture(conn, hold_id, app, idempotency_key)
    if locked is None:
        raise HoldNotFound(hold_id)
    hold, found = locked
    if found is None and (hold.status != "open" or hold.captured):
        # A capture that waited for the hold's lock (PostgreSQL) saw the key as it was
        # before; one that settled the hold meanwhile is found by looking again.
        found = await ledger_repo.find_transfer_by_key(conn, app, idempotency_key)
    request = fingerprint(
        "capture",
        hold_id=hold_id,
        **(asked or {"amount": amount}),
        final=final,
        description=description,
        metadata=metadata,
    )
    if found is not None:
        replayed = ledger.check_replay(*found, request, idempotency_key)
        return hold, (await ledger.with_lots(conn, [replayed]))[0]
    if (status := hold.status_at(now)) != "open":
        raise HoldNotOpen(hold_id, status)
    remaining = hold.amount - hold.captured
    if not final and amount > remaining:
        raise HoldExceeded(hold_id)
    ceiling = amount
    if hold.proxy_key_id is not None:
        ceiling = await proxy_keys.ceiling(conn, hold, amount, now, cap=overrun == "cap")
    charged = ceiling
    for _attempt in range(3):
        posting = ledger.Posting(
            kind="capture",
            debit_account_id=hold.account_id,
            credit_account_id=REVENUE,
            amount=charged,
            app=app,
            idempotency_key=idempotency_key,
            fingerprint=request,
            description=description if description is not None else hold.description,
            metadata=metadata if metadata is not None else hold.metadata,
            hold_id=hold_id,
            released_held=remaining if final else charged,
            pricing=_settlement(money, pricing, hold, amount, charged, remaining, final),
            proxy_key_id=hold.proxy_key_id,
            fresh_key=True,  # looked up with the hold, under its lock
        )
        try:
            transfer = await ledger.post_transfer(conn, posting, policy, now)
            break
        except InsufficientCredits as short:
            # Only a final capture past the hold can be short: it needs more than it releases.
            charged = min(ceiling, remaining + max(short.available, 0))
            if overrun != "cap" or charged <= 0 or charged == posting.amount:
                raise
    else:  # pragma: no cover - the account kept shrinking under us
        raise InsufficientCredits(hold.account_id, required=amount - remaining, available=0)
    if hold.proxy_key_id is not None:
        await proxy_keys.add_spent(conn, hold, charged)
    hold = await repo.set_hold(
        conn,
        hold_id,
        {
            "captured": hold.captured + charged,
            "status": "captured" if final else "open",
            "updated_at": now,
        },
    )
    return hold, transfer


def _settlement(
    money: Money,
    pricing: Metadata | None,
    hold: Hold,
    asked: int,
    charged: int,
    remaining: int,
    final: bool,
) -> Metadata | None:
    """What a capture records beside its price: how it settled against the hold (credits)."""
    if not final and pricing is None:
        return None
    if asked <= remaining:
        outcome = "within_hold"
    elif charged == asked:
        outcome = "over_hold_charged"
    else:
        outcome = "over_hold_capped"
    return {
        **(pricing or {}),
        "settlement": {
            "outcome": outcome,
            "estimate": money.to_decimal(hold.amount),
            "held_before": money.to_decimal(remaining),
            "actual": money.to_decimal(asked),
            "charged": money.to_decimal(charged),
            "released": money.to_decimal(max(remaining - charged, 0) if final else 0),
            "uncollected": money.to_decimal(asked - charged),
        },
    }


async def release_hold(
    conn: AsyncConnection, hold_id: str, policy: ledger.Policy, now: datetime
) -> Hold:
    """Give back what an open hold reserves. Releasing a released or expired hold is a no-op."""
    hold = await _locked(conn, hold_id)
    if hold.status_at(now) == "expired" and hold.status == "open":
        return await _expire(conn, hold, policy, now)
    if hold.status in {"released", "expired"}:
        return hold
    if hold.status != "open":
        raise HoldNotOpen(hold_id, hold.status)
    await posting.release(conn, hold.account_id, hold.amount - hold.captured, policy, now)
    return await repo.set_hold(conn, hold_id, {"status": "released", "updated_at": now})


async def extend_hold(
    conn: AsyncConnection, hold_id: str, expires_in: int, now: datetime, *, max_expires_in: int
) -> Hold:
    """Push an open hold's expiry to ``expires_in`` seconds from now (a heartbeat)."""
    hold = await _locked(conn, hold_id)
    if hold.status_at(now) != "open":
        raise HoldNotOpen(hold_id, hold.status_at(now))
    return await repo.set_hold(
        conn,
        hold_id,
        {"expires_at": _expiry(now, expires_in, max_expires_in), "updated_at": now},
    )


async def get_hold(conn: AsyncConnection, hold_id: str) -> Hold:
    """One hold by id."""
    hold = await repo.get_hold(conn, hold_id)
    if hold is None:
        raise HoldNotFound(hold_id)
    return hold


async def expire_due(
    conn: AsyncConnection, now: datetime, *, policy: ledger.Policy, limit: int = 500
) -> int:
    """Close the expired holds of up to ``limit`` accounts; how many holds it closed."""
    owners = await repo.accounts_with_expired_holds(conn, now, limit)
    swept = await posting.sweep(conn, owners, policy, now)
    return len({hold.hold_id for account in swept for hold in account.expired_holds})
