"""Charges per second with a webhook subscribed, and outbox deliveries per second.

Charges go through ``Ledger.charge`` on the 10,000-account spread scenario of
``bench_charges.py``, with no webhook endpoint and with one subscribed to
``charge.succeeded`` (every charge then writes an outbox row in its transaction), against
the raw asyncpg floor measured in the same run. Then 1 and 4 concurrent ``Deliverer``s,
each on a Ledger (and connection pool) of its own, drain that outbox into a local receiver
(a separate process answering 200 at once), against one ``httpx.AsyncClient`` posting as
many bodies of the same size in a plain loop (and, for scale, a delivery batch at a time).

    .venv/bin/python bench/bench_outbox.py [--seconds 5] [--workers 8,32]

Uses the scratch database of ``bench_charges.py`` (created and dropped here).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection

import asyncpg
import httpx

from bench_charges import Result, admin_url, drop_scratch, dsn, floor, measure, prepare, through
from creditsd.config import Settings, load_settings
from creditsd.inprocess import Ledger
from creditsd.kit import db, jsonio
from creditsd.webhooks import repository as repo
from creditsd.webhooks import service, signing
from creditsd.worker import Deliverer

BATCH = 200  # messages a delivery poll takes, and posts at once
DELIVERERS = (1, 4)
HOOKED = "Ledger + 1 endpoint"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the clients expect

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


class Receiver(ThreadingHTTPServer):
    request_queue_size = 1024  # a whole batch connects at once


def serve(port: Connection) -> None:
    """The receiver, in a process of its own so it does not compete for our GIL."""
    server = Receiver(("127.0.0.1", 0), Handler)
    port.send(server.server_address[1])
    server.serve_forever()


def settings(url: str, pool_size: int = 10) -> Settings:
    environ = {
        "CREDITSD_DATABASE_URL": url,
        "CREDITSD_DATABASE__POOL_SIZE": str(pool_size),
        "CREDITSD_WEBHOOKS__BATCH": str(BATCH),
    }
    return load_settings(os.devnull, environ=environ)


async def sql(url: str, *statements: str) -> object:
    """Run statements on a connection of their own; what the last one returns."""
    conn = await asyncpg.connect(url)
    for statement in statements:
        found = await conn.fetchval(statement)
    await conn.close()
    return found


async def subscribe(url: str, endpoint_id: str, *, on: bool) -> None:
    """Enable or disable the endpoint (disabled, no process sees it: no endpoint)."""
    since = "NULL" if on else "now()"
    await sql(url, f"UPDATE webhook_endpoints SET disabled_at = {since} WHERE id = '{endpoint_id}'")


async def reset_outbox(url: str) -> object:
    """Every message pending again, as it was written; how many there are."""
    return await sql(
        url,
        "UPDATE outbox SET status = 'pending', attempts = 0, locked_until = NULL,"
        " last_error = NULL, delivered_at = NULL, next_attempt_at = created_at",
        "VACUUM ANALYZE outbox",
        "SELECT count(*) FROM outbox",
    )


async def drain(url: str, instances: int) -> float:
    """Messages per second that ``instances`` concurrent deliverers deliver."""
    total = await reset_outbox(url)
    assert isinstance(total, int)
    ledgers = [await Ledger.connect(settings(url)) for _ in range(instances)]
    deliverers = [Deliverer(ledger) for ledger in ledgers]

    async def run(deliverer: Deliverer) -> None:
        while True:
            if await deliverer.deliver_due():
                continue
            if not await sql(url, "SELECT count(*) FROM outbox WHERE status = 'pending'"):
                return
            await asyncio.sleep(0.005)  # the rest is leased by the others, or backing off

    began = time.perf_counter()
    await asyncio.gather(*(run(deliverer) for deliverer in deliverers))
    elapsed = time.perf_counter() - began
    for deliverer in deliverers:
        await deliverer.close()
    for ledger in ledgers:
        await ledger.close()
    late = await sql(url, "SELECT count(*) FROM outbox WHERE status <> 'delivered' OR attempts > 1")
    assert late == 0, f"{late} messages undelivered or tried more than once"
    return total / elapsed


async def raw_posts(hook: str, body: str, headers: dict[str, str], count: int, at: int) -> float:
    """Messages per second one client posts, ``at`` at a time: the floor of delivery."""
    async with httpx.AsyncClient() as http:
        began = time.perf_counter()
        for start in range(0, count, at):
            posts = (http.post(hook, content=body, headers=headers) for _ in range(at))
            answers = await asyncio.gather(*itertools.islice(posts, count - start))
            assert all(answer.is_success for answer in answers)
        return count / (time.perf_counter() - began)


Row = tuple[int, str, Result, float, float]  # workers, path, result, vs floor, vs no endpoint


async def charge_cells(url: str, endpoint_id: str, workers: int, seconds: float) -> list[Row]:
    """The floor, the Ledger with no endpoint, and the Ledger with one, for ``workers``."""
    pool = await asyncpg.create_pool(dsn(url), min_size=workers, max_size=workers)
    ledger = await Ledger.connect(settings(url, workers))
    await subscribe(url, endpoint_id, on=False)
    ledger.outbox.forget()
    base = await measure(floor(pool), workers, False, seconds, f"floor{workers}")
    plain = await measure(through(ledger), workers, False, seconds, f"plain{workers}")
    await subscribe(url, endpoint_id, on=True)
    ledger.outbox.forget()  # so this process sees it now
    hooked = await measure(through(ledger), workers, False, seconds, f"hooked{workers}")
    await pool.close()
    await ledger.close()
    paths = (("raw asyncpg floor", base), ("Ledger, no endpoint", plain))
    return [
        (workers, name, found, found.rate / base.rate, found.rate / plain.rate)
        for name, found in (*paths, (HOOKED, hooked))
    ]


async def sample_body(ledger: Ledger, secret: str) -> tuple[str, dict[str, str]]:
    """A delivery's body and headers, as the deliverer sends them."""
    found = await db.run(
        ledger.engine,
        lambda conn: repo.messages(conn, destination=None, status=None, before=None, limit=1),
        readonly=True,
    )
    body = jsonio.dumps({"id": found[0].message_id, **found[0].payload})
    signed = signing.headers(secret, found[0].message_id, int(time.time()), body)
    return body, {"Content-Type": "application/json", **signed}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", default="8,32")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    port, child_end = context.Pipe(duplex=False)
    receiver = context.Process(target=serve, args=(child_end,), daemon=True)
    receiver.start()
    child_end.close()  # so a receiver that dies is an EOFError here, not a hang
    hook = f"http://127.0.0.1:{port.recv()}/hook"
    server = admin_url()
    url = await prepare(server)
    charges: list[Row] = []
    deliveries: list[tuple[str, float]] = []
    try:
        admin = await Ledger.connect(settings(url))
        endpoint, _created = await db.run(
            admin.engine,
            lambda conn: service.register(
                conn,
                hook,
                ["charge.succeeded"],
                "bench",
                admin.now(),
                actor="bench",
                idempotency_key="bench",
            ),
        )
        for workers in (int(w) for w in args.workers.split(",")):
            charges += await charge_cells(url, endpoint.id, workers, args.seconds)
        body, headers = await sample_body(admin, endpoint.secret)
        await admin.close()
        messages = sum(row[2].charges for row in charges if row[1] == HOOKED)
        assert await reset_outbox(url) == messages, "a charge wrote no outbox row"
        base_rate = await raw_posts(hook, body, headers, messages, 1)
        deliveries.append(("raw httpx loop, one at a time", base_rate))
        batched = await raw_posts(hook, body, headers, messages, BATCH)
        deliveries.append((f"raw httpx, {BATCH} at a time", batched))
        for instances in DELIVERERS:
            name = f"{instances} Deliverer{'s' * (instances > 1)}"
            deliveries.append((name, await drain(url, instances)))
    finally:
        receiver.terminate()
        receiver.join()
        await drop_scratch(server)

    print(f"\ncharges over 10,000 accounts on PostgreSQL, {args.seconds:.0f} s per cell")
    print("| workers | path | charges/s | p50 ms | p99 ms | vs floor | vs no endpoint |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for workers, name, result, ratio, plain_ratio in charges:
        print(
            f"| {workers} | {name} | {result.rate:,.0f} | {result.percentile(0.50):.2f} | "
            f"{result.percentile(0.99):.2f} | {ratio:.2f} | {plain_ratio:.2f} |"
        )
    print(f"\n{messages:,} outbox messages ({len(body):,} B bodies), batch {BATCH}")
    print("| sender | messages/s | vs raw loop |")
    print("|---|---:|---:|")
    for name, rate in deliveries:
        print(f"| {name} | {rate:,.0f} | {rate / base_rate:.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
