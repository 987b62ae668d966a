"""Ledger operations. Each runs inside a transaction its caller owns; none commits."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol, TypeVar

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from creditsd import ids
from creditsd.audit import repository as audit
from creditsd.idempotency import fingerprint
from creditsd.ledger import lot_repository as lot_repo
from creditsd.ledger import lots
from creditsd.ledger import repository as repo
from creditsd.ledger.errors import (
    AccountNotFound,
    AliasTaken,
    BalanceLimit,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidAccountId,
    OverdraftInUse,
    TransferNotFound,
    not_active,
)
from creditsd.ledger.lots import LotSpec
from creditsd.ledger.models import (
    EXPIRED,
    GRANTS,
    REVENUE,
    SIGNUP,
    Account,
    ExpiredHold,
    LotPart,
    Metadata,
    Transfer,
    Verification,
    is_system,
)
from creditsd.prepared import Raw, raw_transaction

ACCOUNT_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:@+=-]{0,127}"
_ACCOUNT_ID = re.compile(ACCOUNT_ID_PATTERN)

SYSTEM_APP = "creditsd"  # the app name on transfers creditsd makes by itself


class Observer(Protocol):
    """Hears of every ledger change in the transaction that makes it (the outbox)."""

    def wants_transfers(self) -> bool:
        """Whether any transfer may send a message (so the fast paths must not skip it)."""

    async def after_transfer(
        self, conn: AsyncConnection, transfer: Transfer, now: datetime
    ) -> None:
        """A transfer was written."""

    async def after_holds_expired(
        self, conn: AsyncConnection, expired: list[ExpiredHold], now: datetime
    ) -> None:
        """Holds ran out."""


@dataclass(frozen=True, slots=True)
class Policy:
    """Deployment rules the operations follow."""

    auto_create: bool = True
    signup_grant: int = 0
    observer: Observer | None = None


@dataclass(frozen=True, slots=True)
class Posting:
    """A transfer to be written: who pays whom, how much, why, under which idempotency key."""

    kind: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    app: str
    idempotency_key: str
    fingerprint: str
    description: str | None = None
    metadata: Metadata | None = None
    hold_id: str | None = None
    released_held: int = 0  # what the debit side stops holding (a hold being captured)
    pricing: Metadata | None = None  # how a priced amount was computed
    lot: LotSpec | None = None  # the lot a credit to a customer fills (else the kind's default)
    first_lot: str | None = None  # the lot a debit spends first (its refund, its expiry)
    system: bool = False  # creditsd's own debit: goes on whatever the account's status
    forced: bool = False  # taken even past what the account can spend (the rest is debt)


def movement(
    kind: str,
    debit_account_id: str,
    credit_account_id: str,
    amount: int,
    *,
    app: str,
    idempotency_key: str,
    description: str | None = None,
    metadata: Metadata | None = None,
    pricing: Metadata | None = None,
    asked: Metadata | None = None,
    lot: LotSpec | None = None,
) -> Posting:
    """A posting whose fingerprint is everything it asks for.

    A priced posting passes what the caller ``asked`` (the use, not its price), so a
    replay matches even after the catalog changed.
    """
    return Posting(
        kind=kind,
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        amount=amount,
        app=app,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint(
            kind,
            debit_account_id=debit_account_id,
            credit_account_id=credit_account_id,
            **(asked or {"amount": amount}),
            description=description,
            metadata=metadata,
            **({} if lot is None else {"lot": _lot_request(lot)}),
        ),
        description=description,
        metadata=metadata,
        pricing=pricing,
        lot=lot,
    )


def _lot_request(lot: LotSpec) -> Metadata:
    expires_at = None if lot.expires_at is None else lot.expires_at.isoformat()
    return {"source": lot.source, "expires_at": expires_at, "priority": lot.priority}


@dataclass(frozen=True, slots=True)
class Leg:
    """One customer account's side of a write: how its balance and held figures move."""

    account_id: str
    balance_delta: int
    held_delta: int
    system: bool = False  # see Posting.system
    forced: bool = False  # see Posting.forced

    @property
    def need(self) -> int:
        """How much available the account must have for this leg to go through."""
        return self.held_delta - self.balance_delta


@dataclass(frozen=True, slots=True)
class Applied:
    """A leg once written: the account it landed on (aliases resolved) and its figures after."""

    account_id: str
    balance: int
    available: int


T = TypeVar("T")


def check_account_id(account_id: str) -> str:
    """Refuse ids that are too long, empty, or carry characters we do not store."""
    if not _ACCOUNT_ID.fullmatch(account_id):
        raise InvalidAccountId(account_id)
    return account_id


async def live_held(conn: AsyncConnection, account_id: str, held: int, now: datetime) -> int:
    """A stored held figure without the holds that expired unswept."""
    if not held:
        return held
    return held - (await repo.expired_hold_totals(conn, [account_id], now)).get(account_id, 0)


async def _available(conn: AsyncConnection, account_id: str, row: Any, now: datetime) -> int:
    held = await live_held(conn, account_id, row.held, now)
    return int(row.balance - held + row.overdraft_limit)


async def guarded_write(
    conn: AsyncConnection,
    legs: list[Leg],
    policy: Policy,
    now: datetime,
    *,
    record: Callable[[dict[str, Applied]], Awaitable[T | None]],
    existing: Callable[[], Awaitable[T | None]],
) -> T:
    """Apply guarded updates to each leg, then ``record`` what happened, exactly once.

    The updates run first and the record (a transfer or a hold, unique on its idempotency
    key) second, so the common case is one statement per leg plus one insert. ``record``
    returns None when the key is taken; ``existing`` then finds the earlier result (or raises
    a conflict). On failure nothing of the write is left behind: updates already made are
    undone, so several writes may share one transaction (group commit).
    ``applied`` maps each leg's account id as given to where it landed.
    """
    names = {leg.account_id: leg.account_id for leg in legs}
    for _attempt in range(4):
        order = sorted(legs, key=lambda leg: names[leg.account_id])  # one lock order for all
        applied: dict[str, Applied] = {}
        failed: Leg | None = None
        undo: list[Callable[[], Awaitable[object]]] = []
        for leg in order:
            account_id = names[leg.account_id]
            row = await _apply(conn, account_id, leg, now)
            if row is None:
                failed = leg
                break
            undo.append(_undo(conn, account_id, leg, row, now))
            applied[leg.account_id] = Applied(
                account_id, int(row.balance), await _available(conn, account_id, row, now)
            )
        if failed is None and (result := await record(applied)) is not None:
            return result
        for step in undo:
            await step()
        if (result := await existing()) is not None:
            return result
        if failed is not None:
            names[failed.account_id] = await _diagnose(
                conn, names[failed.account_id], failed, policy, now
            )
        # else: the key's holder rolled back after we saw it taken; simply try again
    raise AssertionError("a write kept failing for changing reasons")  # pragma: no cover


async def _apply(conn: AsyncConnection, account_id: str, leg: Leg, now: datetime) -> Any:
    if leg.forced:
        return await repo.force_debit(conn, account_id, -leg.balance_delta, now)
    return await repo.apply_delta(
        conn, account_id, leg.balance_delta, leg.held_delta, now, system=leg.system
    )


def _undo(
    conn: AsyncConnection, account_id: str, leg: Leg, row: Any, now: datetime
) -> Callable[[], Awaitable[object]]:
    """The statement that takes an applied leg back, debt included."""
    if not leg.forced:
        return lambda: repo.apply_delta(
            conn, account_id, -leg.balance_delta, -leg.held_delta, now, system=True
        )
    amount = -leg.balance_delta
    spendable_before = row.balance + amount - row.held + row.overdraft_limit
    debt_added = amount - min(max(spendable_before, 0), amount)
    return lambda: repo.undo_forced_debit(conn, account_id, amount, debt_added, now)


async def _diagnose(
    conn: AsyncConnection, account_id: str, leg: Leg, policy: Policy, now: datetime
) -> str:
    """Work out why a guarded update matched nothing: return the account to retry on, or raise."""
    row = await repo.get_account_row(conn, account_id)
    if row is None:
        return await resolve_account(conn, account_id, policy, now)
    if row.held and await expire_holds(conn, now, policy, account_id=account_id):
        return account_id
    if leg.balance_delta > 0 or leg.forced:
        raise BalanceLimit(account_id)
    if leg.need > 0 and not leg.system:
        if row.status != "active":
            raise not_active(account_id, row.status)
        if row.lots_expire_at is not None and row.lots_expire_at <= now:
            await expire_lots(conn, now, policy, account_id=account_id)
            return account_id
    available = await _available(conn, account_id, row, now)
    if available >= leg.need:  # the account changed since the update (it was just created)
        return account_id
    raise InsufficientCredits(account_id, required=leg.need, available=available)


def check_replay(existing: T, stored_fingerprint: str, request_fingerprint: str, key: str) -> T:
    """The stored result of an earlier identical request, or a conflict if it differed."""
    if stored_fingerprint != request_fingerprint:
        raise IdempotencyConflict(key)
    return existing


def _legs(posting: Posting) -> list[Leg]:
    legs = []
    if not is_system(posting.debit_account_id):
        legs.append(
            Leg(
                posting.debit_account_id,
                -posting.amount,
                -posting.released_held,
                system=posting.system or posting.forced,
                forced=posting.forced,
            )
        )
    if not is_system(posting.credit_account_id):
        legs.append(Leg(posting.credit_account_id, posting.amount, 0))
    return legs


def plain_spend(posting: Posting) -> bool:
    """A customer pays a system account from its own lots, nothing held, nothing forced."""
    legs = _legs(posting)
    return (
        [leg.account_id for leg in legs] == [posting.debit_account_id]
        and not posting.released_held
        and not posting.system
        and not posting.forced
        and posting.first_lot is None
    )


async def charge_on_raw(raw: Raw, posting: Posting, now: datetime) -> Transfer | None:
    """A plain spend (see :func:`plain_spend`) on asyncpg itself, in the caller's
    transaction: the charge statement, then the lot spend.

    None, having changed nothing, when the key is taken, the account is missing, cannot
    afford it or may not spend now: :func:`post_quickly` then says why.
    """
    transfer = _transfer(posting, {}, now)
    after = await repo.charge_on_raw(raw, transfer, posting.fingerprint)
    if after is None:
        return None
    parts = await lot_repo.spend_on_raw(raw, transfer, now)
    balance, available = after
    return replace(
        transfer, debit_balance_after=balance, debit_available_after=available, lots=tuple(parts)
    )


def may_notify(policy: Policy) -> bool:
    """Whether a transfer may send messages (the asyncpg fast paths write none)."""
    return policy.observer is not None and policy.observer.wants_transfers()


async def charge_alone(
    engine: AsyncEngine, posting: Posting, policy: Policy, now: datetime
) -> Transfer | None:
    """PostgreSQL's fastest path for a lone charge: :func:`charge_on_raw` in a short
    transaction of its own. None when it does not apply or the database asks for a
    retry; the caller then takes :func:`post_quickly`."""
    if not plain_spend(posting) or may_notify(policy):
        return None
    try:
        async with raw_transaction(engine) as raw:
            return await charge_on_raw(raw, posting, now)
    except asyncpg.TransactionRollbackError:
        return None


async def _post_in_one_statement(
    conn: AsyncConnection, posting: Posting, policy: Policy, now: datetime
) -> Transfer | None:
    """PostgreSQL's shortcut for the common case: a customer pays a system account,
    can afford it, under a new key.

    One statement does what :func:`post_transfer` does in two. Anything else (an alias,
    a new account, a replay, too little credit, a system debit) gives None having written
    nothing, and the caller falls back to :func:`post_transfer`.
    """
    if not plain_spend(posting):
        return None
    transfer = _transfer(posting, {}, now)
    after = await repo.charge_in_one_statement(conn, transfer, posting.fingerprint)
    if after is None:
        return None
    balance, available = after
    transfer = replace(transfer, debit_balance_after=balance, debit_available_after=available)
    return await _follow(conn, posting, transfer, policy, now)


async def post_quickly(
    conn: AsyncConnection, posting: Posting, policy: Policy, now: datetime
) -> Transfer:
    """:func:`post_transfer`, trying the one-statement shortcut first on PostgreSQL."""
    if conn.dialect.name == "postgresql":
        done = await _post_in_one_statement(conn, posting, policy, now)
        if done is not None:
            return done
    return await post_transfer(conn, posting, policy, now)


async def _follow(
    conn: AsyncConnection, posting: Posting, transfer: Transfer, policy: Policy, now: datetime
) -> Transfer:
    """Spend the debit side's lots, fill a lot on the credit side, and tell the observer."""
    parts: list[LotPart] = []
    if not is_system(transfer.debit_account_id):
        parts += await lots.spend(conn, transfer, now, first=posting.first_lot)
    if not is_system(transfer.credit_account_id):
        spec = posting.lot or lots.default_spec(posting.kind)
        parts.append(await lots.fill(conn, transfer, spec, now))
    transfer = replace(transfer, lots=tuple(parts))
    if policy.observer is not None:
        await policy.observer.after_transfer(conn, transfer, now)
    return transfer


async def with_lots(conn: AsyncConnection, transfers: list[Transfer]) -> list[Transfer]:
    """The transfers with the lots each spent or filled."""
    parts = await lot_repo.parts_of(conn, [transfer.id for transfer in transfers])
    return [replace(transfer, lots=tuple(parts.get(transfer.id, ()))) for transfer in transfers]


async def post_transfer(
    conn: AsyncConnection, posting: Posting, policy: Policy, now: datetime
) -> Transfer:
    """Write one transfer exactly once (see :func:`guarded_write`)."""
    legs = _legs(posting)

    async def record(applied: dict[str, Applied]) -> Transfer | None:
        transfer = _transfer(posting, applied, now)
        if not await repo.insert_transfer(conn, transfer, posting.fingerprint):
            return None
        return await _follow(conn, posting, transfer, policy, now)

    async def existing() -> Transfer | None:
        found = await repo.find_transfer_by_key(conn, posting.app, posting.idempotency_key)
        if found is None:
            return None
        transfer, stored = found
        check_replay(transfer, stored, posting.fingerprint, posting.idempotency_key)
        (transfer,) = await with_lots(conn, [transfer])
        return transfer

    return await guarded_write(conn, legs, policy, now, record=record, existing=existing)


def _transfer(posting: Posting, applied: dict[str, Applied], now: datetime) -> Transfer:
    debit = applied.get(posting.debit_account_id)
    credit = applied.get(posting.credit_account_id)
    return Transfer(
        id=ids.new_id("tr"),
        kind=posting.kind,
        debit_account_id=debit.account_id if debit else posting.debit_account_id,
        credit_account_id=credit.account_id if credit else posting.credit_account_id,
        amount=posting.amount,
        app=posting.app,
        idempotency_key=posting.idempotency_key,
        hold_id=posting.hold_id,
        description=posting.description,
        metadata=posting.metadata,
        debit_balance_after=debit.balance if debit else None,
        debit_available_after=debit.available if debit else None,
        credit_balance_after=credit.balance if credit else None,
        credit_available_after=credit.available if credit else None,
        created_at=now,
        pricing=posting.pricing,
    )


async def resolve_account(
    conn: AsyncConnection, name: str, policy: Policy, now: datetime, *, create: bool = True
) -> str:
    """The id of the account this id or alias names, creating it when the policy allows."""
    check_account_id(name)
    for _attempt in range(3):
        account_id = await repo.resolve_name(conn, name)
        if account_id is not None:
            return account_id
        if not (create and policy.auto_create):
            raise AccountNotFound(name)
        if await create_customer(conn, name, policy, now):
            return name
    raise AccountNotFound(name)  # pragma: no cover - created and vanished in one breath


async def create_customer(
    conn: AsyncConnection,
    account_id: str,
    policy: Policy,
    now: datetime,
    *,
    overdraft_limit: int = 0,
    metadata: Metadata | None = None,
) -> bool:
    """Create a customer account with its sign-up grant; False if it already existed.

    Only the transaction that inserts the account posts the grant, and the grant's key is
    the account's id, so however an account first appears it is granted exactly once.
    """
    check_account_id(account_id)
    created = await repo.insert_account(
        conn,
        account_id,
        kind="customer",
        balance=0,
        overdraft_limit=overdraft_limit,
        metadata=metadata,
        now=now,
    )
    if not created:
        return False
    if not await repo.insert_name(conn, account_id, account_id):
        raise AliasTaken(account_id)
    if policy.signup_grant:
        await post_transfer(
            conn,
            movement(
                "grant",
                SIGNUP,
                account_id,
                policy.signup_grant,
                app=SYSTEM_APP,
                idempotency_key=f"signup:{account_id}",
                description="sign-up grant",
                lot=LotSpec("signup"),
            ),
            policy,
            now,
        )
    return True


async def _accounts(conn: AsyncConnection, rows: list[Any], now: datetime) -> list[Account]:
    """Accounts from their stored rows, with live held figures and aliases."""
    ids = [row.id for row in rows]
    holding = [row.id for row in rows if row.held]
    expired = await repo.expired_hold_totals(conn, holding, now) if holding else {}
    aliases = await repo.aliases_of(conn, ids)
    sources = await lot_repo.by_source(conn, ids)
    return [
        repo.account_from_row(
            row,
            row.held - expired.get(row.id, 0),
            aliases.get(row.id, []),
            _with_overdrawn(sources.get(row.id, {}), row.balance),
        )
        for row in rows
    ]


def _with_overdrawn(by_source: dict[str, int], balance: int) -> dict[str, int]:
    """The lots by source, plus what the balance is below zero, so the parts add up."""
    below = balance - sum(by_source.values())
    return {**by_source, "overdrawn": below} if below else by_source


async def get_account(conn: AsyncConnection, account_id: str, now: datetime) -> Account:
    """An account by its own id, with live held and available figures and its aliases."""
    row = await repo.get_account_row(conn, account_id)
    if row is None:
        raise AccountNotFound(account_id)
    (account,) = await _accounts(conn, [row], now)
    return account


async def list_accounts(
    conn: AsyncConnection, limit: int, after: str | None, search: str | None, now: datetime
) -> tuple[list[Account], bool]:
    """Up to ``limit`` customer accounts after ``after`` in id order, and whether more remain."""
    rows = await repo.list_accounts(conn, limit + 1, after, search)
    return await _accounts(conn, rows[:limit], now), len(rows) > limit


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """What a caller asks of an account it opens (``PUT /v1/accounts/{id}``)."""

    initial_grant: int = 0
    overdraft_limit: int | None = None
    aliases: tuple[str, ...] = ()
    metadata: Metadata | None = None
    status: str | None = None
    low_balance_threshold: int | None = None


async def open_account(
    conn: AsyncConnection,
    account_id: str,
    spec: AccountSpec,
    policy: Policy,
    now: datetime,
    *,
    actor: str,
) -> tuple[Account, bool]:
    """Create the account if absent, else apply the settings given; True when created.

    ``initial_grant`` is only paid when this call creates the account.
    """
    check_account_id(account_id)
    existing = await repo.resolve_name(conn, account_id)
    created = False
    if existing is None:
        created = await create_customer(
            conn,
            account_id,
            policy,
            now,
            overdraft_limit=spec.overdraft_limit or 0,
            metadata=spec.metadata,
        )
        existing = account_id if created else await resolve_account(conn, account_id, policy, now)
    if created:
        if spec.overdraft_limit:
            await audit.record(
                conn,
                actor=actor,
                action="account.overdraft_limit",
                target=existing,
                before=None,
                after={"overdraft_limit": spec.overdraft_limit},
                now=now,
            )
        if spec.initial_grant:
            await grant(
                conn,
                existing,
                spec.initial_grant,
                policy,
                now,
                actor=actor,
                app=SYSTEM_APP,
                idempotency_key=f"initial:{existing}",
                reason="initial grant",
            )
    else:
        await _update_settings(conn, existing, spec, policy, now, actor=actor)
    for alias in spec.aliases:
        await add_alias(conn, existing, alias)
    if spec.status is not None:
        await set_status(conn, existing, spec.status, now, actor=actor)
    if spec.low_balance_threshold is not None:
        await repo.update_account(
            conn, existing, {"low_balance_threshold": spec.low_balance_threshold}, now
        )
    return await get_account(conn, existing, now), created


async def _update_settings(
    conn: AsyncConnection,
    account_id: str,
    spec: AccountSpec,
    policy: Policy,
    now: datetime,
    *,
    actor: str,
) -> None:
    row = await repo.get_account_row(conn, account_id)
    if row is None:  # pragma: no cover - resolved in this transaction
        raise AccountNotFound(account_id)
    changes: dict[str, Any] = {}
    if spec.metadata is not None and spec.metadata != row.metadata:
        changes["metadata"] = spec.metadata
    limit = spec.overdraft_limit
    if limit is not None and limit != row.overdraft_limit:
        held = await live_held(conn, account_id, row.held, now)
        if row.balance - held + limit < 0:
            raise OverdraftInUse(account_id)
        if held != row.held:
            await expire_holds(conn, now, policy, account_id=account_id)
        changes["overdraft_limit"] = limit
        await audit.record(
            conn,
            actor=actor,
            action="account.overdraft_limit",
            target=account_id,
            before={"overdraft_limit": row.overdraft_limit},
            after={"overdraft_limit": limit},
            now=now,
        )
    if changes:
        await repo.update_account(conn, account_id, changes, now)


async def add_alias(conn: AsyncConnection, account_id: str, alias: str) -> None:
    """Let ``alias`` name the account too; refused when it names another."""
    check_account_id(alias)
    taken = not await repo.insert_name(conn, alias, account_id)
    if taken and await repo.resolve_name(conn, alias) != account_id:
        raise AliasTaken(alias)


async def grant(
    conn: AsyncConnection,
    account_id: str,
    amount: int,
    policy: Policy,
    now: datetime,
    *,
    actor: str,
    app: str,
    idempotency_key: str,
    reason: str | None,
    metadata: Metadata | None = None,
    lot: LotSpec | None = None,
) -> Transfer:
    """Give an account credits from ``@grants`` (a promotion unless ``lot`` says otherwise).

    An admin action, so it is audited.
    """
    check_account_id(account_id)
    transfer = await post_transfer(
        conn,
        movement(
            "grant",
            GRANTS,
            account_id,
            amount,
            app=app,
            idempotency_key=idempotency_key,
            description=reason,
            metadata=metadata,
            lot=lot,
        ),
        policy,
        now,
    )
    if not transfer.replayed:
        await audit.record(
            conn,
            actor=actor,
            action="grant",
            target=transfer.credit_account_id,
            before={"balance": (transfer.credit_balance_after or 0) - amount},
            after={"balance": transfer.credit_balance_after, "transfer_id": transfer.id},
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


async def verify_accounts(conn: AsyncConnection, account_ids: list[str]) -> list[Verification]:
    """Check stored balances and hold totals against the transfers and open holds."""
    if not account_ids:
        return []
    stored = await repo.stored_figures(conn, account_ids)
    balances = await repo.calculated_balances(conn, account_ids)
    held = await repo.open_hold_totals(conn, account_ids)
    return [
        Verification(
            account_id=account_id,
            stored_balance=int(stored[account_id].balance),
            calculated_balance=balances[account_id],
            stored_held=int(stored[account_id].held),
            calculated_held=held[account_id],
        )
        for account_id in account_ids
        if account_id in stored
    ]


async def verify_page(conn: AsyncConnection, after: str | None, size: int) -> list[Verification]:
    """Up to ``size`` customer accounts after ``after`` (in id order), verified."""
    return await verify_accounts(conn, await repo.customer_ids(conn, after, size))


async def rebuild_account(
    conn: AsyncConnection, verification: Verification, now: datetime, *, actor: str
) -> None:
    """Make the stored figures what the history says, and audit the correction."""
    await repo.set_stored_figures(
        conn,
        verification.account_id,
        verification.calculated_balance,
        verification.calculated_held,
        now,
    )
    await audit.record(
        conn,
        actor=actor,
        action="account.rebuild",
        target=verification.account_id,
        before={"balance": verification.stored_balance, "held": verification.stored_held},
        after={"balance": verification.calculated_balance, "held": verification.calculated_held},
        now=now,
    )


async def ledger_total(conn: AsyncConnection) -> int:
    """Stored customer balances plus derived system balances: zero in a sound ledger."""
    return await repo.stored_customer_total(conn) + sum((await repo.system_balances(conn)).values())


def charge_posting(
    account_id: str,
    amount: int,
    *,
    app: str,
    idempotency_key: str,
    description: str | None,
    metadata: Metadata | None = None,
    pricing: Metadata | None = None,
    asked: Metadata | None = None,
) -> Posting:
    """The posting that spends an account's credits (to ``@revenue``)."""
    check_account_id(account_id)
    return movement(
        "charge",
        account_id,
        REVENUE,
        amount,
        app=app,
        idempotency_key=idempotency_key,
        description=description,
        metadata=metadata,
        pricing=pricing,
        asked=asked,
    )


async def account_transactions(
    conn: AsyncConnection, account_id: str, limit: int, before: str | None
) -> tuple[list[Transfer], str | None]:
    """An account's transfers, newest first, and the id to continue before (if more remain)."""
    page = await repo.account_transfers(conn, account_id, limit + 1, before)
    more = len(page) > limit
    page = await with_lots(conn, page[:limit])
    return page, page[-1].id if more else None


async def expire_lots(
    conn: AsyncConnection, now: datetime, policy: Policy, *, account_id: str
) -> int:
    """Move what is left in an account's lots past their expiry to ``@expired``.

    Open holds are taken to reserve the due lots first (a capture spends them first), so
    only what no hold reserves lapses now; a later sweep takes the rest once the holds
    settle. Returns how many lots lapsed (wholly or in part).
    """
    row = await repo.get_account_row(conn, account_id, lock=True)  # what it can give stays
    if row is None:
        raise AccountNotFound(account_id)
    held = await live_held(conn, account_id, row.held, now)
    spendable = row.balance - held
    taken = 0
    for lot_id, remaining in await lot_repo.due(conn, now, account_id):
        reserved = min(int(remaining), held)
        held -= reserved
        amount = min(int(remaining) - reserved, spendable)
        if amount <= 0:
            continue
        posting = movement(
            "expiry",
            account_id,
            EXPIRED,
            amount,
            app=SYSTEM_APP,
            idempotency_key=f"expiry:{lot_id}:{remaining}",
            description="credits expired",
        )
        await post_transfer(conn, replace(posting, first_lot=lot_id, system=True), policy, now)
        spendable -= amount
        taken += 1
    await lot_repo.refresh_expiry(conn, account_id, now)
    return taken


async def set_status(
    conn: AsyncConnection,
    account_id: str,
    status: str,
    now: datetime,
    *,
    actor: str,
    reason: str | None = None,
) -> bool:
    """Make an account active, frozen or closed (audited); False when it already was."""
    row = await repo.get_account_row(conn, account_id)
    if row is None:
        raise AccountNotFound(account_id)
    if row.status == status:
        return False
    await repo.update_account(conn, account_id, {"status": status}, now)
    await audit.record(
        conn,
        actor=actor,
        action=f"account.{status}",
        target=account_id,
        before={"status": row.status},
        after={"status": status, "reason": reason},
        now=now,
    )
    return True


async def expire_holds(
    conn: AsyncConnection,
    now: datetime,
    policy: Policy,
    *,
    account_id: str | None = None,
    limit: int = 500,
) -> list[ExpiredHold]:
    """Close holds past their expiry (see :func:`repository.expire_holds`) and tell the
    observer."""
    expired = await repo.expire_holds(conn, now, account_id=account_id, limit=limit)
    if expired and policy.observer is not None:
        await policy.observer.after_holds_expired(conn, expired, now)
    return expired
