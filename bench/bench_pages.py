"""Server time of each page on an account with 10,000 transactions (goal: under 50 ms).

One account gets a grant and 10,000 priced usage events (feature uses and LLM calls, five
items) spread over the last 30 days. Then each page, of the billing page (through a portal
session) and of the admin console (signed in with an admin key), is asked for through the
real app in-process (ASGI, no sockets): the time of the first request, then the median and
95th percentile of the next ones. The baseline, measured alike in the same run, is the JSON
API's ``GET /v1/accounts/{id}`` of the same account; each page's median is also given as a
multiple of it.

    .venv/bin/python bench/bench_pages.py [--database URL] [--transactions 10000] [--runs 50]

Without ``--database`` a scratch SQLite file is made (and removed) in a temporary folder;
a PostgreSQL URL must name an empty database, which is migrated here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx

from creditsd.api.app import create_app
from creditsd.config import load_settings
from creditsd.inprocess import Ledger
from creditsd.keys import service as keys
from creditsd.kit import db
from creditsd.pricing.catalog import FeatureUse, TokenUse
from creditsd.usage.models import UsageEvent

BATCH = 1000
ACCOUNT = "bench-user"
GOAL_MS = 50


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


async def timed(
    client: httpx.AsyncClient, path: str, runs: int, headers: dict[str, str] | None = None
) -> tuple[float, float, float]:
    """Milliseconds of a first GET of ``path``, then the median and 95th percentile of
    ``runs`` more (the days of the usage chart that are over are read once a process)."""
    times = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        response = await client.get(path, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    rest = times[1:]
    return times[0], statistics.median(rest), statistics.quantiles(rest, n=20)[-1]


async def create_key(ledger: Ledger, scope: str) -> str:
    """A new API key of ``scope``; its secret."""
    _key, secret = await db.run(
        ledger.engine,
        lambda conn: keys.create_key(conn, f"bench-{scope}", scope, ledger.now(), actor="bench"),
    )
    return secret


async def sign_in(client: httpx.AsyncClient, secret: str) -> None:
    """Sign the client in to the admin console as a browser would (its CSRF token first)."""
    form = await client.get("/admin/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None, "the sign-in form carries its CSRF token"
    signed = await client.post("/admin/login", data={"csrf": token.group(1), "key": secret})
    assert signed.status_code == 303, signed.text


async def main(database: str, transactions: int, runs: int) -> None:
    """Seed, open a billing session and an admin session, and time each page."""
    clock = [datetime.now(UTC)]
    settings = load_settings(os.devnull, environ={"CREDITSD_DATABASE_URL": database})
    ledger = await Ledger.connect(settings, migrate=True, clock=lambda: clock[0])
    try:
        await seed(ledger, clock, transactions)
        secrets = {scope: await create_key(ledger, scope) for scope in ("app", "admin")}
        app = create_app(ledger, sweep=False)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench.test"
        ) as client:
            made = await client.post(
                "/v1/portal-sessions",
                json={"account_id": ACCOUNT, "return_url": "https://app.example/"},
                headers={"Authorization": f"Bearer {secrets['app']}"},
            )
            await client.get(made.json()["url"])
            await sign_in(client, secrets["admin"])
            history = await ledger.transactions(ACCOUNT, limit=20)
            baseline = await timed(
                client,
                f"/v1/accounts/{ACCOUNT}",
                runs,
                {"Authorization": f"Bearer {secrets['app']}"},
            )
            pages = {
                "/billing": "/billing",
                "/billing (older page)": f"/billing?before={history.next_cursor}",
                "/billing/cancel": "/billing/cancel",
                "/admin/accounts": "/admin/accounts",
                "/admin/accounts/{id}": f"/admin/accounts/{ACCOUNT}",
                "/admin/audit": "/admin/audit",
                "/admin/deliveries": "/admin/deliveries",
                "/admin/inbox": "/admin/inbox",
                "/admin/pricing": "/admin/pricing",
                "/admin/reconcile": "/admin/reconcile",
            }
            backend = database.partition(":")[0]
            print(
                f"\n{transactions:,} transactions on one account, {backend}; {runs} runs a page\n"
            )
            print("| page | first ms | median ms | p95 ms | median / baseline |")
            print("|---|---:|---:|---:|---:|")
            print(f"| GET /v1/accounts/{{id}} (baseline) | {_cells(baseline, baseline[1])} |")
            slowest = ("", 0.0)
            for name, path in pages.items():
                found = await timed(client, path, runs)
                print(f"| {name} | {_cells(found, baseline[1])} |")
                slowest = max(slowest, (name, found[1]), key=lambda pair: pair[1])
            met = "✓" if slowest[1] < GOAL_MS else "✗"
            print(
                f"\n{met} every page's median under {GOAL_MS} ms (slowest: {slowest[0]},"
                f" {slowest[1]:.1f} ms)"
            )
        await app.state.stripe.close()
        await app.state.proxy.aclose()
    finally:
        await ledger.close()


def _cells(found: tuple[float, float, float], baseline: float) -> str:
    first, median, p95 = found
    return f"{first:.1f} | {median:.1f} | {p95:.1f} | {median / baseline:.1f}×"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database")
    parser.add_argument("--transactions", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.database or f"sqlite:///{folder}/bench.db"
        asyncio.run(main(url, args.transactions, args.runs))
