"""The posting engine's statements, chosen once per database.

:class:`Statements` is portable SQLAlchemy Core (what SQLite runs): many-row inserts and
one statement per changed row, which cost nothing in-process. :class:`PostgresStatements`
replaces the per-row ones by one set-based statement over ``unnest`` arrays, so a batch
of any size is the same few round trips. :func:`of` is where creditsd chooses by database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import TYPE_CHECKING, Any, NamedTuple

import asyncpg
from sqlalchemy import (
    Table,
    and_,
    bindparam,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd import jsonio
from creditsd.db import RetryTransaction, is_sqlite
from creditsd.ledger.models import ExpiredHold, Hold, LotPart, Metadata, Transfer
from creditsd.tables import account_names, accounts, holds, lot_spends, lots, outbox, transfers

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
    _T.proxy_key_id,
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
    _H.proxy_key_id,
)

_LOCK = (
    select(
        account_names.c.name,
        _A.id,
        _A.balance,
        _A.held,
        _A.overdraft_limit,
        _A.debt,
        _A.status,
        _A.lots_expire_at,
        # Whether it has holds to close: SQLite's writers run one at a time, so what this
        # reads cannot change before the engine would close them.
        select(_H.id)
        .where(
            _H.account_id == _A.id,
            _H.status == "open",
            _H.expires_at <= bindparam("now"),
        )
        .exists()
        .label("holds_due"),
    )
    .join(accounts, _A.id == account_names.c.account_id)
    .where(account_names.c.name.in_(bindparam("names", expanding=True)))
    .order_by(_A.id)
    .with_for_update(of=accounts, key_share=True)
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
_EXPIRE_HOLDS = (
    update(holds)
    .where(
        _H.account_id.in_(bindparam("b_account_ids", expanding=True)),
        _H.status == "open",
        _H.expires_at <= bindparam("b_now"),
    )
    .values(status="expired", updated_at=bindparam("b_now"))
    .returning(_H.id, _H.account_id, _H.amount - _H.captured)
)


Message = dict[str, Any]  # an outbox row: every column _PG_MESSAGE_FIELDS names


@dataclass(frozen=True, slots=True)
class Written:
    """What a batch stores after its claim, in one statement on PostgreSQL."""

    now: datetime
    holds: Sequence[tuple[Hold, str]]  # new holds, each with its fingerprint: claims too
    transfers: Sequence[tuple[Transfer, str]]  # each with its fingerprint: the claims
    accounts: Sequence[_Account]
    lowered: list[tuple[str, int]]  # (lot id, what is left in it)
    lots: list[dict[str, Any]]  # new lots, every column
    spends: list[dict[str, Any]]  # transfer_id, lot_id, amount
    messages: list[Message]  # for the outbox


class Locked(NamedTuple):
    """An account row the batch locked, and the name it was asked for by."""

    name: str
    id: str
    balance: int
    held: int
    overdraft_limit: int
    debt: int
    status: str
    lots_expire_at: datetime | None
    holds_due: bool  # it may have open holds past their expiry


class LiveLot(NamedTuple):
    """A lot with credit left."""

    id: str
    account_id: str
    source: str
    remaining: int
    priority: int
    expires_at: datetime | None


def hold_from_row(row: Any, *, replayed: bool = False) -> Hold:
    """A hold from its stored row (its fingerprint left out)."""
    values = row._asdict()
    values.pop("fingerprint", None)
    return Hold(**values, replayed=replayed)


class Statements:
    """The engine's reads and writes in portable SQL."""

    insert_or_skip: Callable[[Table], Any] = staticmethod(sqlite.insert)

    def __init__(self) -> None:
        # Built once per database: the inserts that claim idempotency keys.
        self._insert_transfers = (
            self.insert_or_skip(transfers)
            .on_conflict_do_nothing(index_elements=[_T.app, _T.idempotency_key])
            .returning(_T.id)
        )
        self._insert_holds = (
            self.insert_or_skip(holds)
            .on_conflict_do_nothing(index_elements=[_H.app, _H.idempotency_key])
            .returning(_H.id)
        )

    async def lock_accounts(
        self, conn: AsyncConnection, names: list[str], now: datetime
    ) -> list[Locked]:
        """Every named account that exists, rows locked in id order."""
        rows = await conn.execute(_LOCK, {"names": names, "now": now})
        return [Locked._make(row) for row in rows]

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
        rows = await conn.execute(_EXPIRE_HOLDS, {"b_account_ids": account_ids, "b_now": now})
        return sorted(
            (ExpiredHold(hold_id, owner, int(left)) for hold_id, owner, left in rows),
            key=lambda hold: hold.hold_id,
        )

    async def live_lots(self, conn: AsyncConnection, account_ids: list[str]) -> list[LiveLot]:
        """The live lots of these accounts, oldest first."""
        rows = await conn.execute(_LIVE_LOTS, {"account_ids": account_ids})
        return [LiveLot._make(row) for row in rows]

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
        """Insert transfers; a key already taken reruns the transaction."""
        rows = [_transfer_row(transfer, print_) for transfer, print_ in made]
        inserted = (await conn.execute(self._insert_transfers, rows)).all()
        if len(inserted) != len(rows):
            raise RetryTransaction("an idempotency key was claimed concurrently")

    async def insert_holds(self, conn: AsyncConnection, made: Sequence[tuple[Hold, str]]) -> None:
        """Insert the batch's new holds: the claim of their keys."""
        rows = [
            {**{column.key: getattr(hold, column.key) for column in HOLD_COLUMNS}, "fingerprint": f}
            for hold, f in made
        ]
        if len((await conn.execute(self._insert_holds, rows)).all()) != len(rows):
            raise RetryTransaction("an idempotency key was claimed concurrently")

    async def read(
        self,
        conn: AsyncConnection,
        holding: list[str],
        now: datetime,
        lot_owners: list[str],
        keys: list[tuple[str, str]],
    ) -> tuple[list[ExpiredHold], list[LiveLot], dict[tuple[str, str], tuple[Transfer, str]]]:
        """Close the expired holds of ``holding`` (locked accounts); then the live lots of
        ``lot_owners``, and the transfers stored under ``keys``."""
        expired = await self.expire_holds(conn, holding, now) if holding else []
        live = await self.live_lots(conn, lot_owners) if lot_owners else []
        return expired, live, await self.transfers_by_key(conn, keys) if keys else {}

    async def write(self, conn: AsyncConnection, batch: Written) -> None:
        """Insert the batch's transfers (the claim of their keys: one taken since the batch
        looked, by a concurrent request for another account, reruns the transaction, which
        then finds it), then store account figures, lot remainders, new lots, lot spends
        and outbox messages. New holds go first: their keys are claims too."""
        if batch.holds:
            await self.insert_holds(conn, batch.holds)
        if batch.transfers:
            await self.insert_transfers(conn, batch.transfers)
        if batch.accounts:
            rows = [_account_row(account, batch.now) for account in batch.accounts]
            await conn.execute(_UPDATE_ACCOUNT, rows)
        if batch.lowered:
            lowered = [{"b_id": lot_id, "b_left": left} for lot_id, left in batch.lowered]
            await conn.execute(_LOWER_LOT, lowered)
        if batch.lots:
            await conn.execute(lots.insert(), batch.lots)
        if batch.spends:
            await conn.execute(lot_spends.insert(), batch.spends)
        if batch.messages:
            await conn.execute(outbox.insert(), batch.messages)


async def queue(conn: AsyncConnection, messages: list[Message]) -> None:
    """Write outbox messages of a change the engine did not make (in its transaction)."""
    if messages:
        await conn.execute(outbox.insert(), messages)


class PostgresStatements(Statements):
    """PostgreSQL: constant SQL run on asyncpg itself (prepared once per connection, inside
    the transaction SQLAlchemy began), each batch's rows passed as arrays to ``unnest``.
    A batch is four statements: the lock, one read (expired holds closed, lots, stored
    keys), one write (the transfers, then, only if every key was claimed, everything else,
    outbox messages included), the commit."""

    insert_or_skip = staticmethod(postgresql.insert)

    async def lock_accounts(
        self, conn: AsyncConnection, names: list[str], now: datetime
    ) -> list[Locked]:
        return [Locked._make(row) for row in await (await _driver(conn)).fetch(_PG_LOCK, names)]

    async def read(
        self,
        conn: AsyncConnection,
        holding: list[str],
        now: datetime,
        lot_owners: list[str],
        keys: list[tuple[str, str]],
    ) -> tuple[list[ExpiredHold], list[LiveLot], dict[tuple[str, str], tuple[Transfer, str]]]:
        if not holding and not lot_owners and not keys:  # a hold opening: nothing to read
            return [], [], {}
        rows = await (await _driver(conn)).fetch(
            _PG_READ, lot_owners, [app for app, _ in keys], [key for _, key in keys], holding, now
        )
        expired, live, found = [], [], {}
        for kind, *row in rows:
            if kind == "lot":
                live.append(LiveLot._make(row[:-1]))
                continue
            if kind == "hold":
                expired.append(ExpiredHold(row[0], row[1], int(row[3])))
                continue
            values = jsonio.loads(row[-1])
            print_ = values.pop("fingerprint")
            values["created_at"] = datetime.fromisoformat(values["created_at"])
            found[values["app"], values["idempotency_key"]] = (
                Transfer(**values, replayed=True),
                print_,
            )
        return sorted(expired, key=lambda hold: hold.hold_id), live, found

    async def write(self, conn: AsyncConnection, batch: Written) -> None:
        made = batch.transfers
        # Rows read in C (attrgetter), then turned into columns (zip).
        rows = [_pg_transfer_values(transfer) for transfer, _ in made]
        columns = list(zip(*rows, strict=True)) or [()] * len(_PG_TRANSFER_FIELDS)
        messages = ([message[name] for message in batch.messages] for name in _PG_MESSAGE_FIELDS)
        moved = batch.accounts
        opened = ([getattr(hold, name) for hold, _ in batch.holds] for name in _PG_HOLD_FIELDS[:-1])
        claimed = await (await _driver(conn)).fetchval(
            _PG_WRITE,
            *_pg_arrays(_PG_TRANSFER_FIELDS, columns),
            [print_ for _, print_ in made],
            batch.now,
            len(made),
            [account.id for account in moved],
            [account.balance for account in moved],
            [account.held for account in moved],
            [account.debt for account in moved],
            [account.lots_expire_at for account in moved],
            [lot_id for lot_id, _ in batch.lowered],
            [left for _, left in batch.lowered],
            *([lot[name] for lot in batch.lots] for name in _PG_LOT_FIELDS),
            *([spend[name] for spend in batch.spends] for name in _PG_SPEND_FIELDS),
            *_pg_arrays(_PG_MESSAGE_FIELDS, messages),
            *_pg_arrays(_PG_HOLD_FIELDS, [*opened, [print_ for _, print_ in batch.holds]]),
            len(batch.holds),
        )
        if not claimed:
            raise RetryTransaction("an idempotency key was claimed concurrently")


def _pg_arrays(fields: Sequence[str], columns: Iterable[Sequence[Any]]) -> list[Sequence[Any]]:
    """Each column as its array parameter, JSON columns as their text."""
    return [
        list(map(_PG_CONVERT[name], column)) if name in _PG_CONVERT else column
        for name, column in zip(fields, columns, strict=True)
    ]


class _Driver:
    """The asyncpg connection under a SQLAlchemy one, inside the transaction it began, its
    errors raised as SQLAlchemy's (so retries and error answers treat them alike)."""

    def __init__(self, raw: asyncpg.Connection) -> None:
        self._raw = raw

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        with _as_sqlalchemy_errors(sql):
            return await self._raw.fetch(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        with _as_sqlalchemy_errors(sql):
            return await self._raw.fetchval(sql, *args)


async def _driver(conn: AsyncConnection) -> _Driver:
    pooled = await conn.get_raw_connection()
    adapter: Any = pooled.dbapi_connection
    if adapter._transaction is None:
        # SQLAlchemy's asyncpg adapter sends BEGIN with its first statement, and ours go to
        # asyncpg itself: begin as the adapter would (its one round trip), or each of them
        # would commit on its own. SQLAlchemy commits or rolls it back as usual.
        dbapi_error = conn.dialect.loaded_dbapi.Error
        try:
            await adapter._start_transaction()
        except dbapi_error as error:  # the adapter's own, which SQLAlchemy would wrap
            raise DBAPIError.instance(
                "BEGIN", None, error, dbapi_error, connection_invalidated=True
            ) from error
    raw = pooled.driver_connection
    assert isinstance(raw, asyncpg.Connection)
    return _Driver(raw)


@contextmanager
def _as_sqlalchemy_errors(sql: str) -> Iterator[None]:
    try:
        yield
    except asyncpg.PostgresConnectionError as error:
        raise InterfaceError(sql, None, error, connection_invalidated=True) from error
    except asyncpg.PostgresError as error:
        integrity = str(getattr(error, "sqlstate", "")).startswith("23")
        raise (IntegrityError if integrity else OperationalError)(sql, None, error) from error
    except TimeoutError:
        raise  # the server stopped answering: not a dropped connection to retry on
    except (asyncpg.InterfaceError, asyncpg.InternalClientError, OSError) as error:
        raise InterfaceError(sql, None, error, connection_invalidated=True) from error


def _to_json(value: Any) -> str | None:
    """A JSON column's text (any exact JSON will do: nothing is hashed over it)."""
    return None if value is None else jsonio.render(value).decode()


# A statement that waited for a lock sees the holds as they were before it waited (only the
# locked rows are read again): every account that holds anything may have holds due.
_PG_LOCK = """
SELECT n.name, a.id, a.balance, a.held, a.overdraft_limit, a.debt, a.status, a.lots_expire_at,
    TRUE AS holds_due
FROM account_names n JOIN accounts a ON a.id = n.account_id
WHERE n.name = ANY($1::text[])
ORDER BY a.id
FOR NO KEY UPDATE OF a
"""
# The holds past expiry closed (it runs after the lock: it sees every hold committed before),
# then, each row saying its kind: live lots, closed holds (what they released), and stored
# transfers (replays: rare) as JSON in the last column.
_PG_READ = f"""
WITH expired AS (
    UPDATE holds SET status = 'expired', updated_at = $5::timestamptz
    WHERE account_id = ANY($4::text[]) AND status = 'open' AND expires_at <= $5::timestamptz
    RETURNING id, account_id, amount - captured AS released
)
SELECT 'lot' AS kind, id, account_id, source, remaining, priority, expires_at,
    NULL::text AS stored
FROM lots WHERE account_id = ANY($1::text[]) AND remaining > 0
UNION ALL
SELECT 'hold', id, account_id, NULL, released, NULL, NULL, NULL FROM expired
UNION ALL
SELECT 'transfer', NULL, NULL, NULL, NULL, NULL, NULL, row_to_json(found)::text
FROM (
    SELECT {", ".join(f"t.{column.key}" for column in TRANSFER_COLUMNS)}, t.fingerprint
    FROM transfers t JOIN unnest($2::text[], $3::text[]) AS k(app, key)
        ON t.app = k.app AND t.idempotency_key = k.key
) AS found
"""  # noqa: S608 - built once, from the table's own column names
# Every transfer column but created_at (one value for the batch), then the fingerprint.
_PG_TRANSFER_FIELDS = [column.key for column in TRANSFER_COLUMNS if column.key != "created_at"]
_pg_transfer_values = attrgetter(*_PG_TRANSFER_FIELDS)
_PG_CONVERT: dict[str, Callable[[Any], Any]] = {
    "metadata": _to_json,
    "pricing": _to_json,
    "payload": _to_json,
}
_PG_BIGINT = {"amount", *(name for name in _PG_TRANSFER_FIELDS if name.endswith("_after"))}
_PG_LOT_FIELDS = (
    "id",
    "account_id",
    "source",
    "amount",
    "remaining",
    "priority",
    "expires_at",
    "transfer_id",
    "reference",
    "created_at",
)
_PG_LOT_TYPES = (
    "text",
    "text",
    "text",
    "int8",
    "int8",
    "int4",
    "timestamptz",
    "text",
    "text",
    "timestamptz",
)
_PG_SPEND_FIELDS = ("transfer_id", "lot_id", "amount")
_PG_HOLD_FIELDS = (*(column.key for column in HOLD_COLUMNS), "fingerprint")
_PG_HOLD_TYPES = tuple(
    "int8"
    if name in {"amount", "captured"}
    else "timestamptz"
    if name in {"expires_at", "created_at", "updated_at"}
    else "text"
    for name in _PG_HOLD_FIELDS
)
_PG_MESSAGE_FIELDS = (
    "destination",
    "message_id",
    "event_type",
    "account_id",
    "payload",
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
)
_PG_MESSAGE_TYPES = (
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "int4",
    "timestamptz",
    "timestamptz",
)


def _pg_write() -> str:
    """Every write of a batch in one statement.

    The new holds and transfers go first: their unique keys are the claims. Everything else
    is written only if every one was inserted (data-modifying parts see each other's
    RETURNING, not their rows); the statement answers whether they were. A part whose
    arrays are empty does nothing, and foreign keys are checked once the whole statement
    has run.
    """
    numbers = iter(range(1, 100))

    def arrays(*types: str) -> str:
        return ", ".join(f"${next(numbers)}::{kind}[]" for kind in types)

    fields = [*_PG_TRANSFER_FIELDS, "fingerprint"]
    transfer_arrays = arrays(*("int8" if name in _PG_BIGINT else "text" for name in fields))
    now, count = next(numbers), next(numbers)
    values = ", ".join(f"v.{name}::json" if name in _PG_CONVERT else f"v.{name}" for name in fields)
    account_arrays = arrays("text", "int8", "int8", "int8", "timestamptz")
    lowered_arrays = arrays("text", "int8")
    lot_arrays = arrays(*_PG_LOT_TYPES)
    spend_arrays = arrays("text", "text", "int8")
    message_arrays = arrays(*_PG_MESSAGE_TYPES)
    message_values = ", ".join(
        f"v.{name}::json" if name in _PG_CONVERT else f"v.{name}" for name in _PG_MESSAGE_FIELDS
    )
    hold_arrays = arrays(*_PG_HOLD_TYPES)
    holds = next(numbers)
    hold_values = ", ".join(
        f"v.{name}::json" if name in _PG_CONVERT else f"v.{name}" for name in _PG_HOLD_FIELDS
    )
    return f"""
WITH opened AS (
    INSERT INTO holds ({", ".join(_PG_HOLD_FIELDS)})
    SELECT {hold_values}
    FROM unnest({hold_arrays}) AS v({", ".join(_PG_HOLD_FIELDS)})
    ON CONFLICT (app, idempotency_key) DO NOTHING
    RETURNING 1
), inserted AS (
    INSERT INTO transfers ({", ".join(fields)}, created_at)
    SELECT {values}, ${now}::timestamptz
    FROM unnest({transfer_arrays}) AS v({", ".join(fields)})
    ON CONFLICT (app, idempotency_key) DO NOTHING
    RETURNING 1
), claimed AS (
    SELECT (SELECT count(*) FROM inserted) = ${count}::int8
        AND (SELECT count(*) FROM opened) = ${holds}::int8 AS every
), moved AS (
    UPDATE accounts SET balance = v.balance, held = v.held, debt = v.debt,
        lots_expire_at = v.lots_expire_at, updated_at = ${now}::timestamptz
    FROM unnest({account_arrays}) AS v(id, balance, held, debt, lots_expire_at), claimed
    WHERE accounts.id = v.id AND claimed.every
    RETURNING 1
), lowered AS (
    UPDATE lots SET remaining = v.remaining
    FROM unnest({lowered_arrays}) AS v(id, remaining), claimed
    WHERE lots.id = v.id AND claimed.every
    RETURNING 1
), filled AS (
    INSERT INTO lots ({", ".join(_PG_LOT_FIELDS)})
    SELECT v.* FROM unnest({lot_arrays}) AS v({", ".join(_PG_LOT_FIELDS)}), claimed
    WHERE claimed.every
    RETURNING 1
), spent AS (
    INSERT INTO lot_spends ({", ".join(_PG_SPEND_FIELDS)})
    SELECT v.* FROM unnest({spend_arrays}) AS v({", ".join(_PG_SPEND_FIELDS)}), claimed
    WHERE claimed.every
    RETURNING 1
), queued AS (
    INSERT INTO outbox ({", ".join(_PG_MESSAGE_FIELDS)})
    SELECT {message_values}
    FROM unnest({message_arrays}) AS v({", ".join(_PG_MESSAGE_FIELDS)}), claimed
    WHERE claimed.every
    RETURNING 1
)
SELECT every FROM claimed
"""  # noqa: S608 - built once, from the tables' own column names


_PG_WRITE = _pg_write()


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
