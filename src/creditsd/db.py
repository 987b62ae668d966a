"""Engines and transactions for SQLite (embedded) and PostgreSQL (production)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import Dialect, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from creditsd import jsonio
from creditsd.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

# PostgreSQL (and CockroachDB, YugabyteDB) SQLSTATEs after which a whole transaction may rerun.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
_SQLITE_BUSY_MESSAGES = ("database is locked", "database table is locked")
_READONLY = "creditsd_readonly"


def is_sqlite(dialect: Dialect) -> bool:
    """Whether a connection speaks to SQLite (else PostgreSQL): the one place that asks.

    The posting engine picks its statements by it, and migrations SQLite's way of
    changing a table.
    """
    return dialect.name == "sqlite"


def async_url(raw: str) -> URL:
    """Map ``sqlite:///`` and ``postgresql://`` URLs to the async drivers we ship."""
    url = make_url(raw)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    if backend in {"postgresql", "postgres"}:
        return url.set(drivername="postgresql+asyncpg")
    raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def create_engine(raw_url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An engine with the settings the ledger's guarantees rely on."""
    url = async_url(raw_url)
    options: dict[str, Any] = {
        "json_serializer": jsonio.dumps,
        "json_deserializer": jsonio.loads,
    }
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=0,
            connect_args={"timeout": 30, "check_same_thread": False},
            **options,
        )
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=0, pool_pre_ping=False, **options
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves, so a write transaction takes the write lock up front
        # (BEGIN IMMEDIATE) instead of failing with SQLITE_BUSY when a reader upgrades.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # acknowledged means on disk
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        readonly = connection.get_execution_options().get(_READONLY, False)
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


class RetryTransaction(Exception):
    """Raised inside a transaction to roll it back and run it again from the start."""


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed transaction may simply be run again.

    Every write carries an idempotency key, so rerunning after a lost connection is safe
    even when the first attempt did commit: the rerun finds the key and replays.
    """
    if isinstance(exc, RetryTransaction):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated or isinstance(exc, InterfaceError):
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if sqlstate in _RETRYABLE_SQLSTATES:
        return True
    return isinstance(exc, OperationalError) and any(
        message in str(exc.orig) for message in _SQLITE_BUSY_MESSAGES
    )


@asynccontextmanager
async def transaction(
    engine: AsyncEngine, *, readonly: bool = False
) -> AsyncIterator[AsyncConnection]:
    """One database transaction; commits on success, rolls back on any exception."""
    async with engine.connect() as conn:
        session = await conn.execution_options(**{_READONLY: True}) if readonly else conn
        async with session.begin():
            yield session


async def run(
    engine: AsyncEngine,
    work: Callable[[AsyncConnection], Awaitable[T]],
    *,
    readonly: bool = False,
    attempts: int = 8,
) -> T:
    """Run ``work`` in one transaction, rerunning it on serialization failures and busy locks."""
    for attempt in range(1, attempts + 1):
        try:
            async with transaction(engine, readonly=readonly) as conn:
                return await work(conn)
        except (DBAPIError, RetryTransaction) as exc:
            if not is_retryable(exc):
                raise
            if attempt == attempts:
                reason = type(getattr(exc, "orig", exc)).__name__
                log.warning("giving up after %d attempts: %s", attempts, reason)
                raise Unavailable(
                    "the database is busy; retry with the same idempotency key"
                ) from exc
            await asyncio.sleep(min(0.5, 0.005 * 2**attempt) * random.random())  # noqa: S311
    raise AssertionError("unreachable")  # pragma: no cover
