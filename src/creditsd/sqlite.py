"""SQLAlchemy's aiosqlite dialect, one trip to SQLite's thread per statement.

aiosqlite runs every call on the connection in its own thread, and each trip there and
back costs a queue put, a thread switch, a wake-up of the event loop and a turn of it.
SQLAlchemy's adapter makes four trips a statement (open a cursor, execute, fetch the rows,
close the cursor); the write path's transaction of seven statements made 26, which cost
more than everything else a charge does on SQLite. This dialect's cursor makes one: it
executes, fetches and closes in the same call on SQLite's thread, and keeps the rows. It
reaches into aiosqlite's ``_execute`` (how aiosqlite itself runs every call) and its
connection's ``_conn``; ``tests/test_sqlite.py`` holds both.
"""

from __future__ import annotations

import collections
import sqlite3
from typing import Any

from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
    SQLiteDialect_aiosqlite,
)
from sqlalchemy.util.concurrency import await_

DRIVER = "creditsd"  # sqlite+creditsd://…

_Outcome = tuple[list[Any] | None, Any, int, int]  # rows, description, rowcount, lastrowid


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
        connection = self._connection
        async with self._adapt_connection._execute_mutex:
            rows, description, rowcount, lastrowid = await connection._execute(
                _run, connection._conn, operation, parameters, many
            )
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
