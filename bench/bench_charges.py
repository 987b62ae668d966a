"""Charges per second on PostgreSQL: two hand-written floors, the in-process Ledger, HTTP.

Each row is a scenario (spread over 10,000 accounts, or one hot account) at a number of
concurrent callers; each column a way to charge, run for the same time in the same run:

- **per-charge floor**: one hand-written asyncpg transaction per charge: BEGIN, a guarded
  ``UPDATE … RETURNING`` of the balance, an ``INSERT`` of the transfer, an ``UPDATE`` of
  the first lot with credit left and an ``INSERT`` of the lot spend (every credit is in a
  lot, so every debit spends one), COMMIT.
- **set-based floor**: group commit by hand (:class:`SetFloor`). Callers queue their
  charges; a flusher takes whatever is pending and writes it in one transaction of four
  set-based statements over ``unnest`` arrays, while the next batch forms in another lane.
- **Ledger**: ``Ledger.charge`` in-process, group commit as the settings say (or as
  ``--group-commit`` says; ``both`` gives a column for each).
- **Ledger + member limit**: the same, each charge debiting the account's wallet twin
  (same balance and lot, :func:`wallet`) for the wallet's one member, whose day limit is
  too large ever to refuse: every batch reads and counts the limits of the wallets it
  charges.
- **Ledger + auto top-up**: the same, each charge debiting the account's armed twin (same
  balance and lot, :func:`armed`), whose auto top-up is on, has a card saved and is active
  (so ``accounts.auto_topup_below`` is set, as ``autotopup.repository.arm`` sets it) with a
  threshold (``THRESHOLD``) no charge here crosses: every write reads the armed threshold
  and calls for no top-up.
- **Ledger + webhook**: the same with one webhook endpoint subscribed to
  ``charge.succeeded``, so every charge also writes an outbox row (``--no-subscriber``
  leaves it out).
- **HTTP**: one ``creditsd serve`` process, started here on a free port, loaded by ``wrk``
  through ``bench/charges.lua`` (``POST /v1/charges`` of one credit, a fresh
  ``Idempotency-Key`` each) with as many connections as there are callers.

Each cell reads ``charges/s · p50/p99 ms``. A path uses at most ``--connections`` (16)
database connections, enough for two cores and polite to whatever else shares the
server's ``max_connections``; more callers than that wait for one, in every path alike.

    .venv/bin/python bench/bench_charges.py [--seconds 5] [--workers 1,32,128]
        [--group-commit settings|on|off|both] [--lanes 2] [--connections 16] [--no-subscriber]

The database comes from ``CREDITSD_BENCH_DATABASE_URL`` (else the test URL); a scratch
database ``creditsd_bench`` is created next to it and dropped at the end. ``wrk`` must be
on the ``PATH`` (``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import os
import random
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import IO, TypeVar

import asyncpg
import httpx
from sqlalchemy import insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.autotopup import repository as topups
from creditsd.autotopup.models import Card, Rule
from creditsd.config import load_settings
from creditsd.inprocess import Ledger
from creditsd.kit import db, ids
from creditsd.ledger import posting
from creditsd.ledger.commands import Movement
from creditsd.ledger.lots import LotSpec
from creditsd.ledger.models import STRIPE
from creditsd.members import service as members
from creditsd.members.service import LimitSpec
from creditsd.migrations import upgrade
from creditsd.tables import auto_topups
from creditsd.webhooks import service as webhooks

SPREAD_ACCOUNTS = 10_000
START_BALANCE = 10**14  # 20,002 purchases of it stay within a checkpoint total (int64)
SCRATCH = "creditsd_bench"
SCRIPT = Path(__file__).with_name("charges.lua")
HOOK_URL = "http://127.0.0.1:9/hook"  # nothing delivers here: the bench runs no deliverer
WARM_UP = 0.3  # seconds of charges a Ledger makes before it is measured
MEMBER = "bench-member"  # each wallet's one member
DAY_LIMIT = START_BALANCE  # the member's: all the wallet holds, so no charge is refused
MEMBER_LANES = 4  # transactions adding members (or arming top-ups) at once while preparing
THRESHOLD = START_BALANCE // 2  # the armed twins': the bench spends far less than half
RULE = Rule(
    enabled=True,
    threshold=THRESHOLD,
    target_balance=START_BALANCE,
    pack=None,
    monthly_cap=START_BALANCE,
)
CARD = Card(
    customer_id="cus_bench",
    payment_method_id="pm_bench",
    fingerprint=None,
    last4="4242",
    brand="visa",
)

Charge = Callable[[str, str], Awaitable[None]]
T = TypeVar("T")


@dataclass(frozen=True)
class Result:
    """One measured cell."""

    charges: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.charges / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


def dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def admin_url() -> str:
    """The server the scratch database is made on: the bench URL, else the test URL."""
    return os.environ.get(
        "CREDITSD_BENCH_DATABASE_URL",
        os.environ.get("CREDITSD_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )


async def drop_scratch(admin_url: str) -> None:
    """Drop the scratch database."""
    admin = await asyncpg.connect(dsn(admin_url))
    await admin.execute(f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")
    await admin.close()


def wallet(account: str) -> str:
    """The wallet twin of a scenario's account: ``hot`` → ``team:hot``."""
    return f"team:{account}"


def armed(account: str) -> str:
    """The twin of a scenario's account whose auto top-up is armed: ``hot`` → ``armed:hot``."""
    return f"armed:{account}"


async def buy(
    conn: AsyncConnection, now: datetime, bought: list[Movement], policy: posting.Policy
) -> None:
    """Write the purchases in one batch."""
    await posting.post(conn, bought, policy, now)


async def add_members(
    conn: AsyncConnection, now: datetime, wallets: list[str], policy: posting.Policy
) -> None:
    """Give each wallet its member, with the day limit."""
    for name in wallets:
        await members.put_member(
            conn, name, MEMBER, None, [LimitSpec(DAY_LIMIT, "day")], policy, now, actor="bench"
        )


async def give_members(url: str, wallets: list[str]) -> None:
    """Give every wallet its member through the members service (some 20 ms a wallet):
    twenty wallets a transaction, well within the engine's patience even on a busy
    machine, ``MEMBER_LANES`` transactions at once."""
    env = environment(url, MEMBER_LANES, None)
    ledger = await Ledger.connect(load_settings(os.devnull, environ=env))

    async def lane(mine: list[str]) -> None:
        for first in range(0, len(mine), 20):
            chunk = mine[first : first + 20]
            await ledger.database.write(partial(add_members, wallets=chunk, policy=ledger.policy))

    await asyncio.gather(*(lane(wallets[n::MEMBER_LANES]) for n in range(MEMBER_LANES)))
    await ledger.close()


async def add_topups(conn: AsyncConnection, now: datetime, twins: list[str]) -> None:
    """Give each twin its auto top-up rule with a saved card (one set-based insert), then
    arm it as every change of a rule does."""
    consent = {
        "customer_id": CARD.customer_id,
        "payment_method_id": CARD.payment_method_id,
        "card_fingerprint": CARD.fingerprint,
        "card_last4": CARD.last4,
        "card_brand": CARD.brand,
        "consented_by": "bench",
        "consented_at": now,
        "consented_rule": RULE.stored(),
    }
    rule = {**RULE.stored(), **consent, "state": "active", "created_at": now, "updated_at": now}
    await conn.execute(insert(auto_topups), [{**rule, "account_id": twin} for twin in twins])
    for twin in twins:
        await topups.arm(conn, twin)


async def arm_topups(url: str, twins: list[str]) -> None:
    """Arm every twin's auto top-up, a thousand twins a transaction, ``MEMBER_LANES``
    transactions at once."""
    env = environment(url, MEMBER_LANES, None)
    ledger = await Ledger.connect(load_settings(os.devnull, environ=env))

    async def lane(mine: list[str]) -> None:
        for first in range(0, len(mine), 1000):
            await ledger.database.write(partial(add_topups, twins=mine[first : first + 1000]))

    await asyncio.gather(*(lane(twins[n::MEMBER_LANES]) for n in range(MEMBER_LANES)))
    await ledger.close()


async def prepare(admin_url: str) -> str:
    """A migrated scratch database with the hot account and 10,000 others, a wallet twin
    of each with its member, and an armed twin of each with its auto top-up."""
    await drop_scratch(admin_url)
    admin = await asyncpg.connect(dsn(admin_url))
    await admin.execute(f"CREATE DATABASE {SCRATCH}")
    await admin.close()
    url = dsn(admin_url, SCRATCH)
    engine = db.create_engine(url)
    await upgrade(engine)
    await engine.dispose()
    scenario = ["hot", *(f"acct-{n:05d}" for n in range(SPREAD_ACCOUNTS))]
    wallets = [wallet(account) for account in scenario]
    twins = [armed(account) for account in scenario]
    accounts = scenario + wallets + twins
    conn = await asyncpg.connect(url)
    now = datetime.now(UTC)
    await conn.executemany(
        "INSERT INTO accounts (id, kind, balance, held, overdraft_limit, created_at, updated_at)"
        " VALUES ($1, 'customer', 0, 0, 0, $2, $2)",
        [(account, now) for account in accounts],
    )
    await conn.executemany(
        "INSERT INTO account_names (name, account_id) VALUES ($1, $1)", [(a,) for a in accounts]
    )
    await conn.close()
    # The balances are bought through the engine, so each account's transfers explain it
    # (the server's integrity checks find nothing to report while it is measured).
    ledger = await Ledger.connect(load_settings(os.devnull, environ=environment(url, 1, None)))
    for first in range(0, len(accounts), 1000):
        bought = [
            Movement(
                kind="purchase",
                debit_account_id=STRIPE,
                credit_account_id=account,
                amount=START_BALANCE,
                app="bench",
                idempotency_key=f"bench:{account}",
                lot=LotSpec("purchase"),
                fresh_key=True,
            )
            for account in accounts[first : first + 1000]
        ]
        await ledger.database.write(partial(buy, bought=bought, policy=ledger.policy))
    await ledger.close()
    await give_members(url, wallets)
    await arm_topups(url, twins)
    conn = await asyncpg.connect(url)
    await conn.execute("VACUUM ANALYZE")
    await conn.close()
    return url


async def patiently(open_: Callable[[], Awaitable[T]]) -> T:
    """``open_()``, tried again for a minute while the server has no connection to spare
    (its ``max_connections`` is shared with whatever else runs there)."""
    for _ in range(60):
        try:
            return await open_()
        except Exception as exc:
            if "too many clients" not in str(exc):
                raise
        await asyncio.sleep(1)
    return await open_()


async def open_pool(url: str, size: int) -> asyncpg.Pool:
    """An asyncpg pool with all its ``size`` connections open."""
    return await patiently(lambda: asyncpg.create_pool(url, min_size=size, max_size=size))


async def fill(ledger: Ledger, size: int) -> None:
    """Open ``size`` of the Ledger's pooled connections now rather than while measured."""

    async def open_all() -> None:
        async with AsyncExitStack() as stack:
            for _ in range(size):
                await stack.enter_async_context(ledger.engine.connect())

    await patiently(open_all)


async def check_books(url: str) -> None:
    """Every balance and every lot agrees with the transfers and spends written."""
    conn = await asyncpg.connect(url)
    balances = await conn.fetchval(
        "SELECT count(*) FROM accounts a WHERE kind = 'customer' AND balance <> $1"
        " - (SELECT coalesce(sum(amount), 0) FROM transfers t WHERE t.debit_account_id = a.id)",
        START_BALANCE,
    )
    lots = await conn.fetchval(
        "SELECT count(*) FROM lots l WHERE remaining <> amount"
        " - (SELECT coalesce(sum(amount), 0) FROM lot_spends s WHERE s.lot_id = l.id)"
    )
    await conn.close()
    assert balances == 0, f"{balances} balances disagree with their transfers"
    assert lots == 0, f"{lots} lots disagree with their spends"


# The per-charge floor

FLOOR_UPDATE = (
    "UPDATE accounts SET balance = balance - $1, updated_at = $3"
    " WHERE id = $2 AND balance - held + overdraft_limit >= $1 RETURNING balance"
)
FLOOR_INSERT = (
    "INSERT INTO transfers (id, kind, debit_account_id, credit_account_id, amount, app,"
    " idempotency_key, fingerprint, debit_balance_after, debit_available_after, created_at)"
    " VALUES ($1, 'charge', $2, '@revenue', 1, 'floor', $3, $4, $5, $5, $6)"
)
FLOOR_LOT = (
    "UPDATE lots SET remaining = remaining - 1 WHERE id = (SELECT id FROM lots"
    " WHERE account_id = $1 AND remaining > 0 ORDER BY priority, expires_at, id LIMIT 1)"
    " RETURNING id"
)
FLOOR_SPEND = "INSERT INTO lot_spends (transfer_id, lot_id, amount) VALUES ($1, $2, 1)"


def floor(pool: asyncpg.Pool) -> Charge:
    """One hand-written transaction per charge: the fastest this schema allows one at a time."""

    async def charge(account: str, key: str) -> None:
        now = datetime.now(UTC)
        async with pool.acquire() as conn, conn.transaction():
            balance = await conn.fetchval(FLOOR_UPDATE, 1, account, now)
            fingerprint = hashlib.sha256(key.encode()).hexdigest()
            transfer_id = ids.new_id("tr")
            await conn.execute(FLOOR_INSERT, transfer_id, account, key, fingerprint, balance, now)
            lot_id = await conn.fetchval(FLOOR_LOT, account)
            await conn.execute(FLOOR_SPEND, transfer_id, lot_id)

    return charge


# The set-based floor

# The batch's charges summed per account, then one guarded debit of each account by its
# total; an account that cannot pay it is left out. ``id = ANY($1)`` has the plan walk the
# primary key, so every batch locks its rows in id order and two lanes never deadlock
# (and it beats the hash join over every account the planner picks without it).
SET_DEBIT = """
UPDATE accounts SET balance = balance - c.total, updated_at = $3
FROM (
    SELECT account, sum(amount)::bigint AS total
    FROM unnest($1::text[], $2::bigint[]) AS u(account, amount)
    GROUP BY account
) AS c
WHERE accounts.id = ANY($1) AND accounts.id = c.account
    AND balance - held + overdraft_limit >= c.total
RETURNING accounts.id, c.total, balance, balance - held + overdraft_limit AS available
"""
SET_TRANSFERS = """
INSERT INTO transfers (id, kind, debit_account_id, credit_account_id, amount, app,
    idempotency_key, fingerprint, debit_balance_after, debit_available_after, created_at)
SELECT id, 'charge', account, '@revenue', amount, 'floor', key, fingerprint, balance, available, $8
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::bigint[],
    $7::bigint[]) AS t(id, account, amount, key, fingerprint, balance, available)
"""
# Each account's first live lot pays the account's whole total, as in the per-charge
# floor: every account here has one lot, far larger than anything the bench spends.
SET_LOTS = """
UPDATE lots SET remaining = lots.remaining - c.total
FROM unnest($1::text[], $2::bigint[]) AS c(account, total),
LATERAL (
    SELECT live.id FROM lots AS live WHERE live.account_id = c.account AND live.remaining > 0
    ORDER BY live.priority, live.expires_at, live.id LIMIT 1
) AS spent
WHERE lots.id = spent.id
RETURNING lots.account_id, lots.id
"""
SET_SPENDS = """
INSERT INTO lot_spends (transfer_id, lot_id, amount)
SELECT transfer_id, lot_id, amount FROM unnest($1::text[], $2::text[], $3::bigint[])
    AS s(transfer_id, lot_id, amount)
"""


class Refused(Exception):
    """The account could not pay its charges in the batch."""


@dataclass(frozen=True, slots=True)
class _Pending:
    account: str
    key: str
    amount: int
    done: asyncio.Future[None]


class SetFloor:
    """Group commit by hand: whatever is pending (up to ``max_batch``) goes in one
    transaction of four set-based statements, at most ``lanes`` transactions at a time;
    each caller is answered once its batch has committed."""

    def __init__(self, pool: asyncpg.Pool, *, lanes: int, max_batch: int = 1000) -> None:
        self._pool = pool
        self._lanes = lanes
        self._max_batch = max_batch
        self._pending: list[_Pending] = []
        self._flushing = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.deadlocks = 0

    async def charge(self, account: str, key: str) -> None:
        """Charge one credit unit, answered after the commit of the batch it went in."""
        done = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(account, key, 1, done))
        if self._flushing < self._lanes:
            self._flushing += 1
            task = asyncio.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await done

    async def _flush(self) -> None:
        # Stops counting itself the moment nothing is pending, with no await in between,
        # so a charge queued after that starts a flusher of its own and is never stranded.
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                try:
                    refused = await self._write(batch)
                except Exception as exc:
                    for item in batch:
                        if not item.done.done():
                            item.done.set_exception(exc)
                    continue
                for item in batch:
                    if item.done.done():  # the caller gave up waiting
                        continue
                    if item.account in refused:
                        item.done.set_exception(Refused(item.account))
                    else:
                        item.done.set_result(None)
        finally:
            self._flushing -= 1

    async def _write(self, batch: list[_Pending]) -> set[str]:
        """Write the batch, again if PostgreSQL broke a deadlock; the accounts refused."""
        while True:
            try:
                return await self._transaction(batch)
            except asyncpg.DeadlockDetectedError:
                self.deadlocks += 1

    async def _transaction(self, batch: list[_Pending]) -> set[str]:
        now = datetime.now(UTC)
        async with self._pool.acquire() as conn, conn.transaction():
            debited = await conn.fetch(
                SET_DEBIT, [item.account for item in batch], [item.amount for item in batch], now
            )
            # What each account still owes its later charges in the batch: a charge's
            # balance after is the account's new balance plus that.
            owed = {row["id"]: row["total"] for row in debited}
            after = {row["id"]: (row["balance"], row["available"]) for row in debited}
            paid = [item for item in batch if item.account in owed]
            transfer_ids = [ids.new_id("tr") for _ in paid]
            balances: list[int] = []
            availables: list[int] = []
            for item in paid:
                owed[item.account] -= item.amount
                balance, available = after[item.account]
                balances.append(balance + owed[item.account])
                availables.append(available + owed[item.account])
            accounts = [item.account for item in paid]
            amounts = [item.amount for item in paid]
            await conn.execute(
                SET_TRANSFERS,
                transfer_ids,
                accounts,
                amounts,
                [item.key for item in paid],
                [hashlib.sha256(item.key.encode()).hexdigest() for item in paid],
                balances,
                availables,
                now,
            )
            totals = [row["total"] for row in debited]
            spent = await conn.fetch(SET_LOTS, [row["id"] for row in debited], totals)
            lots: dict[str, str] = {row["account_id"]: row["id"] for row in spent}
            await conn.execute(
                SET_SPENDS, transfer_ids, [lots[account] for account in accounts], amounts
            )
        self.batches += 1
        return {item.account for item in batch} - owed.keys()


def through(ledger: Ledger) -> Charge:
    """A charge through the in-process Ledger."""

    async def charge(account: str, key: str) -> None:
        await ledger.charge(account, 1, idempotency_key=key, app="bench")

    return charge


def by_member(ledger: Ledger) -> Charge:
    """A charge through the in-process Ledger of the account's wallet twin, for its member."""

    async def charge(account: str, key: str) -> None:
        await ledger.charge(wallet(account), 1, idempotency_key=key, app="bench", member=MEMBER)

    return charge


def by_armed_twin(ledger: Ledger) -> Charge:
    """A charge through the in-process Ledger of the account's armed twin."""

    async def charge(account: str, key: str) -> None:
        await ledger.charge(armed(account), 1, idempotency_key=key, app="bench")

    return charge


async def measure(charge: Charge, workers: int, hot: bool, seconds: float, tag: str) -> Result:
    """Run ``workers`` loops of charges for ``seconds``."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    rng = random.Random(workers)

    async def worker(n: int) -> None:
        i = 0
        while time.perf_counter() < deadline:
            account = "hot" if hot else f"acct-{rng.randrange(SPREAD_ACCOUNTS):05d}"
            began = time.perf_counter()
            await charge(account, f"{tag}-{n}-{i}")
            latencies.append(time.perf_counter() - began)
            i += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(workers)))
    return Result(len(latencies), time.perf_counter() - began, latencies)


# HTTP: a creditsd serve process under wrk


def environment(url: str, pool: int, group_commit: bool | None) -> dict[str, str]:
    """The settings of every Ledger here, as environment variables; None: the default."""
    env = {
        "CREDITSD_DATABASE_URL": url,
        "CREDITSD_DATABASE__POOL_SIZE": str(pool),
    }
    if group_commit is not None:
        env["CREDITSD_LEDGER__GROUP_COMMIT"] = "true" if group_commit else "false"
    return env


def command_environment(settings: dict[str, str]) -> dict[str, str]:
    """This process's environment with none of its creditsd settings, only ``settings``
    (and no configuration file), for a ``creditsd`` command."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("CREDITSD_")}
    return {**inherited, **settings, "CREDITSD_CONFIG": os.devnull}


async def create_admin_key(url: str) -> str:
    """``creditsd keys create --scope admin --name bench``; the secret it prints last."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "creditsd",
        *("keys", "create", "--scope", "admin", "--name", "bench"),
        env=command_environment({"CREDITSD_DATABASE_URL": url}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"creditsd keys create failed: {err.decode()}")
    return out.decode().strip().splitlines()[-1]


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def served(settings: dict[str, str], log: IO[bytes]) -> AsyncIterator[str]:
    """A ``creditsd serve`` process on a free port, until the block ends; its address."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "creditsd",
        *("serve", "--no-migrate", "--host", "127.0.0.1", "--port", str(port)),
        env=command_environment(settings),
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            for _ in range(600):
                if process.returncode is not None:
                    raise RuntimeError(f"creditsd serve exited with {process.returncode}")
                try:
                    if (await http.get("/readyz")).is_success:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError("creditsd serve did not get ready in 30 s")
        yield base
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


@dataclass(frozen=True)
class Cell:
    """What the table shows of one measurement (latencies in ms)."""

    rate: float
    p50: float
    p99: float
    errors: int = 0
    first_error: str = ""

    @classmethod
    def of(cls, result: Result) -> Cell:
        return cls(result.rate, result.percentile(0.50), result.percentile(0.99))


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_TIME = r"([\d.]+)(us|ms|s|m)"


def parse_wrk(output: str) -> Cell:
    """The 2xx answers per second and latency percentiles of a ``wrk --latency`` run.

    ``  9312 requests in 3.00s, 4.10MB read`` with ``non-2xx: 12`` (printed by
    charges.lua) is (9312 − 12) / 3.00 charges/s; ``     99%   21.53ms`` is the p99.
    """

    def find(pattern: str) -> re.Match[str]:
        found = re.search(pattern, output, re.MULTILINE)
        if found is None:
            raise ValueError(f"no {pattern!r} in wrk's output:\n{output}")
        return found

    def ms(percent: int) -> float:
        value, unit = find(rf"^\s+{percent}%\s+{_TIME}\s*$").groups()
        return float(value) * _UNITS[unit]

    requests, seconds, unit = find(rf"(\d+) requests in {_TIME},").groups()
    refused = int(find(r"^non-2xx: (\d+)$").group(1))
    # Requests that failed on the socket (timeouts included) are not among ``requests``.
    lost = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    first = re.search(r"^first error: (.*)$", output, re.MULTILINE)
    return Cell(
        (int(requests) - refused) / (float(seconds) * _UNITS[unit] / 1000),
        ms(50),
        ms(99),
        refused + (sum(int(n) for n in lost.groups()) if lost else 0),
        first.group(1)[:300] if first else "",
    )


async def load(base: str, secret: str, workers: int, hot: bool, seconds: float, tag: str) -> Cell:
    """``wrk`` with ``workers`` connections on one thread (the machine's cores are for the
    server and the database) charging for ``seconds`` (whole seconds, as wrk takes them)."""
    process = await asyncio.create_subprocess_exec(
        "wrk",
        *("-t1", f"-c{workers}", f"-d{max(1, math.ceil(seconds))}s", "--timeout", "30s"),
        *("--latency", "-s", str(SCRIPT), "-H", f"Authorization: Bearer {secret}", base),
        *("--", "hot" if hot else "spread", tag),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"wrk failed:\n{out.decode()}")
    return parse_wrk(out.decode())


# The run


Key = tuple[bool, int]  # hot, workers
Table = dict[str, dict[Key, Cell]]


async def register_endpoint(url: str) -> str:
    """A webhook endpoint subscribed to ``charge.succeeded``, disabled until wanted."""
    ledger = await Ledger.connect(load_settings(os.devnull, environ=environment(url, 1, None)))
    endpoint, _ = await ledger.database.write(
        lambda conn, now: webhooks.register(
            conn,
            HOOK_URL,
            ["charge.succeeded"],
            "bench",
            now,
            actor="bench",
            idempotency_key="bench",
        )
    )
    await ledger.close()
    await subscribe(url, endpoint.id, on=False)
    return endpoint.id


async def subscribe(url: str, endpoint_id: str, *, on: bool) -> None:
    """Enable or disable the endpoint; disabling also drops what it was sent, so no
    ``creditsd serve`` started later spends its time delivering those."""
    conn = await asyncpg.connect(url)
    since = None if on else datetime.now(UTC)
    await conn.execute(
        "UPDATE webhook_endpoints SET disabled_at = $1 WHERE id = $2", since, endpoint_id
    )
    if not on:
        await conn.execute("DELETE FROM outbox WHERE destination = $1", endpoint_id)
    await conn.close()


@dataclass(frozen=True)
class Options:
    seconds: float
    workers: list[int]
    modes: list[bool]
    lanes: int
    connections: int
    subscriber: bool


def label(name: str, group_commit: bool, options: Options) -> str:
    """A column's name; with both modes measured, which one it is."""
    if len(options.modes) == 1:
        return name
    return f"{name} ({'gc' if group_commit else 'no gc'})"


async def in_process(url: str, options: Options, table: Table, notes: list[str]) -> None:
    """The floors and the Ledger columns of every cell."""
    endpoint_id = await register_endpoint(url) if options.subscriber else ""
    for hot in (False, True):
        for workers in options.workers:
            cell = f"{'hot' if hot else 'spread'}{workers}"
            key = (hot, workers)
            pool = await open_pool(url, min(workers, options.connections))
            found = await measure(floor(pool), workers, hot, options.seconds, f"p{cell}")
            table.setdefault("per-charge floor", {})[key] = Cell.of(found)
            await pool.close()

            lanes = options.lanes
            pool = await open_pool(url, lanes)
            grouped = SetFloor(pool, lanes=lanes)
            found = await measure(grouped.charge, workers, hot, options.seconds, f"s{cell}")
            table.setdefault("set-based floor", {})[key] = Cell.of(found)
            if grouped.deadlocks:
                notes.append(f"set-based floor, {cell}: {grouped.deadlocks} deadlocks retried")
            await pool.close()

            for mode in options.modes:
                env = environment(url, options.connections, mode)
                settings = load_settings(os.devnull, environ=env)
                ledger = await patiently(partial(Ledger.connect, settings))
                gc = "g" if mode else "n"
                charge, limited, topped = through(ledger), by_member(ledger), by_armed_twin(ledger)
                # Its pool opens and its caches fill here, as the floors' pools open before.
                await fill(ledger, min(workers, options.connections))
                await measure(charge, workers, hot, WARM_UP, f"w{gc}{cell}")
                await measure(limited, workers, hot, WARM_UP, f"wm{gc}{cell}")
                await measure(topped, workers, hot, WARM_UP, f"wa{gc}{cell}")
                found = await measure(charge, workers, hot, options.seconds, f"L{gc}{cell}")
                table.setdefault(label("Ledger", mode, options), {})[key] = Cell.of(found)
                found = await measure(limited, workers, hot, options.seconds, f"M{gc}{cell}")
                limits = label("Ledger + member limit", mode, options)
                table.setdefault(limits, {})[key] = Cell.of(found)
                found = await measure(topped, workers, hot, options.seconds, f"A{gc}{cell}")
                armed_column = label("Ledger + auto top-up", mode, options)
                table.setdefault(armed_column, {})[key] = Cell.of(found)
                if options.subscriber:
                    await subscribe(url, endpoint_id, on=True)
                    ledger.outbox.forget()  # so this process sees it now
                    found = await measure(charge, workers, hot, options.seconds, f"W{gc}{cell}")
                    hooked = label("Ledger + webhook", mode, options)
                    table.setdefault(hooked, {})[key] = Cell.of(found)
                    await subscribe(url, endpoint_id, on=False)
                await ledger.close()


async def over_http(url: str, options: Options, table: Table, notes: list[str]) -> None:
    """The HTTP column of every cell: one server for each group-commit mode."""
    secret = await create_admin_key(url)
    for mode in options.modes:
        name = label("HTTP", mode, options)
        with tempfile.TemporaryFile() as log:
            async with served(environment(url, options.connections, mode), log) as base:
                # The server's pool and caches fill here, not in the first cell.
                warm = await load(base, secret, max(options.workers), False, 1, f"w{mode:d}")
                if warm.errors:
                    notes.append(f"{name}, warm-up: {warm.errors} non-2xx, {warm.first_error}")
                for hot in (False, True):
                    for workers in options.workers:
                        cell = f"{'hot' if hot else 'spread'}{workers}"
                        found = await load(
                            base, secret, workers, hot, options.seconds, f"h{mode:d}{cell}"
                        )
                        table.setdefault(name, {})[(hot, workers)] = found
                        if found.errors:
                            notes.append(
                                f"{name}, {cell}: {found.errors} non-2xx or socket errors;"
                                f" first: {found.first_error}"
                            )
            log.seek(0)
            errors = [
                line
                for line in log.read().decode().splitlines()
                if "error" in line.lower() or "Traceback" in line
            ]
            if errors:
                notes.append(f"{name} server log: " + " | ".join(errors[:5]))


def ratio(table: Table, top: str, bottom: str, key: Key) -> float | None:
    """``top``'s rate over ``bottom``'s in one row, if both were measured."""
    if key not in table.get(top, {}) or key not in table.get(bottom, {}):
        return None
    return table[top][key].rate / table[bottom][key].rate


def goals(table: Table, options: Options) -> list[str]:
    """Each goal, with what every row it applies to measured.

    ``Ledger / set-based floor >= 0.7 at 32 and 128: spread 32 0.09 ✗, hot 32 0.05 ✗``
    """
    rows = [(hot, workers) for hot in (False, True) for workers in options.workers]

    def line(goal: str, found: list[tuple[Key, str, bool]]) -> str:
        shown = (
            f"{'hot' if hot else 'spread'} {workers} {value} {'✓' if ok else '✗'}"
            for (hot, workers), value, ok in found
        )
        return f"{goal}: {', '.join(shown) or 'not measured'}"

    def ratios(top: str, bottom: str, keys: list[Key]) -> list[tuple[Key, float]]:
        found = ((key, ratio(table, top, bottom, key)) for key in keys)
        return [(key, r) for key, r in found if r is not None]

    def cost(what: str, column: str, ledger: str, most: int) -> str:
        """What ``column`` loses of the Ledger's charges/s, at most ``most`` percent."""
        costs = [(key, round((1 - r) * 100)) for key, r in ratios(column, ledger, rows)]
        return line(
            f"{what} costs {ledger} <= {most}%",
            [(key, f"{c}%", c <= most) for key, c in costs],
        )

    lines = []
    for mode in options.modes:
        ledger, http = label("Ledger", mode, options), label("HTTP", mode, options)
        hooked = label("Ledger + webhook", mode, options)
        loaded = [key for key in rows if key[1] in (32, 128)]
        found = ratios(ledger, "set-based floor", loaded)
        lines.append(
            line(
                f"{ledger} / set-based floor >= 0.7 at 32 and 128",
                [(key, f"{r:.2f}", r >= 0.7) for key, r in found],
            )
        )
        found = ratios(http, ledger, rows)
        lines.append(
            line(f"{http} / {ledger} >= 0.5", [(key, f"{r:.2f}", r >= 0.5) for key, r in found])
        )
        hot = [(True, 32)] if (True, 32) in table.get(ledger, {}) else []
        found = ratios(http, "set-based floor", hot)
        lines.append(
            line(
                f"{http} / set-based floor >= 0.35 on the hot account at 32",
                [(key, f"{r:.2f}", r >= 0.35) for key, r in found],
            )
        )
        lines.append(
            line(
                f"{ledger} p99 <= 20 ms on the hot account at 32",
                [
                    (key, f"{table[ledger][key].p99:.1f} ms", table[ledger][key].p99 <= 20)
                    for key in hot
                ],
            )
        )
        limited = label("Ledger + member limit", mode, options)
        lines.append(cost("a member limit", limited, ledger, 15))
        if options.subscriber:
            lines.append(cost("one webhook endpoint", hooked, ledger, 10))
    return lines


def report(table: Table, options: Options, default_gc: bool, notes: list[str]) -> None:
    """The table, the ratios, and the goals."""
    ratios: list[tuple[str, str, str]] = [("set/per", "set-based floor", "per-charge floor")]
    for mode in options.modes:
        ledger, http = label("Ledger", mode, options), label("HTTP", mode, options)
        suffix = "" if len(options.modes) == 1 else f" ({'gc' if mode else 'no gc'})"
        ratios += [(f"Ledger/set{suffix}", ledger, "set-based floor")]
        ratios += [(f"HTTP/Ledger{suffix}", http, ledger)]
        ratios += [(f"limit/Ledger{suffix}", label("Ledger + member limit", mode, options), ledger)]
        ratios += [(f"top-up/Ledger{suffix}", label("Ledger + auto top-up", mode, options), ledger)]
        hooked = label("Ledger + webhook", mode, options)
        if options.subscriber:
            ratios += [(f"webhook/Ledger{suffix}", hooked, ledger)]
    columns = list(table)
    rows = [(hot, workers) for hot in (False, True) for workers in options.workers]
    gc = ", ".join("on" if mode else "off" for mode in options.modes)
    print(
        f"\ncharges on PostgreSQL, {options.seconds:g} s a cell; group commit {gc}"
        f" (the settings' default: {'on' if default_gc else 'off'}); set-based floor:"
        f" {options.lanes} lanes; at most {options.connections} connections a path"
    )
    print("each cell: charges/s · p50/p99 ms\n")
    print("| scenario | callers | " + " | ".join([*columns, *(r[0] for r in ratios)]) + " |")
    print("|---|---:|" + "---:|" * (len(columns) + len(ratios)))
    for hot, workers in rows:
        key = (hot, workers)
        cells = [
            f"{c.rate:,.0f} · {c.p50:.1f}/{c.p99:.1f}" if (c := table[name].get(key)) else "-"
            for name in columns
        ]
        found = [ratio(table, top, bottom, key) for _, top, bottom in ratios]
        scenario = "1 hot account" if hot else f"{SPREAD_ACCOUNTS:,} accounts"
        shown = ["-" if r is None else f"{r:.2f}" for r in found]
        print(f"| {scenario} | {workers} | " + " | ".join([*cells, *shown]) + " |")

    print("\ngoals (✓ met, ✗ missed):")
    for line in goals(table, options):
        print(f"- {line}")
    if notes:
        print("\nnotes:")
        for note in notes:
            print(f"- {note}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per cell")
    parser.add_argument("--workers", default="1,32,128", help="concurrent callers, per row")
    parser.add_argument(
        "--group-commit", choices=("settings", "on", "off", "both"), default="settings"
    )
    parser.add_argument("--lanes", type=int, default=2, help="set-based floor transactions")
    parser.add_argument("--connections", type=int, default=16, help="database connections")
    parser.add_argument("--subscriber", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        parser.error("wrk is not on the PATH (apt-get install wrk)")
    default_gc = load_settings(os.devnull, environ={}).ledger.group_commit
    modes = {"settings": [default_gc], "on": [True], "off": [False], "both": [True, False]}
    options = Options(
        seconds=args.seconds,
        workers=[int(w) for w in args.workers.split(",")],
        modes=modes[args.group_commit],
        lanes=args.lanes,
        connections=args.connections,
        subscriber=args.subscriber,
    )
    server = admin_url()
    url = await prepare(server)
    table: Table = {}
    notes: list[str] = []
    try:
        await in_process(url, options, table, notes)
        await over_http(url, options, table, notes)
        await check_books(url)
    finally:
        await drop_scratch(server)
    report(table, options, default_gc, notes)


if __name__ == "__main__":
    asyncio.run(main())
