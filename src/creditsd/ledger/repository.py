"""The ledger's queries outside the posting engine: reads, settings, verification."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    case,
    delete,
    func,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.kit.db import is_sqlite
from creditsd.kit.rows import AnyRow, insert_or_skip
from creditsd.ledger import statements
from creditsd.ledger.limits import SPEND_KINDS
from creditsd.ledger.models import Account, DaySpend, Transfer
from creditsd.ledger.runway import ALLOWANCE_SOURCE, DAY, WEEK, Burn
from creditsd.ledger.statements import TRANSFER_COLUMNS
from creditsd.tables import (
    account_freezes,
    account_names,
    accounts,
    holds,
    lot_spends,
    lots,
    transfers,
)

_A = accounts.c
_T = transfers.c
_H = holds.c
_F = account_freezes.c


def _transfer(row: AnyRow) -> Transfer:
    return Transfer(**row._asdict())


def account_from_row(
    row: AnyRow,
    held: int,
    aliases: Sequence[str] = (),
    by_source: dict[str, int] | None = None,
    frozen_by: Sequence[str] = (),
) -> Account:
    """An account from its stored row, with the live held figure (and who holds it
    frozen) supplied."""
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
        frozen_by=tuple(frozen_by),
        by_source=by_source or {},
        lots_expire_at=row.lots_expire_at,
        low_balance_threshold=row.low_balance_threshold,
        time_zone=row.time_zone or "UTC",
    )


async def find_transfer_by_key(
    conn: AsyncConnection, app: str, key: str
) -> tuple[Transfer, str] | None:
    """The transfer an app already made under this idempotency key, and its fingerprint."""
    return (await statements.of(conn).transfers_by_key(conn, [(app, key)])).get((app, key))


async def get_transfer(conn: AsyncConnection, transfer_id: str) -> Transfer | None:
    """One transfer by id."""
    row = (await conn.execute(select(*TRANSFER_COLUMNS).where(_T.id == transfer_id))).first()
    return None if row is None else _transfer(row)


async def existing_transfer_ids(
    conn: AsyncConnection, transfer_ids: Iterable[str], chunk: int = 500
) -> set[str]:
    """Which of these transfer ids the ledger holds, whichever app made them."""
    wanted = sorted(set(transfer_ids))
    found: set[str] = set()
    for start in range(0, len(wanted), chunk):
        query = select(_T.id).where(_T.id.in_(wanted[start : start + chunk]))
        found.update((await conn.execute(query)).scalars())
    return found


async def account_transfers(
    conn: AsyncConnection, account_id: str, limit: int, before: str | None
) -> list[Transfer]:
    """An account's transfers, newest first, each side read through its own index."""
    sides = []
    for column in (_T.debit_account_id, _T.credit_account_id):
        side = select(*TRANSFER_COLUMNS).where(column == account_id)
        if before is not None:
            side = side.where(_T.id < before)
        newest = side.order_by(_T.id.desc()).limit(limit).subquery()
        sides.append(select(newest))  # a subquery, since SQLite refuses LIMIT inside UNION
    both = union_all(*sides).subquery()
    rows = await conn.execute(select(both).order_by(both.c.id.desc()).limit(limit))
    return [_transfer(row) for row in rows]


async def daily_spend(conn: AsyncConnection, account_id: str, since: datetime) -> list[DaySpend]:
    """What an account's charges and captures since ``since`` spent, per UTC day and item:
    the priced model, feature or meter, else the transfer's description (else its kind).

    Read through the account's debit index; a day's items are summed in the database.
    """
    pricing = _T.pricing
    spent = (
        select(
            _utc_day(conn, _T.created_at).label("day"),
            func.coalesce(
                pricing["model"].as_string(),
                pricing["feature"].as_string(),
                pricing["meter"].as_string(),
                _T.description,
                _T.kind,
            ).label("item"),
            _T.amount,
        )
        .where(
            _T.debit_account_id == account_id,
            _T.kind.in_(sorted(SPEND_KINDS)),
            _T.created_at >= since,
        )
        .subquery()
    )
    rows = await conn.execute(
        select(spent.c.day, spent.c.item, func.sum(spent.c.amount))
        .group_by(spent.c.day, spent.c.item)
        .order_by(spent.c.day, spent.c.item)
    )
    return [
        DaySpend(date.fromisoformat(str(day)[:10]), item, int(total)) for day, item, total in rows
    ]


async def spend_by_member(
    conn: AsyncConnection, account_id: str, since: datetime
) -> dict[str | None, int]:
    """What an account's charges and captures since ``since`` spent, per member it was
    made for (``None``: for no member), through the account's debit index."""
    rows = await conn.execute(
        select(_T.member_id, func.sum(_T.amount))
        .where(
            _T.debit_account_id == account_id,
            _T.kind.in_(sorted(SPEND_KINDS)),
            _T.created_at >= since,
        )
        .group_by(_T.member_id)
    )
    return {member_id: int(total) for member_id, total in rows}


async def burn_of(conn: AsyncConnection, account_id: str, now: datetime) -> Burn:
    """What an account's own credits paid for in the last day and week (see :func:`burns`)."""
    return (await burns(conn, now, account_id)).get(account_id, Burn(0, 0))


async def burns(
    conn: AsyncConnection, now: datetime, account_id: str | None = None
) -> dict[str, Burn]:
    """What each account's charges and captures of the last day and week before ``now``
    spent, less what its plan's allowance lots paid of them (see :mod:`runway`): of one
    account (through its debit index), or of every account that spent (through the
    transfers' time index). Two grouped sums."""
    recent = _T.created_at >= now - DAY
    debits = [_T.kind.in_(sorted(SPEND_KINDS)), _T.created_at >= now - WEEK]
    if account_id is not None:
        debits.append(_T.debit_account_id == account_id)
    spent = select(
        _T.debit_account_id, func.sum(case((recent, _T.amount), else_=0)), func.sum(_T.amount)
    ).where(*debits)
    paid = lot_spends.c.amount
    by_allowance = (
        select(_T.debit_account_id, func.sum(case((recent, paid), else_=0)), func.sum(paid))
        .select_from(
            lot_spends.join(transfers, lot_spends.c.transfer_id == _T.id).join(
                lots, lot_spends.c.lot_id == lots.c.id
            )
        )
        .where(*debits, lots.c.source == ALLOWANCE_SOURCE)
    )
    found = {
        account: Burn(int(day), int(week))
        for account, day, week in await conn.execute(spent.group_by(_T.debit_account_id))
    }
    for account, day, week in await conn.execute(by_allowance.group_by(_T.debit_account_id)):
        total = found[account]
        found[account] = Burn(total.last_day - int(day), total.last_week - int(week))
    return found


async def runway_rows(conn: AsyncConnection, account_ids: Iterable[str]) -> list[AnyRow]:
    """The id, creation and stored burn of these accounts and of every account with a
    stored burn."""
    query = select(_A.id, _A.created_at, _A.runway_burn).where(
        _A.id.in_(sorted(account_ids)) | _A.runway_burn.is_not(None)
    )
    return list(await conn.execute(query))


async def store_burns(conn: AsyncConnection, burns: dict[str, int | None]) -> None:
    """Store each account's burn per day (None: unknown)."""
    for account_id, per_day in burns.items():
        await conn.execute(update(accounts).where(_A.id == account_id).values(runway_burn=per_day))


def _utc_day(conn: AsyncConnection, moment: ColumnElement[Any]) -> ColumnElement[Any]:
    """The UTC date of a timestamp: SQLite keeps UTC text, PostgreSQL a ``timestamptz``."""
    if is_sqlite(conn.dialect):
        return func.date(moment)
    return func.date(func.timezone("UTC", moment))


async def transfers_between(
    conn: AsyncConnection,
    since: datetime | None,
    until: datetime | None,
    after: str | None,
    limit: int,
) -> list[Transfer]:
    """Transfers created in ``[since, until)``, oldest first, for export."""
    query = select(*TRANSFER_COLUMNS).order_by(_T.id).limit(limit)
    if since is not None:
        query = query.where(_T.created_at >= since)
    if until is not None:
        query = query.where(_T.created_at < until)
    if after is not None:
        query = query.where(_T.id > after)
    return [_transfer(row) for row in await conn.execute(query)]


async def transfers_of_app(conn: AsyncConnection, app: str) -> list[Transfer]:
    """Every transfer an app made, oldest first (reconciliation)."""
    rows = await conn.execute(select(*TRANSFER_COLUMNS).where(_T.app == app).order_by(_T.id))
    return [_transfer(row) for row in rows]


async def get_account_row(
    conn: AsyncConnection, account_id: str, *, lock: bool = False
) -> AnyRow | None:
    """The stored account row, without resolving aliases; ``lock`` holds it (PostgreSQL;
    SQLite's write transactions are already serial) until the transaction ends."""
    query = select(accounts).where(_A.id == account_id)
    if lock:
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


async def freezes_of(conn: AsyncConnection, account_ids: Iterable[str]) -> dict[str, list[str]]:
    """Who holds each of these accounts frozen, by holder name."""
    query = (
        select(_F.account_id, _F.holder)
        .where(_F.account_id.in_(list(account_ids)))
        .order_by(_F.account_id, _F.holder)
    )
    found: dict[str, list[str]] = {}
    for account_id, holder in await conn.execute(query):
        found.setdefault(account_id, []).append(holder)
    return found


async def add_freeze(
    conn: AsyncConnection, account_id: str, holder: str, reason: str | None, now: datetime
) -> bool:
    """Record ``holder``'s freeze of an account; False when it held one already."""
    insert = insert_or_skip(conn)
    result = await conn.execute(
        insert(account_freezes)
        .values(account_id=account_id, holder=holder, reason=reason, created_at=now)
        .on_conflict_do_nothing(index_elements=[_F.account_id, _F.holder])
        .returning(_F.holder)
    )
    return result.first() is not None


async def remove_freezes(conn: AsyncConnection, account_id: str, holder: str | None) -> int:
    """Drop ``holder``'s freeze of an account (every freeze when None); how many went."""
    query = delete(account_freezes).where(_F.account_id == account_id)
    if holder is not None:
        query = query.where(_F.holder == holder)
    return len((await conn.execute(query.returning(_F.holder))).all())


async def update_account(
    conn: AsyncConnection, account_id: str, values: dict[str, Any], now: datetime
) -> None:
    """Change an account's settings (overdraft limit, metadata, time zone)."""
    await conn.execute(update(accounts).where(_A.id == account_id).values(**values, updated_at=now))


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
