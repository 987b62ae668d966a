"""PostgreSQL's hot path, run on asyncpg itself: statements compiled once from their
SQLAlchemy form, executed in a transaction of asyncpg's own.

A lone charge is two statements; going through SQLAlchemy's execution layer for each
(and for BEGIN and COMMIT) costs more CPU than the statements take on the server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from creditsd import jsonio

Raw = asyncpg.Connection


class Prepared:
    """One statement rendered for asyncpg (``$1, $2…``), its parameters in order."""

    def __init__(self, statement: ClauseElement) -> None:
        dialect = asyncpg_dialect.dialect(json_serializer=jsonio.dumps)  # type: ignore[no-untyped-call]
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        self.sql = str(compiled)
        self.names = tuple(compiled.positiontup or ())
        self.defaults = {name: compiled.params[name] for name in self.names}
        # Each parameter's own conversion (JSON to text, timestamps to UTC), as SQLAlchemy
        # would apply it.
        self.processors = [
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in self.names
        ]

    async def fetch(self, raw: Raw, values: Mapping[str, Any]) -> list[Any]:
        """The statement's rows (asyncpg caches the prepared statement per connection)."""
        arguments = []
        for name, process in zip(self.names, self.processors, strict=True):
            value = values.get(name, self.defaults[name])
            arguments.append(value if process is None or value is None else process(value))
        return list(await raw.fetch(self.sql, *arguments))


@asynccontextmanager
async def raw_transaction(engine: AsyncEngine) -> AsyncIterator[Raw]:
    """A pooled connection's asyncpg connection, in a transaction of its own that commits
    when the block ends and rolls back if it raises."""
    async with engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        raw = (await autocommit.get_raw_connection()).driver_connection
        assert isinstance(raw, asyncpg.Connection)
        async with raw.transaction():
            yield raw
