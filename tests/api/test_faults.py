"""A database that is slow, locked, busy or gone is answered with 503 and ``Retry-After``
within seconds, on the fast lane and the general path alike; never a 500, a hang or a
dropped connection (issue 10's fault findings, each failing before its fix)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from creditsd.api.app import create_app
from creditsd.config import DatabaseSettings
from creditsd.inprocess import Ledger
from creditsd.kit import db
from creditsd.kit.repeats import QUIET_SECONDS, Repeats
from creditsd.worker import background
from tests.conftest import (
    LedgerFactory,
    body,
    client_for,
    create_key,
    make_settings,
    row_locked,
)

FAST = {"database": {"pool_timeout": 0.5, "lock_timeout": 0.5, "statement_timeout": 1}}


def assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "1"
    assert body(answer)["error"]["code"] == "unavailable"


@asynccontextmanager
async def admin_client(ledger: Ledger) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(ledger, await create_key(ledger, "admin")) as client:
        yield client


@pytest.mark.parametrize("path", ["/v1/charges", "/v1/holds"])
async def test_a_locked_account_is_a_503_within_the_lock_timeout(
    make_ledger: LedgerFactory, path: str
) -> None:
    ledger = await make_ledger(**FAST)
    async with admin_client(ledger) as api:
        await api.post("/v1/grants", json={"account_id": "busy", "amount": 10})
        async with row_locked(ledger, "busy"):
            started = time.monotonic()
            answer = await api.post(path, json={"account_id": "busy", "amount": 1})
            waited = time.monotonic() - started
        assert_unavailable(answer)
        assert waited < 5
        # Once the lock is gone the same request goes through.
        assert (await api.post(path, json={"account_id": "busy", "amount": 1})).status_code == 201


async def test_an_exhausted_pool_is_a_503_within_the_pool_timeout(
    make_ledger: LedgerFactory,
) -> None:
    ledger = await make_ledger(database={"pool_size": 1, "pool_timeout": 0.5})
    async with admin_client(ledger) as api:
        async with ledger.engine.connect():  # the only connection, taken
            started = time.monotonic()
            for answer in [
                await api.get("/v1/accounts/someone"),
                await api.post("/v1/charges", json={"account_id": "someone", "amount": 1}),
                await api.get("/readyz"),
            ]:
                assert_unavailable(answer)
            assert time.monotonic() - started < 5
        assert (await api.get("/readyz")).status_code == 200


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_slow_statement_is_cut_off_by_the_statement_timeout(
    make_ledger: LedgerFactory,
) -> None:
    ledger = await make_ledger(database={"statement_timeout": 0.2})
    started = time.monotonic()
    with pytest.raises(DBAPIError, match="statement timeout"):
        await db.run(ledger.engine, lambda conn: conn.execute(text("SELECT pg_sleep(5)")))
    assert time.monotonic() - started < 3


async def _silent_server() -> tuple[asyncio.Server, int]:
    """A TCP port that accepts connections and never says a word (a paused database)."""

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_an_unresponsive_database_fails_the_connect_within_the_connect_timeout() -> None:
    server, port = await _silent_server()
    engine = db.create_engine(
        DatabaseSettings(url=f"postgresql://u@127.0.0.1:{port}/d", connect_timeout=0.5)
    )
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            await db.run(engine, lambda conn: conn.execute(text("SELECT 1")))
    finally:
        await engine.dispose()
        server.close()
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("backend", ["postgresql"])
@pytest.mark.parametrize("fast_lane", [True, False])
async def test_connections_killed_under_the_service_are_retried_or_answered_503(
    make_ledger: LedgerFactory, fast_lane: bool
) -> None:
    """What a PostgreSQL restart does to open connections: each is dropped under us."""
    ledger = await make_ledger(**FAST)
    url = make_url(ledger.settings.database.url)
    admin = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
    secret = await create_key(ledger, "admin")
    app = create_app(ledger, sweep=False, fast_lane=fast_lane)
    headers = {"Authorization": f"Bearer {secret}"}
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t", headers=headers
        ) as api:
            await api.post("/v1/grants", json={"account_id": "a", "amount": 100})
            for round_ in range(3):
                warm = [
                    api.post("/v1/charges", json={"account_id": "a", "amount": 1}) for _ in range(4)
                ]
                assert {r.status_code for r in await asyncio.gather(*warm)} == {201}
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()",
                    url.database,
                )
                answers = await asyncio.gather(
                    *[
                        api.post(
                            "/v1/charges",
                            json={"account_id": "a", "amount": 1},
                            headers={"Idempotency-Key": f"after-{round_}-{n}"},
                        )
                        for n in range(4)
                    ]
                )
                for answer in answers:
                    assert answer.status_code in {201, 503}, answer.text
                    if answer.status_code == 503:
                        assert_unavailable(answer)
            account = body(await api.get("/v1/accounts/a"))
            charged = body(await api.get("/v1/accounts/a/transactions", params={"limit": 100}))
            assert account["balance"] == 100 - (len(charged["data"]) - 1)
    finally:
        await admin.close()
        await app.state.stripe.close()


async def test_an_outage_is_logged_once_per_ten_seconds_not_once_per_request(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    down = Ledger(db.create_engine("postgresql://nobody@127.0.0.1:1/none"), ledger.settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(down, sweep=False)),
        base_url="http://t",
        headers={"Authorization": "Bearer cdk_whatever"},
    ) as client:
        for _ in range(50):
            assert_unavailable(await client.get("/readyz"))
    said = [r.getMessage() for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(said) == 1, said
    assert "ConnectionRefusedError" in said[0]


def test_a_held_back_line_is_said_again_with_its_count() -> None:
    now = [0.0]
    quiet = Repeats(clock=lambda: now[0])
    logger = logging.getLogger("creditsd.test")
    with _captured(logger) as lines:
        for _ in range(5):
            quiet.say(logger, "db down")
        now[0] += QUIET_SECONDS
        quiet.say(logger, "db down")
        quiet.say(logger, "another")
    assert lines == ["db down", "db down (and 4 more times in 10 s)", "another"]


@contextmanager
def _captured(logger: logging.Logger) -> Iterator[list[str]]:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Keep()
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


async def test_background_work_waits_out_an_outage_with_a_line_per_ten_seconds(
    make_ledger: LedgerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    settings = (
        await make_ledger(webhooks={"poll_interval": 0.05}, holds={"sweep_interval": 0.05})
    ).settings
    down = Ledger(db.create_engine("postgresql://nobody@127.0.0.1:1/none"), settings)
    work = asyncio.create_task(background(down))
    await asyncio.sleep(1)
    work.cancel()
    with suppress(asyncio.CancelledError):
        await work
    lines = [r for r in caplog.records if r.name.startswith("creditsd")]
    assert sorted(r.getMessage().split(":")[0] for r in lines) == [
        "expiry sweep waits for the database",
        "outbox delivery waits for the database",
        "reconciliation waits for the database",
        "runway refresh waits for the database",
    ]
    assert all(r.exc_info is None for r in lines)


async def charges_at_once(
    api: httpx.AsyncClient, account_id: str, count: int
) -> list[tuple[httpx.Response, float]]:
    """``count`` charges of one credit sent at once, each answer with how long it took."""

    async def charge(n: int) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        answer = await api.post(
            "/v1/charges",
            json={"account_id": account_id, "amount": 1},
            headers={"Idempotency-Key": f"at-once-{n}"},
        )
        return answer, time.monotonic() - started

    return await asyncio.gather(*(charge(n) for n in range(count)))


@pytest.mark.parametrize("group_commit", [True, False])
async def test_charges_against_a_locked_row_are_each_answered_within_the_lock_timeout(
    make_ledger: LedgerFactory, group_commit: bool
) -> None:
    """24 charges at once while another client keeps the account locked far longer than
    ``lock_timeout``: every one is a 503 within the lock timeout and a second, not one
    after another."""
    ledger = await make_ledger(ledger={"group_commit": group_commit}, **FAST)
    timeout = ledger.settings.database.lock_timeout
    async with admin_client(ledger) as api:
        await api.post("/v1/grants", json={"account_id": "busy", "amount": 100})
        async with row_locked(ledger, "busy"):
            answered = await charges_at_once(api, "busy", 24)
        for answer, _waited in answered:
            assert_unavailable(answer)
        assert max(waited for _, waited in answered) < timeout + 1
        assert (await api.get("/v1/accounts/busy")).json()["balance"] == 100


class PausableProxy:
    """A TCP relay in front of PostgreSQL that can stop passing bytes (a stalled server)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.server: asyncio.Server | None = None
        self.relays: list[asyncio.Future[tuple[None, None]]] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with suppress(OSError):
                while data := await source.read(65536):
                    await self.flowing.wait()
                    sink.write(data)
                    await sink.drain()
            sink.close()

        relay = asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.relays.append(relay)
        await relay

    async def close(self) -> None:
        """Stop listening and end every relayed connection."""
        assert self.server is not None
        self.server.close()
        self.flowing.set()
        for writer in self.writers:
            writer.close()
        await asyncio.gather(*self.relays, return_exceptions=True)


@pytest.mark.parametrize("backend", ["postgresql"])
@pytest.mark.parametrize("group_commit", [True, False])
async def test_charges_during_a_database_stall_are_each_answered_within_the_statement_timeout(
    database_url: str, group_commit: bool
) -> None:
    """The server stops answering (paused, cut off) for longer than any timeout: 24
    charges at once are each a 503 within the statement timeout and a second."""
    url = make_url(database_url)
    proxy = PausableProxy(url.port or 5432)
    port = await proxy.start()
    settings = make_settings(
        url.set(port=port).render_as_string(hide_password=False),
        database={
            "pool_timeout": 0.5,
            "connect_timeout": 0.5,
            "lock_timeout": 0.5,
            "statement_timeout": 1,
        },
        ledger={"group_commit": group_commit},
    )
    ledger = await Ledger.connect(settings)
    timeout = settings.database.statement_timeout
    try:
        async with admin_client(ledger) as api:
            await api.post("/v1/grants", json={"account_id": "a", "amount": 100})
            proxy.flowing.clear()
            answered = await charges_at_once(api, "a", 24)
            proxy.flowing.set()
            for answer, _waited in answered:
                assert_unavailable(answer)
            assert max(waited for _, waited in answered) < timeout + 1
    finally:
        await ledger.close()
        await proxy.close()
