"""Every query the ledger makes. The hot statements are built once, at import."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Row,
    Table,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.ledger.models import Account, ExpiredHold, Metadata, Transfer
from creditsd.money import INT64_MAX
from creditsd.prepared import Prepared, Raw
from creditsd.tables import account_names, accounts, holds, transfers

AnyRow = Row[*tuple[Any, ...]]

_A = accounts.c
_T = transfers.c
_H = holds.c

# The guarded write at the heart of every movement: the balance and held figures change
# only if the account can afford it afterwards, and never past the 64-bit range. Spending
# (a positive `need`) also needs an active account with no lot past its expiry, unless
# creditsd makes the debit itself (`system`: an expiry, a clawback). What spends nothing
# always goes through (a credit lifts even a balance still below zero); credits pay off
# debt first.
_DELTA = bindparam("balance_delta", type_=BigInteger)
_NEED = bindparam("need", type_=BigInteger)
_APPLY_DELTA = (
    update(accounts)
    .where(
        _A.id == bindparam("account_id"),
        _A.balance <= bindparam("max_balance"),
        or_(
            _NEED <= 0,  # nothing spent: a credit, a release, a capture within its hold
            and_(
                _A.balance - _A.held + _A.overdraft_limit >= _NEED,
                or_(
                    bindparam("system", type_=Boolean),
                    and_(
                        _A.status == "active",
                        or_(_A.lots_expire_at.is_(None), _A.lots_expire_at > bindparam("now")),
                    ),
                ),
            ),
        ),
    )
    .values(
        balance=_A.balance + _DELTA,
        held=_A.held + bindparam("held_delta"),
        debt=case(
            (and_(_A.debt > 0, _DELTA > 0), case((_A.debt > _DELTA, _A.debt - _DELTA), else_=0)),
            else_=_A.debt,
        ),
        updated_at=bindparam("now"),
    )
    .returning(_A.balance, _A.held, _A.overdraft_limit)
)

# A forced debit (a clawback of spent credits, a sync below zero) always goes through;
# what it takes past the account's available credits becomes debt.
_SPENDABLE = _A.balance - _A.held + _A.overdraft_limit
_AMOUNT = bindparam("amount", type_=BigInteger)
_FORCE_DEBIT = (
    update(accounts)
    .where(_A.id == bindparam("account_id"), _A.balance >= bindparam("min_balance"))
    .values(
        balance=_A.balance - _AMOUNT,
        debt=_A.debt
        + case(
            (_SPENDABLE >= _AMOUNT, 0),
            (_SPENDABLE <= 0, _AMOUNT),
            else_=_AMOUNT - _SPENDABLE,
        ),
        updated_at=bindparam("now"),
    )
    .returning(_A.balance, _A.held, _A.overdraft_limit)
)

_TRANSFER_COLUMNS = (
    _T.id,
    _T.kind,
    _T.debit_account_id,
    _T.credit_account_id,
    _T.amount,
    _T.app,
    _T.idempotency_key,
    _T.hold_id,
    _T.description,
    _T.metadata,
    _T.debit_balance_after,
    _T.debit_available_after,
    _T.credit_balance_after,
    _T.credit_available_after,
    _T.created_at,
    _T.pricing,
)

_INSERT_IGNORING_DUPLICATES: dict[str, Callable[[Table], Any]] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
}


def _insert_transfer_statement(dialect: str) -> Any:
    return (
        _INSERT_IGNORING_DUPLICATES[dialect](transfers)
        .on_conflict_do_nothing(index_elements=[_T.app, _T.idempotency_key])
        .returning(_T.id)
    )


_INSERT_TRANSFER = {name: _insert_transfer_statement(name) for name in _INSERT_IGNORING_DUPLICATES}


def _one_statement_charge() -> Any:
    """PostgreSQL: a debit's guarded update and the transfer's insert as one statement.

    The customer is the debit side. The insert takes its after-figures from the update's
    RETURNING, counting only holds that have not expired (the sum over holds runs only
    when the account holds anything). When the update matches nothing, nothing is inserted;
    when the key is taken, the insert skips it and the statement says so (the caller then
    undoes the update), so the transaction stays usable.
    """
    moved = _APPLY_DELTA.cte("moved")
    expired = (
        select(func.coalesce(func.sum(_H.amount - _H.captured), 0))
        .where(
            _H.account_id == bindparam("account_id"),
            _H.status == "open",
            _H.expires_at <= bindparam("now"),
        )
        .scalar_subquery()
    )
    live_held = case((moved.c.held == 0, 0), else_=moved.c.held - expired)
    after = {
        "debit_balance_after": moved.c.balance,
        "debit_available_after": moved.c.balance - live_held + moved.c.overdraft_limit,
    }
    columns = [*_TRANSFER_COLUMNS, _T.fingerprint]
    # Prefixed names: unprefixed ones matching account columns would join the UPDATE's SET.
    source = select(
        *(
            after.get(column.key, bindparam(f"t_{column.key}", type_=column.type))
            for column in columns
        )
    )
    inserted = (
        postgresql.insert(transfers)
        .from_select(columns, source)
        .on_conflict_do_nothing(index_elements=[_T.app, _T.idempotency_key])
        .returning(_T.debit_balance_after, _T.debit_available_after)
        .cte("inserted")
    )
    return select(*inserted.c, moved.c.balance).select_from(moved.outerjoin(inserted, true()))


_ONE_STATEMENT_CHARGE = _one_statement_charge()
_ONE_STATEMENT_CHARGE_RAW = Prepared(_ONE_STATEMENT_CHARGE)
_APPLY_DELTA_RAW = Prepared(_APPLY_DELTA)


def _charge_values(transfer: Transfer, fingerprint: str) -> dict[str, Any]:
    values = {f"t_{column.key}": getattr(transfer, column.key) for column in _TRANSFER_COLUMNS}
    values.update(
        t_fingerprint=fingerprint,
        account_id=transfer.debit_account_id,
        need=transfer.amount,
        max_balance=INT64_MAX,
        balance_delta=-transfer.amount,
        held_delta=0,
        system=False,
        now=transfer.created_at,
    )
    return values


async def charge_in_one_statement(
    conn: AsyncConnection, transfer: Transfer, fingerprint: str
) -> tuple[int, int] | None:
    """Write a transfer that debits one customer in one statement (PostgreSQL only).

    Returns the customer's balance and available credits after, or None when the update
    matched nothing or the key is taken; then nothing of it remains.
    """
    row = (await conn.execute(_ONE_STATEMENT_CHARGE, _charge_values(transfer, fingerprint))).first()
    if row is None:
        return None
    if row[0] is None:  # the key was taken, so take the update back
        await apply_delta(conn, transfer.debit_account_id, transfer.amount, 0, transfer.created_at)
        return None
    return int(row[0]), int(row[1])


async def charge_on_raw(raw: Raw, transfer: Transfer, fingerprint: str) -> tuple[int, int] | None:
    """:func:`charge_in_one_statement` on asyncpg itself, in the caller's transaction."""
    rows = await _ONE_STATEMENT_CHARGE_RAW.fetch(raw, _charge_values(transfer, fingerprint))
    if not rows:
        return None
    if rows[0][0] is None:  # the key was taken, so take the update back
        undo = _delta_values(
            transfer.debit_account_id, transfer.amount, 0, transfer.created_at, system=True
        )
        await _APPLY_DELTA_RAW.fetch(raw, undo)
        return None
    return int(rows[0][0]), int(rows[0][1])


def insert_ignoring_duplicates(conn: AsyncConnection) -> Any:
    """This dialect's ``INSERT … ON CONFLICT DO NOTHING`` constructor."""
    return _INSERT_IGNORING_DUPLICATES[conn.dialect.name]


def _transfer(row: AnyRow) -> Transfer:
    return Transfer(**row._asdict())


def account_from_row(
    row: AnyRow,
    held: int,
    aliases: Sequence[str] = (),
    by_source: dict[str, int] | None = None,
) -> Account:
    """An account from its stored row, with the live held figure supplied."""
    return Account(
        id=row.id,
        kind=row.kind,
        balance=row.balance,
        held=held,
        overdraft_limit=row.overdraft_limit,
        metadata=row.metadata,
        created_at=row.created_at,
        updated_at=row.updated_at,
        aliases=tuple(aliases),
        status=row.status,
        by_source=by_source or {},
        lots_expire_at=row.lots_expire_at,
        low_balance_threshold=row.low_balance_threshold,
    )


async def apply_delta(
    conn: AsyncConnection,
    account_id: str,
    balance_delta: int,
    held_delta: int,
    now: datetime,
    *,
    system: bool = False,
) -> AnyRow | None:
    """Move a customer's balance and held figures if the result stays affordable.

    Returns ``(balance, held, overdraft_limit)`` after the change, or ``None`` when the
    account is missing, cannot afford it, may not spend (frozen, closed, lots due to
    expire: unless ``system``), or would overflow.
    """
    values = _delta_values(account_id, balance_delta, held_delta, now, system=system)
    return (await conn.execute(_APPLY_DELTA, values)).first()


def _delta_values(
    account_id: str, balance_delta: int, held_delta: int, now: datetime, *, system: bool
) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "need": held_delta - balance_delta,
        "max_balance": INT64_MAX - max(balance_delta, 0),
        "balance_delta": balance_delta,
        "held_delta": held_delta,
        "system": system,
        "now": now,
    }


async def force_debit(
    conn: AsyncConnection, account_id: str, amount: int, now: datetime
) -> AnyRow | None:
    """Take ``amount`` whatever the account can afford; the excess becomes debt.

    Returns ``(balance, held, overdraft_limit)`` after, or None when the account is
    missing or its balance would leave the 64-bit range.
    """
    result = await conn.execute(
        _FORCE_DEBIT,
        {"account_id": account_id, "amount": amount, "min_balance": amount - INT64_MAX, "now": now},
    )
    return result.first()


async def undo_forced_debit(
    conn: AsyncConnection, account_id: str, amount: int, debt_added: int, now: datetime
) -> None:
    """Take back a forced debit whose transfer turned out to exist already."""
    await conn.execute(
        update(accounts)
        .where(_A.id == account_id)
        .values(balance=_A.balance + amount, debt=_A.debt - debt_added, updated_at=now)
    )


async def insert_transfer(conn: AsyncConnection, transfer: Transfer, fingerprint: str) -> bool:
    """Insert a transfer; False when its idempotency key is already taken."""
    values = {column.key: getattr(transfer, column.key) for column in _TRANSFER_COLUMNS}
    values["fingerprint"] = fingerprint
    result = await conn.execute(_INSERT_TRANSFER[conn.dialect.name], values)
    return result.first() is not None


async def find_transfer_by_key(
    conn: AsyncConnection, app: str, key: str
) -> tuple[Transfer, str] | None:
    """The transfer an app already made under this idempotency key, and its fingerprint."""
    row = (
        await conn.execute(
            select(*_TRANSFER_COLUMNS, _T.fingerprint).where(
                _T.app == app, _T.idempotency_key == key
            )
        )
    ).first()
    if row is None:
        return None
    values = row._asdict()
    fingerprint = str(values.pop("fingerprint"))
    return Transfer(**values, replayed=True), fingerprint


async def get_transfer(conn: AsyncConnection, transfer_id: str) -> Transfer | None:
    """One transfer by id."""
    row = (await conn.execute(select(*_TRANSFER_COLUMNS).where(_T.id == transfer_id))).first()
    return None if row is None else _transfer(row)


async def account_transfers(
    conn: AsyncConnection, account_id: str, limit: int, before: str | None
) -> list[Transfer]:
    """An account's transfers, newest first, each side read through its own index."""
    sides = []
    for column in (_T.debit_account_id, _T.credit_account_id):
        side = select(*_TRANSFER_COLUMNS).where(column == account_id)
        if before is not None:
            side = side.where(_T.id < before)
        newest = side.order_by(_T.id.desc()).limit(limit).subquery()
        sides.append(select(newest))  # a subquery, since SQLite refuses LIMIT inside UNION
    both = union_all(*sides).subquery()
    rows = await conn.execute(select(both).order_by(both.c.id.desc()).limit(limit))
    return [_transfer(row) for row in rows]


async def transfers_between(
    conn: AsyncConnection,
    since: datetime | None,
    until: datetime | None,
    after: str | None,
    limit: int,
) -> list[Transfer]:
    """Transfers created in ``[since, until)``, oldest first, for export."""
    query = select(*_TRANSFER_COLUMNS).order_by(_T.id).limit(limit)
    if since is not None:
        query = query.where(_T.created_at >= since)
    if until is not None:
        query = query.where(_T.created_at < until)
    if after is not None:
        query = query.where(_T.id > after)
    return [_transfer(row) for row in await conn.execute(query)]


async def transfers_of_app(conn: AsyncConnection, app: str) -> list[Transfer]:
    """Every transfer an app made, oldest first (reconciliation)."""
    rows = await conn.execute(select(*_TRANSFER_COLUMNS).where(_T.app == app).order_by(_T.id))
    return [_transfer(row) for row in rows]


async def get_account_row(
    conn: AsyncConnection, account_id: str, *, lock: bool = False
) -> AnyRow | None:
    """The stored account row, without resolving aliases; ``lock`` holds it (PostgreSQL;
    SQLite's write transactions are already serial) until the transaction ends."""
    query = select(accounts).where(_A.id == account_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return (await conn.execute(query)).first()


async def resolve_name(conn: AsyncConnection, name: str) -> str | None:
    """The account id an id or alias belongs to."""
    return (
        await conn.execute(select(account_names.c.account_id).where(account_names.c.name == name))
    ).scalar_one_or_none()


async def aliases_of(conn: AsyncConnection, account_ids: list[str]) -> dict[str, list[str]]:
    """The aliases of each account (its own id excluded), sorted."""
    rows = await conn.execute(
        select(account_names.c.account_id, account_names.c.name)
        .where(
            account_names.c.account_id.in_(account_ids),
            account_names.c.name != account_names.c.account_id,
        )
        .order_by(account_names.c.name)
    )
    found: dict[str, list[str]] = {}
    for account_id, name in rows:
        found.setdefault(account_id, []).append(name)
    return found


async def insert_account(
    conn: AsyncConnection,
    account_id: str,
    *,
    kind: str,
    balance: int,
    overdraft_limit: int,
    metadata: Metadata | None,
    now: datetime,
) -> bool:
    """Insert an account; False when one with this id already exists."""
    insert = insert_ignoring_duplicates(conn)
    result = await conn.execute(
        insert(accounts)
        .values(
            id=account_id,
            kind=kind,
            balance=balance,
            held=0,
            overdraft_limit=overdraft_limit,
            metadata=metadata,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=[_A.id])
        .returning(_A.id)
    )
    return result.first() is not None


async def insert_name(conn: AsyncConnection, name: str, account_id: str) -> bool:
    """Give an account another name; False when the name is taken."""
    insert = insert_ignoring_duplicates(conn)
    result = await conn.execute(
        insert(account_names)
        .values(name=name, account_id=account_id)
        .on_conflict_do_nothing(index_elements=[account_names.c.name])
        .returning(account_names.c.name)
    )
    return result.first() is not None


async def update_account(
    conn: AsyncConnection, account_id: str, values: dict[str, Any], now: datetime
) -> None:
    """Change an account's settings (overdraft limit, metadata)."""
    await conn.execute(update(accounts).where(_A.id == account_id).values(**values, updated_at=now))


async def set_stored_figures(
    conn: AsyncConnection, account_id: str, balance: int, held: int, now: datetime
) -> None:
    """Overwrite an account's stored balance and held total (rebuild only)."""
    await conn.execute(
        update(accounts)
        .where(_A.id == account_id)
        .values(balance=balance, held=held, updated_at=now)
    )


async def list_accounts(
    conn: AsyncConnection, limit: int, after: str | None, search: str | None
) -> list[AnyRow]:
    """Customer accounts in id order; ``search`` matches an id or alias prefix."""
    query = select(accounts).where(_A.kind == "customer").order_by(_A.id).limit(limit)
    if after is not None:
        query = query.where(_A.id > after)
    if search:
        pattern = _escape_like(search) + "%"
        query = query.where(
            _A.id.in_(
                select(account_names.c.account_id).where(
                    account_names.c.name.like(pattern, escape="\\")
                )
            )
        )
    return list(await conn.execute(query))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def customer_ids(conn: AsyncConnection, after: str | None, limit: int) -> list[str]:
    """Customer account ids in order, a page at a time."""
    query = select(_A.id).where(_A.kind == "customer").order_by(_A.id).limit(limit)
    if after is not None:
        query = query.where(_A.id > after)
    return list((await conn.execute(query)).scalars())


async def count_customers(conn: AsyncConnection) -> int:
    """How many customer accounts there are."""
    return int((await conn.execute(select(func.count()).where(_A.kind == "customer"))).scalar_one())


async def calculated_balances(conn: AsyncConnection, account_ids: Iterable[str]) -> dict[str, int]:
    """Balances summed from the transfers: credits in minus debits out."""
    ids = list(account_ids)
    credits_in = select(_T.credit_account_id.label("account_id"), _T.amount.label("amount")).where(
        _T.credit_account_id.in_(ids)
    )
    debits_out = select(
        _T.debit_account_id.label("account_id"), (-_T.amount).label("amount")
    ).where(_T.debit_account_id.in_(ids))
    legs = union_all(credits_in, debits_out).subquery()
    rows = await conn.execute(
        select(legs.c.account_id, func.sum(legs.c.amount)).group_by(legs.c.account_id)
    )
    sums: dict[str, int] = dict.fromkeys(ids, 0)
    sums.update({account_id: int(total) for account_id, total in rows})
    return sums


async def open_hold_totals(conn: AsyncConnection, account_ids: Iterable[str]) -> dict[str, int]:
    """What the open holds of each account still reserve, expired-but-unswept included."""
    ids = list(account_ids)
    rows = await conn.execute(
        select(_H.account_id, func.sum(_H.amount - _H.captured))
        .where(_H.account_id.in_(ids), _H.status == "open")
        .group_by(_H.account_id)
    )
    totals: dict[str, int] = dict.fromkeys(ids, 0)
    totals.update({account_id: int(total) for account_id, total in rows})
    return totals


async def stored_figures(conn: AsyncConnection, account_ids: Iterable[str]) -> dict[str, AnyRow]:
    """The stored ``(id, balance, held)`` of each account."""
    rows = await conn.execute(
        select(_A.id, _A.balance, _A.held).where(_A.id.in_(list(account_ids)))
    )
    return {row.id: row for row in rows}


async def system_balances(conn: AsyncConnection) -> dict[str, int]:
    """Every system account's balance, derived from the transfers."""
    ids = list(
        (await conn.execute(select(_A.id).where(_A.kind == "system").order_by(_A.id))).scalars()
    )
    return await calculated_balances(conn, ids)


async def stored_customer_total(conn: AsyncConnection) -> int:
    """The sum of every stored customer balance."""
    total = (
        await conn.execute(
            select(func.coalesce(func.sum(_A.balance), 0)).where(_A.kind == "customer")
        )
    ).scalar_one()
    return int(total)


async def expired_hold_totals(
    conn: AsyncConnection, account_ids: list[str], now: datetime
) -> dict[str, int]:
    """What expired holds that no sweeper has closed yet still reserve, per account."""
    rows = await conn.execute(
        select(_H.account_id, func.sum(_H.amount - _H.captured))
        .where(_H.account_id.in_(account_ids), _H.status == "open", _H.expires_at <= now)
        .group_by(_H.account_id)
    )
    return {account_id: int(total) for account_id, total in rows}


async def expire_holds(
    conn: AsyncConnection, now: datetime, *, account_id: str | None = None, limit: int = 500
) -> list[ExpiredHold]:
    """Close open holds past their expiry and give back what they reserved.

    Safe to run from many processes at once: a hold is closed by exactly one conditional
    update.
    """
    due = select(_H.id).where(_H.status == "open", _H.expires_at <= now)
    if account_id is not None:
        due = due.where(_H.account_id == account_id)
    due_ids = list((await conn.execute(due.order_by(_H.expires_at).limit(limit))).scalars())
    if not due_ids:
        return []
    closed = [
        ExpiredHold(hold_id, owner, int(remaining))
        for hold_id, owner, remaining in await conn.execute(
            update(holds)
            .where(_H.id.in_(due_ids), _H.status == "open", _H.expires_at <= now)
            .values(status="expired", updated_at=now)
            .returning(_H.id, _H.account_id, _H.amount - _H.captured)
        )
    ]
    released: dict[str, int] = {}
    for hold in closed:
        released[hold.account_id] = released.get(hold.account_id, 0) + hold.released
    for owner, remaining in sorted(released.items()):
        await release_held(conn, owner, remaining, now)
    return closed


async def release_held(conn: AsyncConnection, account_id: str, amount: int, now: datetime) -> None:
    """Lower an account's held total when a hold stops reserving ``amount``."""
    await conn.execute(
        update(accounts).where(_A.id == account_id).values(held=_A.held - amount, updated_at=now)
    )
