"""Transfers: the typed requests that become the posting engine's movements
(:class:`Grant`, :class:`Adjustment`, :class:`Charge`), writing one (a grant or an
adjustment audited), letting a transfer's credits lapse later, and reading transfers back
with the lots they spent or filled. Each operation runs inside a transaction its caller
owns; none commits."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.audit import repository as audit
from creditsd.ledger import lot_repository as lot_repo
from creditsd.ledger import posting as posting_engine
from creditsd.ledger import repository as repo
from creditsd.ledger.commands import Movement
from creditsd.ledger.errors import TransferNotFound
from creditsd.ledger.lots import LotSpec
from creditsd.ledger.models import (
    ADJUSTMENTS,
    GRANTS,
    REVENUE,
    Metadata,
    Transfer,
    check_account_id,
)
from creditsd.ledger.posting import Policy

__all__ = ["Movement", "Policy"]


async def post_transfer(
    conn: AsyncConnection, movement: Movement, policy: Policy, now: datetime
) -> Transfer:
    """Write one transfer exactly once (see :mod:`creditsd.ledger.posting`)."""
    return await posting_engine.transfer(conn, movement, policy, now)


async def postpone_lapse(
    conn: AsyncConnection, account_id: str, transfer_id: str, expires_at: datetime, now: datetime
) -> None:
    """Let the credits a transfer put into an account lapse at ``expires_at`` when that is
    later than their lot's expiry (never sooner, never once lapsed), keeping the account's
    soonest expiry in step. The caller holds the account's row lock."""
    if await lot_repo.postpone(conn, transfer_id, expires_at, now):
        soonest = await lot_repo.soonest_expiry(conn, account_id)
        await repo.update_account(conn, account_id, {"lots_expire_at": soonest}, now)


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """Credits given to an account from ``@grants``, in a lot (a promotion unless ``lot``
    says otherwise)."""

    account_id: str
    amount: int
    app: str
    idempotency_key: str
    reason: str | None = None
    metadata: Metadata | None = None
    lot: LotSpec | None = None

    def movement(self) -> Movement:
        """The transfer this grant is."""
        return Movement(
            kind="grant",
            debit_account_id=GRANTS,
            credit_account_id=self.account_id,
            amount=self.amount,
            app=self.app,
            idempotency_key=self.idempotency_key,
            description=self.reason,
            metadata=self.metadata,
            lot=self.lot,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Adjustment:
    """A correction of ``change`` minor units against ``@adjustments``: a credit when
    positive, a debit when negative, which goes on whatever the account's status (an
    operator's correction) but never past what the account can spend."""

    account_id: str
    change: int
    app: str
    idempotency_key: str
    reason: str

    def movement(self) -> Movement:
        """The transfer this adjustment is."""
        credit = self.change > 0
        return Movement(
            kind="adjustment",
            debit_account_id=ADJUSTMENTS if credit else self.account_id,
            credit_account_id=self.account_id if credit else ADJUSTMENTS,
            amount=abs(self.change),
            app=self.app,
            idempotency_key=self.idempotency_key,
            description=self.reason,
            system=not credit,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Charge:
    """An account's credits spent (to ``@revenue``): ``amount``, or a priced amount with
    its breakdown (``pricing``) and the ``use`` it was priced from. ``fresh_key``: the key
    was minted for this request."""

    account_id: str
    amount: int
    app: str
    idempotency_key: str
    description: str | None = None
    metadata: Metadata | None = None
    pricing: Metadata | None = None
    use: Metadata | None = None
    fresh_key: bool = False
    member: str | None = None  # the wallet's member it is spent for

    def movement(self) -> Movement:
        """The transfer this charge is."""
        check_account_id(self.account_id)
        return Movement(
            kind="charge",
            debit_account_id=self.account_id,
            credit_account_id=REVENUE,
            amount=self.amount,
            app=self.app,
            idempotency_key=self.idempotency_key,
            description=self.description,
            metadata=self.metadata,
            pricing=self.pricing,
            use=self.use,
            fresh_key=self.fresh_key,
            member=self.member,
        )


async def grant(
    conn: AsyncConnection, request: Grant, policy: Policy, now: datetime, *, actor: str
) -> Transfer:
    """Write a grant (an admin action, so it is audited)."""
    check_account_id(request.account_id)
    transfer = await post_transfer(conn, request.movement(), policy, now)
    if not transfer.replayed:
        await audit.record(
            conn,
            actor=actor,
            action="grant",
            target=transfer.credit_account_id,
            before={"balance": (transfer.credit_balance_after or 0) - request.amount},
            after={"balance": transfer.credit_balance_after, "transfer_id": transfer.id},
            now=now,
        )
    return transfer


async def adjust(
    conn: AsyncConnection, request: Adjustment, policy: Policy, now: datetime, *, actor: str
) -> Transfer:
    """Write an adjustment (audited, its reason with it)."""
    check_account_id(request.account_id)
    transfer = await post_transfer(conn, request.movement(), policy, now)
    if not transfer.replayed:
        balance = transfer.balance_after(transfer.customer_account_id)
        await audit.record(
            conn,
            actor=actor,
            action="adjustment",
            target=transfer.customer_account_id,
            before={"balance": None if balance is None else balance - request.change},
            after={"balance": balance, "transfer_id": transfer.id, "reason": request.reason},
            now=now,
        )
    return transfer


async def get_transfer(conn: AsyncConnection, transfer_id: str) -> Transfer:
    """One transfer by id."""
    transfer = await repo.get_transfer(conn, transfer_id)
    if transfer is None:
        raise TransferNotFound(transfer_id)
    (transfer,) = await with_lots(conn, [transfer])
    return transfer


async def account_transactions(
    conn: AsyncConnection, account_id: str, limit: int, before: str | None
) -> tuple[list[Transfer], str | None]:
    """An account's transfers, newest first, and the id to continue before (if more remain)."""
    page = await repo.account_transfers(conn, account_id, limit + 1, before)
    more = len(page) > limit
    page = await with_lots(conn, page[:limit])
    return page, page[-1].id if more else None


async def with_lots(conn: AsyncConnection, transfers: list[Transfer]) -> list[Transfer]:
    """The transfers with the lots each spent or filled."""
    parts = await lot_repo.parts_of(conn, [transfer.id for transfer in transfers])
    return [replace(transfer, lots=tuple(parts.get(transfer.id, ()))) for transfer in transfers]
