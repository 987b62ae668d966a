"""Rows as SQLAlchemy hands them back, and the insert that skips a row already stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Row, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.kit.db import is_sqlite

AnyRow = Row[*tuple[Any, ...]]


def insert_or_skip(conn: AsyncConnection) -> Callable[[Table], Any]:
    """This database's ``INSERT … ON CONFLICT DO NOTHING`` constructor."""
    return sqlite.insert if is_sqlite(conn.dialect) else postgresql.insert
