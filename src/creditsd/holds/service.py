"""The hold lifecycle, as entries of the posting engine: open (a pending transfer) →
capture (in slices or once) | release | extend | expire.

Each request is a command (:class:`OpenHold`, :class:`CaptureHold`) that builds the
engine's entry, fingerprinted by :func:`~creditsd.kit.idempotency.fingerprint_of`; the
engine applies it under its account's lock
(:mod:`creditsd.ledger.posting`), in a batch of its own or in a group commit's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.holds import repository as repo
from creditsd.holds.errors import ExpiryTooLong
from creditsd.kit import ids
from creditsd.kit.idempotency import asked_as_items, asked_if_given, fingerprint_of, not_asked
from creditsd.ledger import posting
from creditsd.ledger import service as ledger_service
from creditsd.ledger.errors import HoldNotFound
from creditsd.ledger.models import Hold, Metadata


def expiry(now: datetime, expires_in: int, maximum: int) -> datetime:
    """``expires_in`` seconds from ``now``; refused past ``maximum`` seconds."""
    if expires_in > maximum:
        raise ExpiryTooLong(maximum)
    return now + timedelta(seconds=expires_in)


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenHold:
    """A hold asked for: ``amount`` of the account's available credits reserved for
    ``expires_in`` seconds. A priced estimate carries its breakdown (``pricing``) and the
    ``use`` it was priced from, asked in place of the amount; ``proxy_key_id`` names the
    proxy key that pays (within its limit); ``fresh_key`` says the key was minted for this
    request (no replay to look for)."""

    operation: ClassVar[str] = "hold"
    account_id: str
    amount: int
    expires_in: int
    app: str = not_asked()
    idempotency_key: str = not_asked()
    description: str | None = None
    metadata: Metadata | None = None
    use: Metadata | None = asked_as_items(instead_of="amount", default=None)
    proxy_key_id: str | None = asked_if_given(default=None)
    pricing: Metadata | None = not_asked(default=None)
    fresh_key: bool = not_asked(default=False)

    def reservation(self, now: datetime, max_expires_in: int) -> posting.Reservation:
        """The engine's entry that opens the hold at ``now``; an expiry past
        ``max_expires_in`` seconds is refused."""
        ledger_service.check_account_id(self.account_id)
        hold = Hold(
            id=ids.new_id("hold"),
            account_id=self.account_id,
            amount=self.amount,
            captured=0,
            status="open",
            expires_at=expiry(now, self.expires_in, max_expires_in),
            app=self.app,
            idempotency_key=self.idempotency_key,
            description=self.description,
            metadata=self.metadata,
            created_at=now,
            updated_at=now,
            pricing=self.pricing,
            proxy_key_id=self.proxy_key_id,
        )
        return posting.Reservation(hold, fingerprint_of(self), fresh_key=self.fresh_key)


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureHold:
    """A capture asked for: ``amount`` (the actual cost) charged against a hold (see
    :class:`~creditsd.ledger.posting.Capture` for how it settles). A priced amount carries
    its breakdown and the ``use`` it was priced from, asked in place of the amount."""

    operation: ClassVar[str] = "capture"
    hold_id: str
    amount: int
    app: str = not_asked()
    idempotency_key: str = not_asked()
    final: bool = True
    overrun: str = not_asked(default="cap")
    description: str | None = None
    metadata: Metadata | None = None
    use: Metadata | None = asked_as_items(instead_of="amount", default=None)
    pricing: Metadata | None = not_asked(default=None)
    finished_at: datetime | None = not_asked(default=None)

    def entry(self) -> posting.Capture:
        """The engine's entry that captures the hold."""
        return posting.Capture(
            hold_id=self.hold_id,
            amount=self.amount,
            app=self.app,
            idempotency_key=self.idempotency_key,
            fingerprint=fingerprint_of(self),
            final=self.final,
            overrun=self.overrun,
            description=self.description,
            metadata=self.metadata,
            pricing=self.pricing,
            finished_at=self.finished_at,
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
    """Close the expired holds (and lapse the due lots) of up to ``limit`` accounts; how
    many holds it closed."""
    owners = await repo.accounts_with_expired_holds(conn, now, limit)
    swept = await posting.sweep(conn, owners, policy, now)
    return len({hold.hold_id for account in swept for hold in account.expired_holds})
