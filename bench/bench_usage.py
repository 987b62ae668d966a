"""Usage events per second through ``POST /v1/usage``, against the raw charge floor.

Batches of 1,000 events (half feature uses, half LLM token usage) go through the real
HTTP app in-process (ASGI, no sockets), spread over 10,000 accounts, from 1 and 4
concurrent senders. The floor is the core benchmark's: one hand-written asyncpg
transaction per charge (guarded ``UPDATE … RETURNING`` + ``INSERT``), measured in the
same run with the same concurrency as there are senders × 8 connections.

    .venv/bin/python bench/bench_usage.py [--seconds 10] [--senders 1,4]

Uses the scratch database of ``bench_charges.py`` (created and dropped here).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import asyncpg
import httpx

from bench_charges import SPREAD_ACCOUNTS, admin_url, drop_scratch, dsn, floor, measure, prepare
from creditsd.api.app import create_app
from creditsd.config import load_settings
from creditsd.inprocess import Ledger
from creditsd.keys import service as keys
from creditsd.kit import db

BATCH = 1000


def batch(sender: int, number: int) -> list[dict[str, object]]:
    """A batch of distinct events, every other one an LLM call."""
    events: list[dict[str, object]] = []
    for n in range(BATCH):
        event: dict[str, object] = {
            "id": f"s{sender}-b{number}-{n}",
            "account_id": f"acct-{(number * BATCH + n * 7 + sender) % SPREAD_ACCOUNTS:05d}",
        }
        if n % 2:
            event["feature"] = "ai_text_chat"
        else:
            event["usage"] = {
                "model": "openai/gpt-4o-mini",
                "input_tokens": 900,
                "output_tokens": 300,
            }
        events.append(event)
    return events


async def through_http(url: str, senders: int, seconds: float) -> float:
    """Events per second charged by ``senders`` concurrent batch posters."""
    env = {"CREDITSD_DATABASE_URL": url, "CREDITSD_DATABASE__POOL_SIZE": "8"}
    ledger = await Ledger.connect(load_settings(os.devnull, environ=env), publish_pricing=True)
    _key, secret = await db.run(
        ledger.engine,
        lambda conn: keys.create_key(conn, "bench", "app", ledger.now(), actor="bench"),
    )
    charged = 0
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(ledger, sweep=False)),
        base_url="http://bench",
        headers={"Authorization": f"Bearer {secret}"},
        timeout=300,
    ) as http:

        async def sender(number: int) -> None:
            nonlocal charged
            sent = 0
            while time.perf_counter() < deadline:
                answer = await http.post("/v1/usage", json={"events": batch(number, sent)})
                results = answer.json()["results"]
                charged += sum(result["status"] == "charged" for result in results)
                sent += 1

        began = time.perf_counter()
        await asyncio.gather(*(sender(n) for n in range(senders)))
        elapsed = time.perf_counter() - began
    await ledger.close()
    return charged / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--senders", default="1,4")
    args = parser.parse_args()
    server = admin_url()
    url = await prepare(server)
    rows = []
    try:
        for senders in (int(s) for s in args.senders.split(",")):
            workers = senders * 8
            pool = await asyncpg.create_pool(dsn(url), min_size=workers, max_size=workers)
            base = await measure(floor(pool), workers, False, args.seconds, f"floor{senders}")
            await pool.close()
            rate = await through_http(url, senders, args.seconds)
            rows.append((senders, rate, base.rate, workers))
    finally:
        await drop_scratch(server)
    print(f"\nPOST /v1/usage on PostgreSQL, batches of {BATCH:,}, {args.seconds:.0f} s per cell")
    print("| senders | events/s | raw charge floor (charges/s, connections) | vs floor |")
    print("|---:|---:|---:|---:|")
    for senders, rate, floor_rate, workers in rows:
        print(
            f"| {senders} | {rate:,.0f} | {floor_rate:,.0f} ({workers}) | {rate / floor_rate:.2f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
