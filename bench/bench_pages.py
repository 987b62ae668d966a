"""Server time of each billing page on an account with 10,000 transactions (goal: 50 ms).

One account gets a grant and 10,000 priced usage events (feature uses and LLM calls, five
items) spread over the last 30 days, then each page is asked for through the real app
in-process (ASGI, no sockets): the time of the first request, then the median and 95th
percentile of the next ones.

    .venv/bin/python bench/bench_pages.py [--database URL] [--transactions 10000] [--runs 50]

Without ``--database`` a scratch SQLite file is made (and removed) in a temporary folder;
a PostgreSQL URL must name an empty database, which is migrated here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx

from creditsd import db
from creditsd.api.app import create_app
from creditsd.config import load_settings
from creditsd.inprocess import Ledger
from creditsd.keys import service as keys
from creditsd.pricing.catalog import FeatureUse, TokenUse
from creditsd.usage.models import UsageEvent

BATCH = 1000
ACCOUNT = "bench-user"


def uses(n: int) -> FeatureUse | TokenUse:
    """The n-th event's use: five items in turn."""
    items: list[FeatureUse | TokenUse] = [
        FeatureUse("chat_message"),
        FeatureUse("ai_text_chat", Decimal(3)),
        FeatureUse("video_generation", Decimal("2.5")),
        TokenUse("openai/gpt-4o-mini", input_tokens=900, output_tokens=300),
        TokenUse("anthropic/claude-sonnet-4", input_tokens=2_000, output_tokens=800),
    ]
    return items[n % len(items)]


async def seed(ledger: Ledger, clock: list[datetime], transactions: int) -> None:
    """A grant 31 days ago, then ``transactions`` usage events up to now."""
    end = clock[0]
    clock[0] = end - timedelta(days=31)
    await ledger.grant(ACCOUNT, 10**9 * ledger.money.unit, source="promotion")
    step = timedelta(days=30) / transactions
    for first in range(0, transactions, BATCH):
        events = []
        for n in range(first, min(first + BATCH, transactions)):
            events.append(UsageEvent(id=f"e{n}", account_id=ACCOUNT, use=uses(n)))
        clock[0] = end - timedelta(days=30) + step * first
        await ledger.record_usage(events)
    clock[0] = end


async def timed(client: httpx.AsyncClient, path: str, runs: int) -> tuple[float, float, float]:
    """Milliseconds of a first GET of ``path``, then the median and 95th percentile of
    ``runs`` more (the days of the usage chart that are over are read once a process)."""
    times = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        response = await client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    rest = times[1:]
    return times[0], statistics.median(rest), statistics.quantiles(rest, n=20)[-1]


async def main(database: str, transactions: int, runs: int) -> None:
    """Seed, open a billing session, and time each page."""
    clock = [datetime.now(UTC)]
    settings = load_settings(os.devnull, environ={"CREDITSD_DATABASE_URL": database})
    ledger = await Ledger.connect(settings, migrate=True, clock=lambda: clock[0])
    try:
        await seed(ledger, clock, transactions)
        _key, secret = await db.run(
            ledger.engine,
            lambda conn: keys.create_key(conn, "bench", "app", ledger.now(), actor="bench"),
        )
        app = create_app(ledger, sweep=False)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench.test"
        ) as client:
            made = await client.post(
                "/v1/portal-sessions",
                json={"account_id": ACCOUNT, "return_url": "https://app.example/"},
                headers={"Authorization": f"Bearer {secret}"},
            )
            await client.get(made.json()["url"])
            history = await ledger.transactions(ACCOUNT, limit=20)
            pages = {
                "/billing/cancel": "/billing/cancel",
                "/billing": "/billing",
                "/billing (page 2)": f"/billing?before={history.next_cursor}",
            }
            print(f"{transactions:,} transactions on {database.partition(':')[0]}")
            for name, path in pages.items():
                first, median, p95 = await timed(client, path, runs)
                print(
                    f"{name:<20} first {first:6.1f} ms   then median {median:6.1f} ms"
                    f"   p95 {p95:6.1f} ms"
                )
        await app.state.stripe.close()
    finally:
        await ledger.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database")
    parser.add_argument("--transactions", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.database or f"sqlite:///{folder}/bench.db"
        asyncio.run(main(url, args.transactions, args.runs))
