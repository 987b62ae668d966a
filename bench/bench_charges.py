"""Charges per second through the in-process Ledger on PostgreSQL, against the raw floor.

The floor is what a hand-written asyncpg transaction per charge achieves on the same
schema in the same run: BEGIN, a guarded ``UPDATE … RETURNING`` of the balance, an
``INSERT`` of the transfer, an ``UPDATE`` of the first lot with credit left and an
``INSERT`` of the lot spend (every credit is in a lot, so every debit spends one), COMMIT.
Each cell runs the floor, the Ledger, and the Ledger with group commit for the same
time, on one hot account and spread over 10,000 accounts, and prints the ratio of each
to the floor.

    .venv/bin/python bench/bench_charges.py [--seconds 5] [--workers 1,8,32]

The database comes from ``CREDITSD_BENCH_DATABASE_URL`` (else the test URL); a scratch
database ``creditsd_bench`` is created next to it and dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from sqlalchemy.engine import make_url

from creditsd import db, ids
from creditsd.config import load_settings
from creditsd.facade import Ledger
from creditsd.migrations import upgrade

SPREAD_ACCOUNTS = 10_000
START_BALANCE = 10**15
SCRATCH = "creditsd_bench"

Charge = Callable[[str, str], Awaitable[None]]


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


async def prepare(admin_url: str) -> str:
    """A migrated scratch database with the hot account and 10,000 others."""
    await drop_scratch(admin_url)
    admin = await asyncpg.connect(dsn(admin_url))
    await admin.execute(f"CREATE DATABASE {SCRATCH}")
    await admin.close()
    url = dsn(admin_url, SCRATCH)
    engine = db.create_engine(url)
    await upgrade(engine)
    await engine.dispose()
    conn = await asyncpg.connect(url)
    now = datetime.now(UTC)
    accounts = ["hot", *(f"acct-{n:05d}" for n in range(SPREAD_ACCOUNTS))]
    await conn.executemany(
        "INSERT INTO accounts (id, kind, balance, held, overdraft_limit, created_at, updated_at)"
        " VALUES ($1, 'customer', $2, 0, 0, $3, $3)",
        [(account, START_BALANCE, now) for account in accounts],
    )
    await conn.executemany(
        "INSERT INTO account_names (name, account_id) VALUES ($1, $1)", [(a,) for a in accounts]
    )
    await conn.executemany(  # the balance, bought: one purchase lot per account
        "INSERT INTO lots (id, account_id, source, amount, remaining, priority, created_at)"
        " VALUES ($1, $2, 'purchase', $3, $3, 50, $4)",
        [(ids.new_id("lot"), account, START_BALANCE, now) for account in accounts],
    )
    await conn.execute("VACUUM ANALYZE")
    await conn.close()
    return url


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
    """One hand-written transaction per charge: the fastest this schema allows."""

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


def through(ledger: Ledger) -> Charge:
    """A charge through the in-process Ledger."""

    async def charge(account: str, key: str) -> None:
        await ledger.charge(account, 1, idempotency_key=key, app="bench")

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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", default="1,8,32")
    args = parser.parse_args()
    server = admin_url()
    url = await prepare(server)
    rows = []
    try:
        for hot in (False, True):
            for workers in (int(w) for w in args.workers.split(",")):
                pool = await asyncpg.create_pool(dsn(url), min_size=workers, max_size=workers)
                env = {"CREDITSD_DATABASE_URL": url, "CREDITSD_DATABASE__POOL_SIZE": str(workers)}
                plain = await Ledger.connect(load_settings(os.devnull, environ=env))
                grouped = await Ledger.connect(
                    load_settings(os.devnull, environ={**env, "CREDITSD_LEDGER__GROUP_COMMIT": "1"})
                )
                scenario = "1 hot account" if hot else f"{SPREAD_ACCOUNTS:,} accounts"
                cell = f"{'hot' if hot else 'spread'}{workers}"
                base = await measure(floor(pool), workers, hot, args.seconds, f"f{cell}")
                for name, ledger in (("Ledger", plain), ("Ledger + group commit", grouped)):
                    found = await measure(
                        through(ledger), workers, hot, args.seconds, f"{name[-6:]}{cell}"
                    )
                    rows.append((scenario, workers, name, found, found.rate / base.rate))
                rows.append((scenario, workers, "raw asyncpg floor", base, 1.0))
                await pool.close()
                await plain.close()
                await grouped.close()
                ledger_check = await asyncpg.connect(url)
                drift = await ledger_check.fetchval(
                    "SELECT count(*) FROM accounts a WHERE kind = 'customer' AND balance <> "
                    f"{START_BALANCE} - (SELECT count(*) FROM transfers t"
                    " WHERE t.debit_account_id = a.id)"
                )
                await ledger_check.close()
                assert drift == 0, "a balance disagrees with its transfers"
    finally:
        await drop_scratch(server)

    print(f"\ncharges through PostgreSQL, {args.seconds:.0f} s per cell")
    print("| scenario | workers | path | charges/s | p50 ms | p99 ms | vs floor |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for scenario, workers, name, result, ratio in rows:
        print(
            f"| {scenario} | {workers} | {name} | {result.rate:,.0f} | "
            f"{result.percentile(0.50):.2f} | {result.percentile(0.99):.2f} | {ratio:.2f} |"
        )
    print(f"(median of {statistics.median(len(r[3].latencies) for r in rows):,.0f} charges a cell)")


if __name__ == "__main__":
    asyncio.run(main())
