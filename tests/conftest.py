"""Shared fixtures: a freshly migrated SQLite file and PostgreSQL database for every test.

PostgreSQL is found through ``CREDITSD_TEST_DATABASE_URL``. When it cannot be reached the
PostgreSQL half of the suite is skipped locally, and fails under CI (``CI=true``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
import httpx
import pytest
import uvicorn
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.api.app import create_app
from creditsd.config import Settings, load_settings
from creditsd.inprocess import Ledger
from creditsd.keys import service as keys
from creditsd.kit import db, jsonio
from creditsd.kit.repeats import repeats
from creditsd.members import service as members
from creditsd.members.service import LimitSpec
from creditsd.migrations import upgrade
from creditsd.tables import audit_log

DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ["sqlite", "postgresql"]


def postgres_admin_url() -> str:
    """The PostgreSQL database the suite connects to in order to create its own."""
    return os.environ.get("CREDITSD_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)


def _asyncpg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url)
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def unavailable(reason: str) -> NoReturn:
    """A tool or service the test needs is missing: skip locally, fail in CI (``CI=true``)."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(reason)
    pytest.skip(reason)


class Clock:
    """A clock tests can move forward."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += timedelta(seconds=seconds)


class Databases:
    """Migrated templates, cloned into a fresh database per test."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.run_id = uuid.uuid4().hex[:8]
        self.sqlite_template = workdir / "template.db"
        self.postgres_template: str | None = None
        self.postgres_error: str | None = None
        self.created: list[str] = []

    async def prepare(self) -> None:
        """Migrate the templates once per session."""
        engine = db.create_engine(f"sqlite:///{self.sqlite_template}")
        await upgrade(engine)
        await engine.dispose()
        try:
            admin = await asyncpg.connect(_asyncpg_dsn(postgres_admin_url()), timeout=5)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            self.postgres_error = f"PostgreSQL at {postgres_admin_url()} unreachable: {exc!r}"
            return
        template = f"creditsd_test_{self.run_id}_template"
        try:
            await admin.execute(f'CREATE DATABASE "{template}"')
        finally:
            await admin.close()
        engine = db.create_engine(_asyncpg_dsn(postgres_admin_url(), template))
        await upgrade(engine)
        await engine.dispose()
        self.postgres_template = template

    def require_postgres(self) -> None:
        """Skip locally, fail in CI, when PostgreSQL is out of reach."""
        if self.postgres_template is None:
            unavailable(self.postgres_error or "PostgreSQL unavailable")

    async def fresh(self, backend: str, *, migrated: bool = True) -> str:
        """The URL of a new database: migrated and empty, or (``migrated=False``) bare."""
        name = f"t{uuid.uuid4().hex[:12]}"
        if backend == "sqlite":
            path = self.workdir / f"{name}.db"
            if migrated:
                shutil.copyfile(self.sqlite_template, path)
            return f"sqlite:///{path}"
        self.require_postgres()
        database = f"creditsd_test_{self.run_id}_{name}"
        template = f' TEMPLATE "{self.postgres_template}"' if migrated else ""
        admin = await asyncpg.connect(_asyncpg_dsn(postgres_admin_url()))
        try:
            await admin.execute(f'CREATE DATABASE "{database}"{template}')
        finally:
            await admin.close()
        self.created.append(database)
        return _asyncpg_dsn(postgres_admin_url(), database)

    async def drop_all(self) -> None:
        """Drop every database the session made."""
        if self.postgres_template is None:
            return
        admin = await asyncpg.connect(_asyncpg_dsn(postgres_admin_url()))
        try:
            for database in [*self.created, self.postgres_template]:
                await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(autouse=True)
def said_afresh() -> None:
    """Each test hears every log line the first time it comes, whatever earlier tests said."""
    repeats.forget()


@pytest.fixture(scope="session")
async def databases(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Databases]:
    """Templates for the session's databases."""
    found = Databases(tmp_path_factory.mktemp("databases"))
    await found.prepare()
    yield found
    await found.drop_all()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each ledger test runs on SQLite and on PostgreSQL."""
    return str(request.param)


@pytest.fixture
async def database_url(databases: Databases, backend: str) -> str:
    """A fresh migrated database on the test's backend."""
    return await databases.fresh(backend)


def make_settings(database_url: str, **sections: dict[str, Any]) -> Settings:
    """Settings for a test: the database plus any section overrides (tables nest)."""
    return load_settings(path=os.devnull, environ=settings_environ(database_url, **sections))


def settings_environ(database_url: str, **sections: dict[str, Any]) -> dict[str, str]:
    """The ``CREDITSD_*`` variables of :func:`make_settings` (for a creditsd process)."""
    environ = {"CREDITSD_DATABASE_URL": database_url}

    def overlay(prefix: str, values: dict[str, Any]) -> None:
        for key, value in values.items():
            name = f"{prefix}__{key.upper()}"
            if isinstance(value, dict):
                overlay(name, value)
            else:
                environ[name] = str(value)

    for section, values in sections.items():
        overlay(f"CREDITSD_{section.upper()}", values)
    return environ


LedgerFactory = Callable[..., Awaitable[Ledger]]


@pytest.fixture
def clock() -> Clock:
    """A movable clock for the ledger under test."""
    return Clock()


@pytest.fixture
async def make_ledger(database_url: str, clock: Clock) -> AsyncIterator[LedgerFactory]:
    """Open ledgers on the test's database with the settings given; all closed at the end."""
    opened: list[Ledger] = []

    async def factory(**sections: dict[str, Any]) -> Ledger:
        ledger = await Ledger.connect(make_settings(database_url, **sections), clock=clock)
        opened.append(ledger)
        return ledger

    yield factory
    for ledger in opened:
        await ledger.close()


@pytest.fixture
async def ledger(make_ledger: LedgerFactory) -> Ledger:
    """A ledger with the default settings (no sign-up grant)."""
    return await make_ledger()


async def audit_trail(conn: AsyncConnection, target: str) -> list[Any]:
    """The audit records of one target, oldest first (creditsd itself only writes them)."""
    rows = await conn.execute(
        select(audit_log).where(audit_log.c.target == target).order_by(audit_log.c.id)
    )
    return list(rows)


def body(response: httpx.Response) -> Any:
    """A response's JSON with numbers kept exact."""
    return jsonio.loads(response.content)


async def create_key(ledger: Ledger, scope: str, name: str = "web") -> str:
    """A new API key's secret."""
    _key, secret = await db.run(
        ledger.engine, lambda conn: keys.create_key(conn, name, scope, ledger.now(), actor="test")
    )
    return secret


@pytest.fixture
async def api(ledger: Ledger) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process HTTP client with an admin key, against the test's ledger."""
    async with client_for(ledger, await create_key(ledger, "admin", "admin-app")) as client:
        yield client


@asynccontextmanager
async def client_for(ledger: Ledger, secret: str) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of ledger's app, its Stripe connections closed after."""
    app = create_app(ledger, sweep=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://creditsd.test",
        headers={"Authorization": f"Bearer {secret}"},
    ) as client:
        yield client
    await app.state.stripe.close()


@asynccontextmanager
async def row_locked(ledger: Ledger, account_id: str) -> AsyncIterator[None]:
    """Another client holds the account's row (PostgreSQL) or the write lock (SQLite)."""
    url = make_url(ledger.settings.database.url)
    if url.get_backend_name() == "sqlite":
        writer = sqlite3.connect(str(url.database), isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            writer.execute("ROLLBACK")
            writer.close()
        return
    other = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
    try:
        async with other.transaction():
            await other.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", account_id)
            yield
    finally:
        await other.close()


@asynccontextmanager
async def serve_app(ledger: Ledger) -> AsyncIterator[str]:
    """creditsd served over real sockets by uvicorn in this event loop, so that a client
    can hang up mid-stream; yields its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ledger, sweep=False),
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="on",
        )
    )
    task = asyncio.ensure_future(server.serve())
    while not server.started:  # noqa: ASYNC110  # uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def put_member(
    ledger: Ledger,
    wallet: str,
    member: str,
    name: str | None = None,
    limits: Sequence[LimitSpec] | None = None,
) -> None:
    """Add (or update) a wallet's member through the members service, as an admin would."""
    await ledger.database.write(
        lambda conn, now: members.put_member(
            conn, wallet, member, name, limits, ledger.policy, now, actor="test"
        )
    )
