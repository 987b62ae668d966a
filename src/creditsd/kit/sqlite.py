"""SQLAlchemy's aiosqlite dialect, one trip to SQLite's thread per statement.

aiosqlite runs every call on the connection in its own thread, and each trip there and
back costs a queue put, a thread switch, a wake-up of the event loop and a turn of it.
SQLAlchemy's adapter makes four trips a statement (open a cursor, execute, fetch the rows,
close the cursor); the write path's transaction of seven statements made 26, which cost
more than everything else a charge does on SQLite. This dialect's cursor makes one: it
executes, fetches and closes in the same call on SQLite's thread, and keeps the rows.
:func:`run` goes further for SQL that creditsd runs on sqlite3 itself (the posting
engine's): any number of statements in one trip. Both reach into aiosqlite's ``_execute``
(how aiosqlite itself runs every call) and its connection's ``_conn``, in :func:`_trip`;
``tests/test_sqlite.py`` holds both.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
    SQLiteDialect_aiosqlite,
)
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.util.concurrency import await_

DRIVER = "creditsd"  # sqlite+creditsd://…

_Outcome = tuple[list[Any] | None, Any, int, int]  # rows, description, rowcount, lastrowid
P = ParamSpec("P")
T = TypeVar("T")


async def _trip(
    adapted: Any,
    work: Callable[Concatenate[sqlite3.Connection, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """``work(raw, …)`` on aiosqlite's thread, one trip there and back, with ``raw`` the
    sqlite3 connection under SQLAlchemy's ``adapted`` one, in turn with its cursors' trips."""
    connection = adapted._connection
    async with adapted._execute_mutex:
        done: T = await connection._execute(work, connection._conn, *args, **kwargs)
    return done


async def run(
    conn: AsyncConnection,
    work: Callable[Concatenate[sqlite3.Connection, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """``work(raw, …)`` in one trip to aiosqlite's thread, on the sqlite3 connection under
    ``conn``, inside the transaction SQLAlchemy began there; ``work`` runs its statements
    with :func:`fetch` and :func:`execute_many`."""
    sync = conn.sync_connection
    assert sync is not None
    assert sync.in_transaction(), "only inside a transaction: each statement would commit"
    # In a transaction its pooled connection is at hand, with no switch to a greenlet (as
    # SQLAlchemy's get_raw_connection makes to reach it, at a cost of a few µs).
    return await _trip(sync.connection.dbapi_connection, work, *args, **kwargs)


def fetch(raw: sqlite3.Connection, sql: str, parameters: Any = ()) -> list[Any]:
    """One statement's rows, on SQLite's thread; its error raised as SQLAlchemy's."""
    try:
        return raw.execute(sql, parameters).fetchall()
    except sqlite3.Error as error:
        raise _as_sqlalchemy_error(sql, error) from error


def execute_many(raw: sqlite3.Connection, sql: str, rows: Sequence[Any]) -> int:
    """One statement once per row, on SQLite's thread: how many rows it changed; its
    error raised as SQLAlchemy's."""
    try:
        return raw.executemany(sql, rows).rowcount
    except sqlite3.Error as error:
        raise _as_sqlalchemy_error(sql, error) from error


def _as_sqlalchemy_error(sql: str, error: sqlite3.Error) -> StatementError:
    """sqlite3's error as SQLAlchemy raises it from its own cursor (``IntegrityError``,
    ``OperationalError``, …), so ``db.run`` retries busy locks and reports broken rules
    alike whichever way a statement went."""
    return DBAPIError.instance(sql, None, error, sqlite3.Error)


def _run(raw: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Outcome:
    """One statement on SQLite's thread, its rows fetched and its cursor closed."""
    cursor = raw.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        else:
            cursor.execute(operation, parameters)
        rows = cursor.fetchall() if cursor.description else None
        return rows, cursor.description, cursor.rowcount, cursor.lastrowid or 0
    finally:
        cursor.close()


class _Cursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor that makes one trip a statement and keeps what it learnt."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: Any) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._soft_closed_memoized: Any = {}
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid = 0

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid

    async def _async_soft_close(self) -> None:
        """Nothing to close: the statement's cursor closed on SQLite's thread."""

    def close(self) -> None:
        self._rows.clear()

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        return await self._trip(operation, () if parameters is None else parameters, False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        return await self._trip(operation, seq_of_parameters, True)

    async def _trip(self, operation: str, parameters: Any, many: bool) -> None:
        outcome = await _trip(self._adapt_connection, _run, operation, parameters, many)
        rows, description, rowcount, lastrowid = outcome
        self._rows = collections.deque(rows or ())
        self._description, self._rowcount, self._lastrowid = description, rowcount, lastrowid


class _Connection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = _Cursor


class _DBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> _Connection:
        connection = self.aiosqlite.connect(*arg, **kw)
        connection._thread.daemon = True  # as SQLAlchemy's own adapter does
        return _Connection(self, await_(connection))


class Dialect(SQLiteDialect_aiosqlite):
    """SQLite through aiosqlite, one trip to its thread per statement."""

    driver = DRIVER
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> _DBAPI:
        return _DBAPI(__import__("aiosqlite"), __import__("sqlite3"))


registry.register(f"sqlite.{DRIVER}", __name__, "Dialect")
