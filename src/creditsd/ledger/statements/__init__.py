"""The posting engine's statements, chosen once per database.

A batch is the same few steps on either database, each one trip to it whatever the
batch's size: lock its accounts, read what it needs, write what it did, in constant SQL
run on the driver itself. :class:`PostgresStatements` (:mod:`.postgres`) runs it on
asyncpg, each batch's rows passed as arrays to ``unnest``; :class:`SqliteStatements`
(:mod:`.sqlite`) on the sqlite3 connection on aiosqlite's thread, lists passed as JSON
arrays to ``json_each``. :class:`Statements` (:mod:`.shared`, with the columns and values
a batch passes) is what both share, in portable SQLAlchemy Core. :func:`of` is where
creditsd chooses by database.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.kit.db import is_sqlite
from creditsd.ledger.statements.postgres import PostgresStatements
from creditsd.ledger.statements.shared import (
    HOLD_COLUMNS,
    LIVE,
    TRANSFER_COLUMNS,
    Found,
    LiveLot,
    Message,
    Statements,
    Wanted,
    Written,
    hold_from_row,
)
from creditsd.ledger.statements.sqlite import SqliteStatements
from creditsd.tables import outbox

__all__ = [
    "HOLD_COLUMNS",
    "LIVE",
    "TRANSFER_COLUMNS",
    "Found",
    "LiveLot",
    "Message",
    "PostgresStatements",
    "SqliteStatements",
    "Statements",
    "Wanted",
    "Written",
    "hold_from_row",
    "of",
    "queue",
]


async def queue(conn: AsyncConnection, messages: list[Message]) -> None:
    """Write outbox messages of a change the engine did not make (in its transaction)."""
    if messages:
        await conn.execute(outbox.insert(), messages)


_SQLITE = SqliteStatements()
_POSTGRES = PostgresStatements()


def of(conn: AsyncConnection) -> Statements:
    """The statements for the database behind ``conn``."""
    return _SQLITE if is_sqlite(conn.dialect) else _POSTGRES
