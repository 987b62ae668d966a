"""creditsd's SQLite dialect: aiosqlite with one trip to its thread per statement, which
reads and writes as SQLAlchemy's own adapter does and fails alike; and raw SQL run on
sqlite3 itself, many statements a trip, failing as SQLAlchemy's statements do."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import (
    CheckConstraint,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from creditsd.config import DatabaseSettings
from creditsd.kit import db
from creditsd.kit import sqlite as sqlite_driver
from creditsd.kit.errors import RuleViolated

things = Table(
    "things",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("name", String, unique=True),
)


async def test_each_statement_is_one_trip_to_sqlites_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path / 'one.db'}")
    assert engine.dialect.driver == sqlite_driver.DRIVER
    trips: list[Any] = []
    execute = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(fn)
        return await execute(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    try:
        async with engine.begin() as conn:
            await conn.run_sync(things.metadata.create_all)
        monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)

        async def work(conn: Any) -> tuple[list[Any], int]:
            trips.clear()
            added = await conn.execute(insert(things), [{"name": "a"}, {"name": "b"}])
            found = (await conn.execute(select(things.c.name).order_by(things.c.id))).all()
            return found, added.rowcount

        found, added = await db.run(engine, work)
        assert [row.name for row in found] == ["a", "b"]
        assert added == 2
        # BEGIN IMMEDIATE, the insert, the select, COMMIT: one trip each.
        assert len(trips) == 4, trips
        inserted = await db.run(engine, lambda c: c.execute(insert(things).values(name="c")))
        assert inserted.inserted_primary_key == (3,)
        assert (await db.run(engine, lambda c: c.execute(text("SELECT 1")))).scalar() == 1
    finally:
        await engine.dispose()


async def test_a_broken_rule_is_sqlalchemys_integrity_error(tmp_path: Path) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path / 'rule.db'}")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(things.metadata.create_all)
            await conn.execute(insert(things).values(name="a"))
        with pytest.raises(IntegrityError, match="UNIQUE"):
            await db.run(engine, lambda c: c.execute(insert(things).values(name="a")))
        found = await db.run(engine, lambda c: c.execute(select(things.c.name)), readonly=True)
        assert found.scalars().all() == ["a"]  # nothing of the refused write is left
    finally:
        await engine.dispose()


async def test_run_sends_many_statements_in_one_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path / 'raw.db'}")
    trips: list[Any] = []
    execute = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(fn)
        return await execute(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    def work(raw: sqlite3.Connection, names: list[tuple[str]]) -> tuple[int, list[Any]]:
        added = sqlite_driver.execute_many(raw, "INSERT INTO things (name) VALUES (?)", names)
        return added, sqlite_driver.fetch(raw, "SELECT name FROM things ORDER BY id")

    try:
        async with engine.begin() as conn:
            await conn.run_sync(things.metadata.create_all)
        monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)

        async def both(conn: Any) -> tuple[int, list[Any]]:
            trips.clear()
            return await sqlite_driver.run(conn, work, [("a",), ("b",)])

        assert await db.run(engine, both) == (2, [("a",), ("b",)])
        assert trips[0] is work, trips  # one trip, then COMMIT
        assert trips[1].__name__ == "commit", trips
        found = await db.run(engine, lambda c: c.execute(select(things.c.name)), readonly=True)
        assert found.scalars().all() == ["a", "b"]  # in SQLAlchemy's transaction, committed
    finally:
        await engine.dispose()


async def test_what_run_breaks_is_sqlalchemys_integrity_error(tmp_path: Path) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path / 'raw-rule.db'}")
    rules = MetaData()
    Table("counts", rules, Column("n", Integer, CheckConstraint("n > 0", name="positive")))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(things.metadata.create_all)
            await conn.run_sync(rules.create_all)
            await conn.execute(insert(things).values(name="a"))

        def insert_raw(sql: str, *rows: Any) -> Any:
            return lambda c: sqlite_driver.run(c, sqlite_driver.execute_many, sql, rows)

        with pytest.raises(IntegrityError, match=r"UNIQUE constraint failed: things\.name"):
            await db.run(engine, insert_raw("INSERT INTO things (name) VALUES (?)", ("a",)))
        # A CHECK: db.run answers it as the rule it broke (409 rule_violated), as it does
        # for SQLAlchemy's own statements.
        with pytest.raises(RuleViolated) as broken:
            await db.run(engine, insert_raw("INSERT INTO counts (n) VALUES (?)", (1,), (0,)))
        assert broken.value.details == {"rule": "positive"}
        assert isinstance(broken.value.__cause__, IntegrityError)
        counted = await db.run(
            engine, lambda c: c.execute(text("SELECT count(*) FROM counts")), readonly=True
        )
        assert counted.scalar() == 0  # the row before the broken one was rolled back too
    finally:
        await engine.dispose()


async def test_a_busy_lock_run_meets_is_sqlalchemys_operational_error_and_retried(
    tmp_path: Path,
) -> None:
    path = tmp_path / "raw-busy.db"
    engine = db.create_engine(DatabaseSettings(url=f"sqlite:///{path}", lock_timeout=0.05))
    other = sqlite3.connect(path, isolation_level=None)
    tries: list[BaseException | None] = []

    async def write(conn: Any) -> int:
        # A read transaction (BEGIN, not IMMEDIATE) whose raw write then waits for the lock.
        try:
            added = await sqlite_driver.run(
                conn, sqlite_driver.execute_many, "INSERT INTO things (name) VALUES (?)", [("b",)]
            )
        except OperationalError as error:
            tries.append(error)
            other.execute("ROLLBACK")  # the other writer is done: the rerun gets the lock
            raise
        tries.append(None)
        return added

    try:
        async with engine.begin() as conn:
            await conn.run_sync(things.metadata.create_all)
        other.execute("BEGIN IMMEDIATE")
        assert await db.run(engine, write, readonly=True) == 1
        first, second = tries
        assert isinstance(first, OperationalError)
        assert "database is locked" in str(first.orig)
        assert db.is_retryable(first)
        assert second is None
    finally:
        other.close()
        await engine.dispose()
