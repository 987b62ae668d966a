"""The posting engine's statements, chosen once per database.

:class:`Statements` is portable SQLAlchemy Core (what SQLite runs): many-row inserts and
one statement per changed row, which cost nothing in-process. :class:`PostgresStatements`
replaces the per-row ones by one set-based statement over ``unnest`` arrays, so a batch
of any size is the same few round trips. :func:`of` is where creditsd chooses by database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    String,
    Table,
    and_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.db import RetryTransaction, is_sqlite
from creditsd.ledger.models import ExpiredHold, Hold, LotPart, Metadata, Transfer
from creditsd.tables import account_names, accounts, holds, lot_spends, lots, transfers

if TYPE_CHECKING:
    from creditsd.ledger.posting import _Account

_A = accounts.c
_T = transfers.c
_H = holds.c
_L = lots.c
_S = lot_spends.c
# Written out, not bound: only a literal lets the planner use the partial indexes on live lots.
LIVE = _L.remaining > literal_column("0")

TRANSFER_COLUMNS = (
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
HOLD_COLUMNS = (
    _H.id,
    _H.account_id,
    _H.amount,
    _H.captured,
    _H.status,
    _H.expires_at,
    _H.app,
    _H.idempotency_key,
    _H.description,
    _H.metadata,
    _H.created_at,
    _H.updated_at,
    _H.pricing,
)

_LOCK = (
    select(account_names.c.name, accounts)
    .join(accounts, _A.id == account_names.c.account_id)
    .where(account_names.c.name.in_(bindparam("names", expanding=True)))
    .order_by(_A.id)
    .with_for_update(of=accounts)
)
_LIVE_LOTS = (
    select(_L.id, _L.account_id, _L.source, _L.remaining, _L.priority, _L.expires_at)
    .where(_L.account_id.in_(bindparam("account_ids", expanding=True)), LIVE)
    .order_by(_L.account_id, _L.id)
)
_UPDATE_ACCOUNT = (
    update(accounts)
    .where(_A.id == bindparam("b_id"))
    .values(
        balance=bindparam("b_balance"),
        held=bindparam("b_held"),
        debt=bindparam("b_debt"),
        lots_expire_at=bindparam("b_lots_expire_at"),
        updated_at=bindparam("b_now"),
    )
)
_LOWER_LOT = update(lots).where(_L.id == bindparam("b_id")).values(remaining=bindparam("b_left"))


def hold_from_row(row: Any, *, replayed: bool = False) -> Hold:
    """A hold from its stored row (its fingerprint left out)."""
    values = row._asdict()
    values.pop("fingerprint", None)
    return Hold(**values, replayed=replayed)


class Statements:
    """The engine's reads and writes in portable SQL."""

    insert_or_skip: Callable[[Table], Any] = staticmethod(sqlite.insert)

    async def lock_accounts(self, conn: AsyncConnection, names: list[str]) -> list[tuple[str, Any]]:
        """``(name, account row)`` for every name that resolves, rows locked in id order."""
        rows = await conn.execute(_LOCK, {"names": names})
        return [(row.name, row) for row in rows]

    async def insert_account(
        self,
        conn: AsyncConnection,
        account_id: str,
        overdraft_limit: int,
        metadata: Metadata | None,
        now: datetime,
    ) -> bool:
        """Insert a customer account; False when one with this id already exists."""
        result = await conn.execute(
            self.insert_or_skip(accounts)
            .values(
                id=account_id,
                kind="customer",
                balance=0,
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

    async def insert_name(self, conn: AsyncConnection, name: str, account_id: str) -> bool:
        """Give an account another name; False when the name is taken."""
        result = await conn.execute(
            self.insert_or_skip(account_names)
            .values(name=name, account_id=account_id)
            .on_conflict_do_nothing(index_elements=[account_names.c.name])
            .returning(account_names.c.name)
        )
        return result.first() is not None

    async def expire_holds(
        self, conn: AsyncConnection, account_ids: list[str], now: datetime
    ) -> list[ExpiredHold]:
        """Close the open holds of these (locked) accounts that are past their expiry."""
        rows = await conn.execute(
            update(holds)
            .where(_H.account_id.in_(account_ids), _H.status == "open", _H.expires_at <= now)
            .values(status="expired", updated_at=now)
            .returning(_H.id, _H.account_id, _H.amount - _H.captured)
        )
        return sorted(
            (ExpiredHold(hold_id, owner, int(left)) for hold_id, owner, left in rows),
            key=lambda hold: hold.hold_id,
        )

    async def live_lots(
        self, conn: AsyncConnection, account_ids: list[str]
    ) -> dict[str, list[Any]]:
        """The live lots of each account."""
        found: dict[str, list[Any]] = {}
        for row in await conn.execute(_LIVE_LOTS, {"account_ids": account_ids}):
            found.setdefault(row.account_id, []).append(row)
        return found

    async def transfers_by_key(
        self, conn: AsyncConnection, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[Transfer, str]]:
        """The stored transfers under these ``(app, key)`` pairs, with their fingerprints."""
        rows = await conn.execute(
            select(*TRANSFER_COLUMNS, _T.fingerprint).where(_by_key(_T, keys))
        )
        found = {}
        for row in rows:
            values = row._asdict()
            print_ = str(values.pop("fingerprint"))
            found[row.app, row.idempotency_key] = (Transfer(**values, replayed=True), print_)
        return found

    async def holds_by_key(
        self, conn: AsyncConnection, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[Hold, str]]:
        """The stored holds under these ``(app, key)`` pairs, with their fingerprints."""
        rows = await conn.execute(select(*HOLD_COLUMNS, _H.fingerprint).where(_by_key(_H, keys)))
        return {
            (row.app, row.idempotency_key): (hold_from_row(row, replayed=True), row.fingerprint)
            for row in rows
        }

    async def lot_parts(
        self, conn: AsyncConnection, transfer_ids: list[str]
    ) -> dict[str, list[LotPart]]:
        """Per transfer, the lots it spent from or the lot it filled, oldest lot first."""
        if not transfer_ids:
            return {}
        spent = (
            select(_S.transfer_id, _S.lot_id, _L.source, _S.amount, _L.expires_at)
            .join(lots, _L.id == _S.lot_id)
            .where(_S.transfer_id.in_(transfer_ids))
        )
        filled = select(_L.transfer_id, _L.id, _L.source, _L.amount, _L.expires_at).where(
            _L.transfer_id.in_(transfer_ids)
        )
        found: dict[str, list[LotPart]] = {}
        for query in (spent, filled):
            for transfer_id, lot_id, source, amount, expires_at in await conn.execute(query):
                found.setdefault(transfer_id, []).append(
                    LotPart(lot_id, source, amount, expires_at)
                )
        for parts in found.values():
            parts.sort(key=lambda part: part.lot_id)
        return found

    async def insert_transfers(
        self, conn: AsyncConnection, made: Sequence[tuple[Transfer, str]]
    ) -> None:
        """Insert the batch's transfers: the claim of their keys.

        A key taken since the batch looked (a concurrent request under the same key, for
        another account) reruns the whole transaction, which then finds it.
        """
        rows = [_transfer_row(transfer, print_) for transfer, print_ in made]
        statement = (
            self.insert_or_skip(transfers)
            .on_conflict_do_nothing(index_elements=[_T.app, _T.idempotency_key])
            .returning(_T.id)
        )
        inserted = (await conn.execute(statement, rows)).all()
        if len(inserted) != len(rows):
            raise RetryTransaction("an idempotency key was claimed concurrently")

    async def insert_holds(self, conn: AsyncConnection, made: Sequence[tuple[Hold, str]]) -> None:
        """Insert the batch's new holds: the claim of their keys."""
        rows = [
            {**{column.key: getattr(hold, column.key) for column in HOLD_COLUMNS}, "fingerprint": f}
            for hold, f in made
        ]
        statement = (
            self.insert_or_skip(holds)
            .on_conflict_do_nothing(index_elements=[_H.app, _H.idempotency_key])
            .returning(_H.id)
        )
        if len((await conn.execute(statement, rows)).all()) != len(rows):
            raise RetryTransaction("an idempotency key was claimed concurrently")

    async def update_accounts(
        self, conn: AsyncConnection, changed: Sequence[_Account], now: datetime
    ) -> None:
        """Store the new figures of the batch's accounts (their rows are locked)."""
        await conn.execute(_UPDATE_ACCOUNT, [_account_row(account, now) for account in changed])

    async def lower_lots(self, conn: AsyncConnection, lowered: list[dict[str, Any]]) -> None:
        """Store what is left in the lots the batch spent."""
        await conn.execute(
            _LOWER_LOT, [{"b_id": row["id"], "b_left": row["remaining"]} for row in lowered]
        )

    async def insert_lots(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        """Insert the lots the batch's credits filled."""
        await conn.execute(lots.insert(), rows)

    async def insert_spends(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        """Record which lots paid for the batch's debits."""
        await conn.execute(lot_spends.insert(), rows)


class PostgresStatements(Statements):
    """PostgreSQL: the per-row writes as one statement each over ``unnest`` arrays."""

    insert_or_skip = staticmethod(postgresql.insert)

    async def update_accounts(
        self, conn: AsyncConnection, changed: Sequence[_Account], now: datetime
    ) -> None:
        if len(changed) == 1:
            await super().update_accounts(conn, changed, now)
            return
        await conn.execute(
            _UNNEST_ACCOUNTS,
            {
                "u_ids": [account.id for account in changed],
                "u_balances": [account.balance for account in changed],
                "u_helds": [account.held for account in changed],
                "u_debts": [account.debt for account in changed],
                "u_expiries": [account.lots_expire_at for account in changed],
                "u_now": now,
            },
        )

    async def lower_lots(self, conn: AsyncConnection, lowered: list[dict[str, Any]]) -> None:
        if len(lowered) == 1:
            await super().lower_lots(conn, lowered)
            return
        await conn.execute(
            _UNNEST_LOTS,
            {
                "u_ids": [row["id"] for row in lowered],
                "u_lefts": [row["remaining"] for row in lowered],
            },
        )


def _unnest(**arrays: tuple[str, Any]) -> Any:
    """A derived table of parallel array parameters: ``unnest(:a, :b) AS v(a, b)``."""
    table = func.unnest(
        *(bindparam(param, type_=postgresql.ARRAY(kind)) for param, kind in arrays.values())
    ).table_valued(*arrays)
    return table.render_derived(name="v", with_types=False)


def _unnest_accounts() -> Any:
    values = _unnest(
        id=("u_ids", String),
        balance=("u_balances", BigInteger),
        held=("u_helds", BigInteger),
        debt=("u_debts", BigInteger),
        lots_expire_at=("u_expiries", postgresql.TIMESTAMP(timezone=True)),
    )
    return (
        update(accounts)
        .where(_A.id == values.c.id)
        .values(
            balance=values.c.balance,
            held=values.c.held,
            debt=values.c.debt,
            lots_expire_at=values.c.lots_expire_at,
            updated_at=bindparam("u_now"),
        )
    )


def _unnest_lots() -> Any:
    values = _unnest(id=("u_ids", String), remaining=("u_lefts", BigInteger))
    return update(lots).where(_L.id == values.c.id).values(remaining=values.c.remaining)


_UNNEST_ACCOUNTS = _unnest_accounts()
_UNNEST_LOTS = _unnest_lots()


def _by_key(columns: Any, keys: Iterable[tuple[str, str]]) -> Any:
    """``(app, idempotency_key) IN …`` grouped by app, so the unique index serves it."""
    by_app: dict[str, list[str]] = {}
    for app, key in keys:
        by_app.setdefault(app, []).append(key)
    return or_(
        *(
            and_(columns.app == app, columns.idempotency_key.in_(keys))
            for app, keys in by_app.items()
        )
    )


def _transfer_row(transfer: Transfer, print_: str) -> dict[str, Any]:
    row = {column.key: getattr(transfer, column.key) for column in TRANSFER_COLUMNS}
    row["fingerprint"] = print_
    return row


def _account_row(account: _Account, now: datetime) -> dict[str, Any]:
    return {
        "b_id": account.id,
        "b_balance": account.balance,
        "b_held": account.held,
        "b_debt": account.debt,
        "b_lots_expire_at": account.lots_expire_at,
        "b_now": now,
    }


_PORTABLE = Statements()
_POSTGRES = PostgresStatements()


def of(conn: AsyncConnection) -> Statements:
    """The statements for the database behind ``conn``."""
    return _PORTABLE if is_sqlite(conn.dialect) else _POSTGRES


def insert_or_skip(conn: AsyncConnection) -> Callable[[Table], Any]:
    """This database's ``INSERT … ON CONFLICT DO NOTHING`` constructor."""
    return of(conn).insert_or_skip
