"""Engines and transactions for SQLite (embedded) and PostgreSQL (production)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy import Dialect, Engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from creditsd.config import DatabaseSettings
from creditsd.kit import jsonio
from creditsd.kit import sqlite as sqlite_driver
from creditsd.kit.errors import RuleViolated, Unavailable
from creditsd.kit.repeats import repeats

log = logging.getLogger(__name__)

T = TypeVar("T")
# What an entry point hands the doorway: work on the transaction's connection, at its instant.
Work = Callable[[AsyncConnection, datetime], Awaitable[T]]

# PostgreSQL (and CockroachDB, YugabyteDB) SQLSTATEs after which a whole transaction may rerun.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
_SQLITE_BUSY_MESSAGES = ("database is locked", "database table is locked")
_READONLY = "creditsd_readonly"
_BUSY = "the database is busy; retry with the same idempotency key"
# A transaction is not rerun once this long has passed since its first try, so a request
# waits at most one timeout (lock, statement, pool, connect) and this long.
RETRY_SECONDS = 1.0
_CLIENT_GRACE = 0.5  # seconds past its timeouts before the client stops waiting


def is_sqlite(dialect: Dialect) -> bool:
    """Whether a connection speaks to SQLite (else PostgreSQL): the one place that asks.

    The posting engine picks its statements by it, and migrations SQLite's way of
    changing a table.
    """
    return dialect.name == "sqlite"


def async_url(raw: str) -> URL:
    """Map a ``sqlite:///`` or ``postgresql://`` URL (``DatabaseSettings`` has checked it)
    to the async driver we ship."""
    url = make_url(raw)
    sqlite = url.get_backend_name() == "sqlite"
    return url.set(drivername=f"sqlite+{sqlite_driver.DRIVER}" if sqlite else "postgresql+asyncpg")


def create_engine(database: DatabaseSettings | str) -> AsyncEngine:
    """An engine with the settings the ledger's guarantees rely on, and the configured
    limits on how long any step may wait (connect, pool, locks, statements); a bare URL
    takes the default limits."""
    if isinstance(database, str):
        database = DatabaseSettings(url=database)
    url = async_url(database.url)
    engine = _create(url, database)
    if database.statement_timeout:
        _patience[engine.sync_engine] = _patience_of(database)
    return engine


def _patience_of(database: DatabaseSettings) -> float:
    return max(database.lock_timeout, database.statement_timeout) + _CLIENT_GRACE


def _create(url: URL, database: DatabaseSettings) -> AsyncEngine:
    options: dict[str, Any] = {
        "json_serializer": jsonio.dumps,
        "json_deserializer": jsonio.loads,
        "pool_size": database.pool_size,
        "max_overflow": 0,
        "pool_timeout": database.pool_timeout,
    }
    if url.get_backend_name() == "sqlite":
        # SQLite would create the file but not its directory; say which is missing up front.
        if not (directory := Path(url.database or ".").parent).is_dir():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(directory))
        engine = create_async_engine(
            url,
            connect_args={"timeout": database.lock_timeout, "check_same_thread": False},
            **options,
        )
        _configure_sqlite(engine, busy_ms=_ms(database.lock_timeout))
        _sqlite_writers[engine.sync_engine] = _WriterQueue(database.lock_timeout)
        return engine
    server_settings = {
        "lock_timeout": str(_ms(database.lock_timeout)),
        "statement_timeout": str(_ms(database.statement_timeout)),
    }
    # The server cancels a slow statement itself; a server that stops answering (paused,
    # cut off) cannot, so a transaction gives up on its own once its patience is out (see
    # run), and the driver, outside any transaction, a little later still.
    client_timeout = _patience_of(database) + _CLIENT_GRACE if database.statement_timeout else None
    return create_async_engine(
        url,
        pool_pre_ping=False,
        connect_args={
            "timeout": database.connect_timeout,
            "command_timeout": client_timeout,
            "server_settings": server_settings,
        },
        **options,
    )


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _configure_sqlite(engine: AsyncEngine, *, busy_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves, so a write transaction takes the write lock up front
        # (BEGIN IMMEDIATE) instead of failing with SQLITE_BUSY when a reader upgrades.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # acknowledged means on disk
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        readonly = connection.get_execution_options().get(_READONLY, False)
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


class _WriterQueue:
    """A process's SQLite writers, in turn: SQLite has one write lock, and its busy handler
    lets a newcomer overtake writers that have waited longer (seen: some starved past any
    timeout under a burst), so writers queue here first, fairly, for at most ``timeout``
    seconds; the busy handler then only arbitrates between processes."""

    def __init__(self, timeout: float) -> None:
        self._lock = asyncio.Lock()
        self._timeout = timeout

    async def __aenter__(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._lock.acquire()
        except TimeoutError:
            raise Unavailable(_BUSY) from None

    async def __aexit__(self, *_exc: object) -> None:
        self._lock.release()


_sqlite_writers: WeakKeyDictionary[Engine, _WriterQueue] = WeakKeyDictionary()
# How long one call of run may take in all, reruns included: its longest wait (a lock, a
# statement) and the client's grace (see _cut_off_at).
_patience: WeakKeyDictionary[Engine, float] = WeakKeyDictionary()


class RetryTransaction(Exception):
    """Raised inside a transaction to roll it back and run it again from the start."""


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed transaction may simply be run again.

    Every ledger write carries an idempotency key, so rerunning after a lost connection is
    safe even when the first attempt did commit: the rerun finds the key and replays.
    Minting an API or proxy key carries none: a rerun after a commit whose answer was lost
    mints a second key, which the caller never sees and can revoke from the list.
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


_CHECK_VIOLATION = "23514"
_SQLITE_CHECK = "CHECK constraint failed: "


def broken_rule(exc: IntegrityError) -> str | None:
    """The name of the ``CHECK`` constraint a write broke (None: another integrity error,
    such as a unique key)."""
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == _CHECK_VIOLATION:
        driver = orig.__cause__ if orig is not None and orig.__cause__ is not None else orig
        return str(getattr(driver, "constraint_name", None) or "check")
    message = str(orig)
    if message.startswith(_SQLITE_CHECK):
        return message.removeprefix(_SQLITE_CHECK)
    return None


# What a database that cannot be used right now raises: down, restarting, cut off, out of
# connections or too slow (as opposed to a bug of ours).
OUTAGES = (DBAPIError, PoolTimeout, OSError)


def described(exc: BaseException) -> str:
    """What the driver said about a failure, for the operator's log: its type and the
    first line of its message (drivers do not repeat passwords; clients never see it)."""
    said = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    message = str(said).strip().splitlines()
    return f"{type(said).__name__}: {message[0][:300] if message else ''}"


@asynccontextmanager
async def transaction(
    engine: AsyncEngine,
    *,
    readonly: bool = False,
    dry_run: bool = False,
    deadline: float | None = None,
) -> AsyncIterator[AsyncConnection]:
    """One database transaction; commits on success (``dry_run``: rolls back even then),
    rolls back on any exception.

    A connection that was dropped, or whose server stopped answering, is discarded rather
    than handed back to the pool (where its rollback would fail or wait again). On
    PostgreSQL a transaction still running at ``deadline`` (the event loop's clock) has
    its connection cut: its statement fails at once as a dropped connection would.
    """
    writers = None if readonly else _sqlite_writers.get(engine.sync_engine)
    async with writers or nullcontext(), engine.connect() as conn:
        cutoff = await _cut_off_at(conn, deadline)
        session = await conn.execution_options(**{_READONLY: True}) if readonly else conn
        try:
            async with session.begin() as begun:
                try:
                    yield session
                except (DBAPIError, OSError, asyncio.CancelledError) as exc:
                    # Discarded before the rollback, which would wait on it again.
                    if not isinstance(exc, DBAPIError) or exc.connection_invalidated:
                        await conn.invalidate()
                    raise
                if dry_run:
                    await begun.rollback()
        finally:
            if cutoff is not None:
                cutoff.cancel()


async def _cut_off_at(conn: AsyncConnection, deadline: float | None) -> asyncio.TimerHandle | None:
    """Cut a PostgreSQL connection at ``deadline``: the driver, having given up on a
    statement itself, would wait as long again for a silent server to acknowledge the
    cancellation, and it does not heed a task's cancellation sooner."""
    if deadline is None or is_sqlite(conn.dialect):
        return None
    raw: Any = (await conn.get_raw_connection()).driver_connection
    return asyncio.get_running_loop().call_at(deadline, raw.terminate)


async def run(
    engine: AsyncEngine,
    work: Callable[[AsyncConnection], Awaitable[T]],
    *,
    readonly: bool = False,
    dry_run: bool = False,
    attempts: int = 8,
) -> T:
    """Run ``work`` in one transaction, rerunning it on serialization failures, busy locks
    and dropped connections, for at most ``attempts`` tries and ``RETRY_SECONDS``, all
    within the engine's patience (its longest timeout and a grace; past it the connection
    is cut and the caller told ``Unavailable``); ``dry_run`` rolls back what it wrote and
    returns what it found."""
    started = time.monotonic()
    patience = _patience.get(engine.sync_engine)
    deadline = None if patience is None else asyncio.get_running_loop().time() + patience
    for attempt in range(1, attempts + 1):
        try:
            async with transaction(
                engine, readonly=readonly, dry_run=dry_run, deadline=deadline
            ) as conn:
                return await work(conn)
        except IntegrityError as exc:
            if (rule := broken_rule(exc)) is not None:
                raise RuleViolated(rule) from exc
            raise
        except (DBAPIError, RetryTransaction) as exc:
            if not is_retryable(exc):
                raise
            late = deadline is not None and asyncio.get_running_loop().time() >= deadline
            if attempt == attempts or late or time.monotonic() - started > RETRY_SECONDS:
                repeats.say(log, f"the database stayed busy; gave up: {described(exc)}")
                raise Unavailable(_BUSY) from exc
            await asyncio.sleep(min(0.5, 0.005 * 2**attempt) * random.random())  # noqa: S311
    raise AssertionError("unreachable")  # pragma: no cover


class Database:
    """The one doorway into a transaction. Every entry point (an HTTP route, a CLI
    command, a worker step, a group-commit batch, a method of the in-process ``Ledger``) hands
    it a piece of work, which receives the transaction's connection and the instant it
    runs at and passes them down; services take them and never open a transaction. (The
    migrations, run before any work, open their own.)"""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self._clock = clock

    async def write(self, work: Work[T], *, dry_run: bool = False) -> T:
        """Run ``work`` in a transaction that commits (``dry_run``: rolls back what it
        wrote and answers what it found), rerun as :func:`run` says."""
        return await run(self.engine, lambda conn: work(conn, self._clock()), dry_run=dry_run)

    async def read(self, work: Work[T]) -> T:
        """Run ``work`` in a read-only transaction."""
        return await run(self.engine, lambda conn: work(conn, self._clock()), readonly=True)
