"""Schema migrations (Alembic), run by ``creditsd migrate`` and on ``creditsd serve`` start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from creditsd.config import DatabaseSettings
from creditsd.kit.db import create_engine, is_sqlite

HERE = Path(__file__).parent


def alembic_config() -> Config:
    """The Alembic configuration, pointed at the migrations shipped in the package."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    return config


async def migrate(database: DatabaseSettings) -> None:
    """Bring the configured database up to date, on an engine of its own where a statement
    may take as long as it needs (an index over a large table can)."""
    engine = create_engine(database.model_copy(update={"statement_timeout": 0}))
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database schema up to ``revision``."""
    async with engine.connect() as conn:
        await conn.run_sync(_upgrade, revision)
        await conn.commit()


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    if not is_sqlite(connection.dialect):
        command.upgrade(config, revision)
        return
    # SQLite changes a table's rules by copying it under a new name; its procedure for that
    # turns foreign keys off outside any transaction, then checks them before commit.
    raw = connection.connection.dbapi_connection
    assert raw is not None
    _pragma(raw, "PRAGMA foreign_keys=OFF")
    try:
        command.upgrade(config, revision)
        if connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
            raise RuntimeError("a migration left rows whose foreign keys point nowhere")
        connection.commit()
    finally:
        _pragma(raw, "PRAGMA foreign_keys=ON")


def _pragma(raw: Any, statement: str) -> None:
    cursor = raw.cursor()
    cursor.execute(statement)
    cursor.close()


class SchemaNotCurrent(Exception):
    """The database schema is not the one this version of creditsd needs."""


async def check_current(engine: AsyncEngine) -> None:
    """Refuse to run against a database that has not been migrated to this version."""
    async with engine.connect() as conn:
        current = await conn.run_sync(_current)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if current != head:
        raise SchemaNotCurrent(
            f"the database schema is at {current or 'nothing'}, this creditsd needs {head}: "
            "run `creditsd migrate`"
        )


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
