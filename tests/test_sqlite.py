"""creditsd's SQLite dialect: aiosqlite with one trip to its thread per statement, which
reads and writes as SQLAlchemy's own adapter does and fails alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text
from sqlalchemy.exc import IntegrityError

from creditsd import db
from creditsd import sqlite as sqlite_driver

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
