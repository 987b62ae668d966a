"""The posting engine's statements, chosen once per database.

A batch is the same few steps on either database, each one trip to it whatever the
batch's size: lock its accounts, read what it needs, write what it did, in constant SQL
run on the driver itself. :class:`PostgresStatements` runs it on asyncpg, each batch's
rows passed as arrays to ``unnest``; :class:`SqliteStatements` on the sqlite3 connection
on aiosqlite's thread, lists passed as JSON arrays to ``json_each``. :class:`Statements`
is what both share, in portable SQLAlchemy Core. :func:`of` is where creditsd chooses by
database.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple, Protocol

import asyncpg
from sqlalchemy import JSON, Table, and_, literal_column, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.kit import jsonio
from creditsd.kit import sqlite as sqlite_driver
from creditsd.kit.db import RetryTransaction, is_sqlite
from creditsd.ledger.models import ExpiredHold, Hold, LotPart, Metadata, Transfer
from creditsd.tables import (
    Timestamp,
    account_names,
    accounts,
    holds,
    lot_spends,
    lots,
    outbox,
    proxy_keys,
    transfers,
)

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
# The columns a batch writes, as both databases' statements name them.
_HOLD_FIELDS = (*(column.key for column in HOLD_COLUMNS), "fingerprint")
_SETTLED_FIELDS = ("id", "status", "captured", "expires_at", "updated_at")
_LOT_FIELDS = (
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
_SPEND_FIELDS = ("transfer_id", "lot_id", "amount")
_MESSAGE_FIELDS = (
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


Message = dict[str, Any]  # an outbox row: every column _MESSAGE_FIELDS names


class MovedAccount(Protocol):
    """An account's figures as a batch leaves them, to be stored."""

    id: str
    balance: int
    held: int
    debt: int
    lots_expire_at: datetime | None


@dataclass(frozen=True, slots=True)
class Written:
    """What a batch stores after its claim, in one trip to the database."""

    now: datetime
    holds: Sequence[tuple[Hold, str]]  # new holds, each with its fingerprint: claims too
    transfers: Sequence[tuple[Transfer, str]]  # each with its fingerprint: the claims
    settled: Sequence[Hold]  # stored holds the batch changed, as they are now
    keys: Sequence[tuple[str, int]]  # (proxy key id, what it has spent now)
    accounts: Sequence[MovedAccount]
    lowered: list[tuple[str, int]]  # (lot id, what is left in it)
    lots: list[dict[str, Any]]  # new lots, every column
    spends: list[dict[str, Any]]  # transfer_id, lot_id, amount
    messages: list[Message]  # for the outbox


@dataclass(frozen=True, slots=True)
class Wanted:
    """What a batch reads once its accounts are locked."""

    holding: list[str]  # accounts whose holds past expiry are to be closed (named ones too)
    lot_owners: list[str]  # accounts whose live lots are loaded
    transfer_keys: list[tuple[str, str]]  # (app, key) to find stored transfers under
    hold_keys: list[tuple[str, str]]  # (app, key) to find stored holds under
    hold_ids: list[str]  # the holds the batch names
    key_ids: list[str]  # proxy keys paying for new holds (those of named holds come too)

    def empty(self) -> bool:
        """Nothing to read (a hold opened under a fresh key), so no trip to the database."""
        return not any(
            (
                self.holding,
                self.lot_owners,
                self.transfer_keys,
                self.hold_keys,
                self.hold_ids,
                self.key_ids,
            )
        )


class Key(NamedTuple):
    """A proxy key a batch locked, and what its open, unexpired holds reserve."""

    id: str
    account_id: str
    spend_limit: int | None
    spent: int
    held: int
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Found:
    """What a batch read: the holds it closed, live lots, what is stored under its keys
    (each with its fingerprint), the holds it names as they were, and their keys."""

    expired: list[ExpiredHold] = field(default_factory=list)
    live: list[LiveLot] = field(default_factory=list)
    transfers: dict[tuple[str, str], tuple[Transfer, str]] = field(default_factory=dict)
    holds_by_key: dict[tuple[str, str], tuple[Hold, str]] = field(default_factory=dict)
    named: list[Hold] = field(default_factory=list)
    keys: list[Key] = field(default_factory=list)


class Locked(NamedTuple):
    """An account row the batch locked, and the name (or the hold) it was asked for by."""

    name: str
    hold_id: str | None
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


class Statements(ABC):
    """The engine's statements on one database: a batch's lock, read and write, which each
    database runs its own way, and what both share, in portable SQLAlchemy Core."""

    insert_or_skip: Callable[[Table], Any]  # this database's INSERT … ON CONFLICT DO NOTHING

    @abstractmethod
    async def lock_accounts(
        self, conn: AsyncConnection, names: list[str], hold_ids: list[str], now: datetime
    ) -> list[Locked]:
        """Every named account that exists and the account of every named hold, rows
        locked in id order, each with the name (or the hold) it was asked for by."""

    @abstractmethod
    async def read(self, conn: AsyncConnection, wanted: Wanted, now: datetime) -> Found:
        """Close the expired holds of ``wanted.holding`` (locked accounts) and the named
        ones; then read the rest of what a batch wants."""

    @abstractmethod
    async def write(self, conn: AsyncConnection, batch: Written) -> None:
        """Store a batch: its new holds and transfers first (their unique keys are the
        claims: one taken since the batch looked, by a concurrent request for another
        account, reruns the transaction, which then finds it), then, only if every key
        was claimed, the holds and keys that changed, account figures, lot remainders,
        new lots, lot spends and outbox messages."""

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


async def queue(conn: AsyncConnection, messages: list[Message]) -> None:
    """Write outbox messages of a change the engine did not make (in its transaction)."""
    if messages:
        await conn.execute(outbox.insert(), messages)


class PostgresStatements(Statements):
    """PostgreSQL: constant SQL run on asyncpg itself (prepared once per connection, inside
    the transaction SQLAlchemy began), each batch's rows passed as arrays to ``unnest``.
    A batch is four statements: the lock, one read (expired holds closed, lots, stored
    keys, named holds and their keys), one write (the transfers, then, only if every key
    was claimed, everything else, outbox messages included), the commit."""

    insert_or_skip = staticmethod(postgresql.insert)

    async def lock_accounts(
        self, conn: AsyncConnection, names: list[str], hold_ids: list[str], now: datetime
    ) -> list[Locked]:
        rows = await (await _driver(conn)).fetch(_PG_LOCK, names, hold_ids)
        return [Locked._make(row) for row in rows]

    async def read(self, conn: AsyncConnection, wanted: Wanted, now: datetime) -> Found:
        found = Found()
        rows = await (await _driver(conn)).fetch(
            _PG_READ,
            wanted.lot_owners,
            [app for app, _ in wanted.transfer_keys],
            [key for _, key in wanted.transfer_keys],
            wanted.holding,
            now,
            wanted.hold_ids,
            [app for app, _ in wanted.hold_keys],
            [key for _, key in wanted.hold_keys],
            wanted.key_ids,
        )
        for kind, *row in rows:
            if kind == "lot":
                found.live.append(LiveLot._make(row[:-1]))
            elif kind == "expired":
                found.expired.append(ExpiredHold(row[0], row[1], int(row[3])))
            elif kind == "key":
                values = jsonio.loads(row[-1])
                for name in ("expires_at", "revoked_at"):
                    if values[name] is not None:
                        values[name] = datetime.fromisoformat(values[name])
                found.keys.append(Key(**values))
            elif kind == "transfer":
                values = jsonio.loads(row[-1])
                print_ = values.pop("fingerprint")
                values["created_at"] = datetime.fromisoformat(values["created_at"])
                found.transfers[values["app"], values["idempotency_key"]] = (
                    Transfer(**values, replayed=True),
                    print_,
                )
            else:  # a hold named by id or stored under a key
                values = jsonio.loads(row[-1])
                print_ = values.pop("fingerprint")
                for name in ("expires_at", "created_at", "updated_at"):
                    values[name] = datetime.fromisoformat(values[name])
                hold = Hold(**values)
                if hold.id in wanted.hold_ids:
                    found.named.append(hold)
                if (hold.app, hold.idempotency_key) in wanted.hold_keys:
                    found.holds_by_key[hold.app, hold.idempotency_key] = (
                        replace(hold, replayed=True),
                        print_,
                    )
        found.expired.sort(key=lambda hold: hold.hold_id)
        return found

    async def write(self, conn: AsyncConnection, batch: Written) -> None:
        made = batch.transfers
        # Rows read in C (attrgetter), then turned into columns (zip).
        rows = [_pg_transfer_values(transfer) for transfer, _ in made]
        columns = list(zip(*rows, strict=True)) or [()] * len(_PG_TRANSFER_FIELDS)
        messages = ([message[name] for message in batch.messages] for name in _MESSAGE_FIELDS)
        moved = batch.accounts
        opened = ([getattr(hold, name) for hold, _ in batch.holds] for name in _HOLD_FIELDS[:-1])
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
            *([lot[name] for lot in batch.lots] for name in _LOT_FIELDS),
            *([spend[name] for spend in batch.spends] for name in _SPEND_FIELDS),
            *_pg_arrays(_MESSAGE_FIELDS, messages),
            *_pg_arrays(_HOLD_FIELDS, [*opened, [print_ for _, print_ in batch.holds]]),
            len(batch.holds),
            *([getattr(hold, name) for hold in batch.settled] for name in _SETTLED_FIELDS),
            [key_id for key_id, _ in batch.keys],
            [spent for _, spent in batch.keys],
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
# locked rows are read again): every account that holds anything may have holds due. The
# accounts of named holds come by the hold (a hold's account never changes).
_PG_LOCK = """
SELECT w.name, w.hold_id, a.id, a.balance, a.held, a.overdraft_limit, a.debt, a.status,
    a.lots_expire_at, TRUE AS holds_due
FROM (
    SELECT name, NULL::text AS hold_id, account_id FROM account_names WHERE name = ANY($1::text[])
    UNION ALL
    SELECT account_id, id, account_id FROM holds WHERE id = ANY($2::text[])
) AS w JOIN accounts a ON a.id = w.account_id
ORDER BY a.id
FOR NO KEY UPDATE OF a
"""
_PG_HOLD_SELECT = ", ".join(f"h.{column.key}" for column in HOLD_COLUMNS)
# The holds past expiry closed (it runs after the lock: it sees every hold committed before),
# then, each row saying its kind: live lots, closed holds (what they released), and as JSON
# in the last column: stored transfers and holds (replays: rare), the holds the batch names
# (as they were before this statement closed any), and the proxy keys paying for new or
# named holds, locked, each with what its open, unexpired holds reserve.
_PG_READ = f"""
WITH expired AS (
    UPDATE holds SET status = 'expired', updated_at = $5::timestamptz
    WHERE (account_id = ANY($4::text[]) OR id = ANY($6::text[]))
        AND status = 'open' AND expires_at <= $5::timestamptz
    RETURNING id, account_id, amount - captured AS released
), paying AS (
    SELECT id, account_id, spend_limit, spent, expires_at, revoked_at FROM proxy_keys
    WHERE id = ANY($9::text[])
        OR id IN (SELECT proxy_key_id FROM holds WHERE id = ANY($6::text[]))
    ORDER BY id
    FOR NO KEY UPDATE
)
SELECT 'lot' AS kind, id, account_id, source, remaining, priority, expires_at,
    NULL::text AS stored
FROM lots WHERE account_id = ANY($1::text[]) AND remaining > 0
UNION ALL
SELECT 'expired', id, account_id, NULL, released, NULL, NULL, NULL FROM expired
UNION ALL
SELECT 'transfer', NULL, NULL, NULL, NULL, NULL, NULL, row_to_json(found)::text
FROM (
    SELECT {", ".join(f"t.{column.key}" for column in TRANSFER_COLUMNS)}, t.fingerprint
    FROM transfers t JOIN unnest($2::text[], $3::text[]) AS k(app, key)
        ON t.app = k.app AND t.idempotency_key = k.key
) AS found
UNION ALL
SELECT 'hold', NULL, NULL, NULL, NULL, NULL, NULL, row_to_json(named)::text
FROM (
    SELECT {_PG_HOLD_SELECT}, h.fingerprint FROM holds h WHERE h.id = ANY($6::text[])
    UNION ALL
    SELECT {_PG_HOLD_SELECT}, h.fingerprint
    FROM holds h JOIN unnest($7::text[], $8::text[]) AS k(app, key)
        ON h.app = k.app AND h.idempotency_key = k.key
) AS named
UNION ALL
SELECT 'key', NULL, NULL, NULL, NULL, NULL, NULL, row_to_json(keyed)::text
FROM (
    SELECT p.id, p.account_id, p.spend_limit, p.spent,
        (SELECT coalesce(sum(h.amount - h.captured), 0) FROM holds h
         WHERE h.proxy_key_id = p.id AND h.status = 'open' AND h.expires_at > $5::timestamptz
        ) AS held,
        p.expires_at, p.revoked_at
    FROM paying p
) AS keyed
"""  # noqa: S608 - built once, from the tables' own column names
# Every transfer column but created_at (one value for the batch), then the fingerprint.
_PG_TRANSFER_FIELDS = [column.key for column in TRANSFER_COLUMNS if column.key != "created_at"]
_pg_transfer_values = attrgetter(*_PG_TRANSFER_FIELDS)
_PG_CONVERT: dict[str, Callable[[Any], Any]] = {
    "metadata": _to_json,
    "pricing": _to_json,
    "payload": _to_json,
}
_PG_BIGINT = {"amount", *(name for name in _PG_TRANSFER_FIELDS if name.endswith("_after"))}
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
_PG_HOLD_TYPES = tuple(
    "int8"
    if name in {"amount", "captured"}
    else "timestamptz"
    if name in {"expires_at", "created_at", "updated_at"}
    else "text"
    for name in _HOLD_FIELDS
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
        f"v.{name}::json" if name in _PG_CONVERT else f"v.{name}" for name in _MESSAGE_FIELDS
    )
    hold_arrays = arrays(*_PG_HOLD_TYPES)
    holds = next(numbers)
    settled_arrays = arrays("text", "text", "int8", "timestamptz", "timestamptz")
    key_arrays = arrays("text", "int8")
    hold_values = ", ".join(
        f"v.{name}::json" if name in _PG_CONVERT else f"v.{name}" for name in _HOLD_FIELDS
    )
    return f"""
WITH opened AS (
    INSERT INTO holds ({", ".join(_HOLD_FIELDS)})
    SELECT {hold_values}
    FROM unnest({hold_arrays}) AS v({", ".join(_HOLD_FIELDS)})
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
    INSERT INTO lots ({", ".join(_LOT_FIELDS)})
    SELECT v.* FROM unnest({lot_arrays}) AS v({", ".join(_LOT_FIELDS)}), claimed
    WHERE claimed.every
    RETURNING 1
), spent AS (
    INSERT INTO lot_spends ({", ".join(_SPEND_FIELDS)})
    SELECT v.* FROM unnest({spend_arrays}) AS v({", ".join(_SPEND_FIELDS)}), claimed
    WHERE claimed.every
    RETURNING 1
), queued AS (
    INSERT INTO outbox ({", ".join(_MESSAGE_FIELDS)})
    SELECT {message_values}
    FROM unnest({message_arrays}) AS v({", ".join(_MESSAGE_FIELDS)}), claimed
    WHERE claimed.every
    RETURNING 1
), settled AS (
    UPDATE holds SET status = v.status, captured = v.captured, expires_at = v.expires_at,
        updated_at = v.updated_at
    FROM unnest({settled_arrays}) AS v(id, status, captured, expires_at, updated_at), claimed
    WHERE holds.id = v.id AND claimed.every
    RETURNING 1
), charged AS (
    UPDATE proxy_keys SET spent = v.spent
    FROM unnest({key_arrays}) AS v(id, spent), claimed
    WHERE proxy_keys.id = v.id AND claimed.every
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


class SqliteStatements(Statements):
    """SQLite: constant SQL run on the sqlite3 connection itself, on aiosqlite's thread,
    inside the transaction SQLAlchemy began (``BEGIN IMMEDIATE``: the batch writes alone),
    one trip there per step of a batch: the lock, one read (expired holds closed, lots,
    stored keys, named holds and their keys), one write (the claims, then, only if every
    key was claimed, everything else). SQLite runs a batch's statements in a small part
    of what a trip each and SQLAlchemy's work on each would cost. Lists go to
    ``json_each`` as one JSON array each, so the SQL never changes with their length;
    values are stored and read as SQLAlchemy stores and reads them here
    (:class:`_SqliteColumns`), so either reads what the other wrote."""

    insert_or_skip = staticmethod(sqlite.insert)

    async def lock_accounts(
        self, conn: AsyncConnection, names: list[str], hold_ids: list[str], now: datetime
    ) -> list[Locked]:
        lists = {"names": _to_json(names), "hold_ids": _to_json(hold_ids)}
        parameters = {**lists, "now": _time_text(now)}
        rows = await sqlite_driver.run(conn, sqlite_driver.fetch, _SQLITE_LOCK, parameters)
        return [Locked._make((*row[:8], _time_value(row[8]), bool(row[9]))) for row in rows]

    async def read(self, conn: AsyncConnection, wanted: Wanted, now: datetime) -> Found:
        expired, live, stored, kept, named, keys = await sqlite_driver.run(
            conn, _sqlite_read, wanted, _time_text(now)
        )
        found = Found(
            expired=[ExpiredHold(*row) for row in sorted(expired)],
            live=[LiveLot._make((*row[:5], _time_value(row[5]))) for row in live],
            named=[_sqlite_hold(row)[0] for row in named],
            keys=[Key._make((*row[:5], *map(_time_value, row[5:]))) for row in keys],
        )
        for row in stored:
            values = _SQLITE_TRANSFERS.read(row)
            print_ = values.pop("fingerprint")
            found.transfers[values["app"], values["idempotency_key"]] = (
                Transfer(**values, replayed=True),
                print_,
            )
        for hold, print_ in map(_sqlite_hold, kept):
            found.holds_by_key[hold.app, hold.idempotency_key] = (
                replace(hold, replayed=True),
                print_,
            )
        return found

    async def write(self, conn: AsyncConnection, batch: Written) -> None:
        claims = (
            (
                _SQLITE_INSERT_HOLDS,
                [_SQLITE_HOLDS.stored((*_hold_values(hold), f)) for hold, f in batch.holds],
            ),
            (
                _SQLITE_INSERT_TRANSFERS,
                [_SQLITE_TRANSFERS.stored((*_transfer_values(t), f)) for t, f in batch.transfers],
            ),
        )
        rest = (
            (
                _SQLITE_SETTLE,
                [_SQLITE_SETTLED.stored(_settled_values(hold)) for hold in batch.settled],
            ),
            (_SQLITE_KEY_SPENT, batch.keys),
            (
                _SQLITE_MOVE,
                [_SQLITE_MOVED.stored((*_moved_values(a), batch.now)) for a in batch.accounts],
            ),
            (_SQLITE_LOWER_LOT, batch.lowered),
            (_SQLITE_INSERT_LOTS, [_SQLITE_LOTS.stored(_lot_values(lot)) for lot in batch.lots]),
            (_SQLITE_INSERT_SPENDS, [_spend_values(spend) for spend in batch.spends]),
            (
                _SQLITE_INSERT_MESSAGES,
                [_SQLITE_MESSAGES.stored(_message_values(message)) for message in batch.messages],
            ),
        )
        if not await sqlite_driver.run(conn, _sqlite_write, claims, rest):
            raise RetryTransaction("an idempotency key was claimed concurrently")


def _time_text(value: datetime | None) -> str | None:
    """A timestamp as ``tables.Timestamp`` stores it on SQLite: the UTC time in
    SQLAlchemy's DATETIME text, no offset (``2026-01-02 09:30:00.000000``), which sorts."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _time_value(text: str | None) -> datetime | None:
    """A timestamp SQLite stores as text, aware in UTC, as ``tables.Timestamp`` reads it."""
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


def _json_value(text: str | None) -> Any:
    """A JSON column's value, numbers exact, as the engine's deserializer reads it."""
    return None if text is None else jsonio.loads(text)


def _conversion(kind: Any) -> tuple[Callable[[Any], Any], Callable[[Any], Any]] | None:
    """How SQLAlchemy stores a value of a column's type on SQLite and reads it back, for
    the types whose values it changes."""
    if isinstance(kind, Timestamp):
        return _time_text, _time_value
    if isinstance(kind, JSON):
        return _to_json, _json_value
    return None


class _SqliteColumns:
    """Some columns of one table, stored and read by SQL run on sqlite3 as SQLAlchemy
    stores and reads them on SQLite (a timestamp as the text of its UTC time, JSON as its
    text, NULL for None, the rest as it is), so that each reads what the other wrote."""

    def __init__(self, table: Table, names: Sequence[str]) -> None:
        self.table = table
        self.names = tuple(names)
        changed = [
            (index, name, conversion)
            for index, name in enumerate(self.names)
            if (conversion := _conversion(table.c[name].type)) is not None
        ]
        self._stored = [(index, store) for index, _, (store, _) in changed]
        self._read = [(name, read) for _, name, (_, read) in changed]

    def stored(self, values: Iterable[Any]) -> list[Any]:
        """A row's values (in the order of ``names``) as SQLite keeps them."""
        row = list(values)
        for index, store in self._stored:
            row[index] = store(row[index])
        return row

    def read(self, row: Sequence[Any]) -> dict[str, Any]:
        """A stored row (in the order of ``names``), by name."""
        values = dict(zip(self.names, row, strict=True))
        for name, read in self._read:
            values[name] = read(values[name])
        return values

    def insert(self, then: str = "") -> str:
        """``INSERT INTO lot_spends (transfer_id, lot_id, amount) VALUES (?, ?, ?)``."""
        columns, values = ", ".join(self.names), ", ".join("?" * len(self.names))
        return f"INSERT INTO {self.table.name} ({columns}) VALUES ({values}){then}"  # noqa: S608

    def update(self) -> str:
        """The row whose first column is the first value set to the others:
        ``UPDATE lots SET remaining = ?2 WHERE id = ?1``."""
        key, *names = self.names
        values = ", ".join(f"{name} = ?{index}" for index, name in enumerate(names, 2))
        return f"UPDATE {self.table.name} SET {values} WHERE {key} = ?1"  # noqa: S608

    def select(self, alias: str) -> str:
        """``h.id, h.account_id, …`` for ``alias`` h."""
        return ", ".join(f"{alias}.{name}" for name in self.names)


_SQLITE_HOLDS = _SqliteColumns(holds, _HOLD_FIELDS)
_SQLITE_TRANSFERS = _SqliteColumns(
    transfers, (*(column.key for column in TRANSFER_COLUMNS), "fingerprint")
)
_SQLITE_SETTLED = _SqliteColumns(holds, _SETTLED_FIELDS)
_SQLITE_MOVED = _SqliteColumns(
    accounts, ("id", "balance", "held", "debt", "lots_expire_at", "updated_at")
)
_SQLITE_LOTS = _SqliteColumns(lots, _LOT_FIELDS)
_SQLITE_MESSAGES = _SqliteColumns(outbox, _MESSAGE_FIELDS)
_hold_values = attrgetter(*_HOLD_FIELDS[:-1])
_transfer_values = attrgetter(*_SQLITE_TRANSFERS.names[:-1])
_settled_values = attrgetter(*_SETTLED_FIELDS)
_moved_values = attrgetter(*_SQLITE_MOVED.names[:-1])
_lot_values = itemgetter(*_LOT_FIELDS)
_spend_values = itemgetter(*_SPEND_FIELDS)
_message_values = itemgetter(*_MESSAGE_FIELDS)

# SQLite's writers run one at a time (BEGIN IMMEDIATE), so reading the rows locks them,
# and whether an account has holds due cannot change before the engine closes them.
_SQLITE_LOCK = """
SELECT w.name, w.hold_id, a.id, a.balance, a.held, a.overdraft_limit, a.debt, a.status,
    a.lots_expire_at,
    EXISTS (
        SELECT 1 FROM holds h
        WHERE h.account_id = a.id AND h.status = 'open' AND h.expires_at <= :now
    ) AS holds_due
FROM (
    SELECT name, NULL AS hold_id, account_id FROM account_names
    WHERE name IN (SELECT value FROM json_each(:names))
    UNION ALL
    SELECT account_id, id, account_id FROM holds
    WHERE id IN (SELECT value FROM json_each(:hold_ids))
) AS w JOIN accounts a ON a.id = w.account_id
ORDER BY a.id
"""
# A batch's reads in order, each with the lists of Wanted that make it wanted; their
# parameters are named after Wanted's fields. The holds past expiry are closed first (what
# each released), so the named holds are read as they are now.
_SQLITE_READS = (
    (
        """
UPDATE holds SET status = 'expired', updated_at = :now
WHERE (account_id IN (SELECT value FROM json_each(:holding))
        OR id IN (SELECT value FROM json_each(:hold_ids)))
    AND status = 'open' AND expires_at <= :now
RETURNING id, account_id, amount - captured
""",
        ("holding", "hold_ids"),
    ),
    (
        """
SELECT id, account_id, source, remaining, priority, expires_at FROM lots
WHERE account_id IN (SELECT value FROM json_each(:lot_owners)) AND remaining > 0
ORDER BY account_id, id
""",
        ("lot_owners",),
    ),
    (
        f"""
SELECT {_SQLITE_TRANSFERS.select("t")}
FROM json_each(:transfer_keys) AS k
JOIN transfers t ON t.app = k.value ->> 0 AND t.idempotency_key = k.value ->> 1
""",  # noqa: S608 - built once, from the tables' own column names
        ("transfer_keys",),
    ),
    (
        f"""
SELECT {_SQLITE_HOLDS.select("h")}
FROM json_each(:hold_keys) AS k
JOIN holds h ON h.app = k.value ->> 0 AND h.idempotency_key = k.value ->> 1
""",  # noqa: S608 - built once, from the tables' own column names
        ("hold_keys",),
    ),
    (
        f"""
SELECT {_SQLITE_HOLDS.select("h")} FROM holds h
WHERE h.id IN (SELECT value FROM json_each(:hold_ids))
""",  # noqa: S608 - built once, from the tables' own column names
        ("hold_ids",),
    ),
    # The proxy keys paying for new or named holds, each with what its open, unexpired
    # holds reserve (found by the key: ``+`` keeps the planner off the expiry index, which
    # would walk every open hold).
    (
        """
SELECT p.id, p.account_id, p.spend_limit, p.spent,
    (SELECT coalesce(sum(h.amount - h.captured), 0) FROM holds h
     WHERE h.proxy_key_id = p.id AND h.status = 'open' AND +h.expires_at > :now) AS held,
    p.expires_at, p.revoked_at
FROM proxy_keys p
WHERE p.id IN (SELECT value FROM json_each(:key_ids))
    OR p.id IN (
        SELECT proxy_key_id FROM holds WHERE id IN (SELECT value FROM json_each(:hold_ids))
    )
ORDER BY p.id
""",
        ("key_ids", "hold_ids"),
    ),
)
_WANTED = tuple(wanted.name for wanted in fields(Wanted))
_CLAIM = " ON CONFLICT (app, idempotency_key) DO NOTHING"
_SQLITE_INSERT_HOLDS = _SQLITE_HOLDS.insert(_CLAIM)
_SQLITE_INSERT_TRANSFERS = _SQLITE_TRANSFERS.insert(_CLAIM)
_SQLITE_SETTLE = _SQLITE_SETTLED.update()
_SQLITE_KEY_SPENT = _SqliteColumns(proxy_keys, ("id", "spent")).update()
_SQLITE_MOVE = _SQLITE_MOVED.update()
_SQLITE_LOWER_LOT = _SqliteColumns(lots, ("id", "remaining")).update()
_SQLITE_INSERT_LOTS = _SQLITE_LOTS.insert()
_SQLITE_INSERT_SPENDS = _SqliteColumns(lot_spends, _SPEND_FIELDS).insert()
_SQLITE_INSERT_MESSAGES = _SQLITE_MESSAGES.insert()


def _sqlite_read(raw: sqlite3.Connection, wanted: Wanted, now: str | None) -> list[list[Any]]:
    """Every read of a batch in one trip to SQLite's thread, each only when wanted."""
    lists = {name: getattr(wanted, name) for name in _WANTED}
    parameters = {name: _to_json(values) for name, values in lists.items()} | {"now": now}
    return [
        sqlite_driver.fetch(raw, sql, parameters) if any(map(lists.get, needs)) else []
        for sql, needs in _SQLITE_READS
    ]


def _sqlite_write(
    raw: sqlite3.Connection,
    claims: Iterable[tuple[str, Sequence[Any]]],
    rest: Iterable[tuple[str, Sequence[Any]]],
) -> bool:
    """A batch's writes in one trip to SQLite's thread: the claims first (new holds, then
    transfers), the rest only if they inserted every row; whether they did."""
    for sql, rows in claims:
        if rows and sqlite_driver.execute_many(raw, sql, rows) < len(rows):
            return False
    for sql, rows in rest:
        if rows:
            sqlite_driver.execute_many(raw, sql, rows)
    return True


def _sqlite_hold(row: Sequence[Any]) -> tuple[Hold, str]:
    """A stored hold and its fingerprint."""
    values = _SQLITE_HOLDS.read(row)
    print_ = values.pop("fingerprint")
    return Hold(**values), print_


_SQLITE = SqliteStatements()
_POSTGRES = PostgresStatements()


def of(conn: AsyncConnection) -> Statements:
    """The statements for the database behind ``conn``."""
    return _SQLITE if is_sqlite(conn.dialect) else _POSTGRES
