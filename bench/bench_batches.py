"""What one batch of the posting engine costs in-process on a SQLite file.

One caller at a time through ``creditsd.inprocess.Ledger`` (group commit on, the default,
as the proxy runs it) on a fresh SQLite file in a temporary folder: ``open_hold`` of a
plain amount, ``capture_hold`` of a priced use (the proxy's capture), and ``charge``. For each,
the wall time and the process's CPU time per call (mean and p50 of ``--calls`` calls after
a warm-up) and the trips to aiosqlite's thread per call (each trip is a queue put, a
thread switch and a wake-up of the event loop; ``BEGIN IMMEDIATE`` and ``COMMIT`` are one
each):

    .venv/bin/python bench/bench_batches.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite

from creditsd.config import load_settings
from creditsd.inprocess import Ledger
from creditsd.pricing.catalog import TokenUse

USE = TokenUse("openai/gpt-4o-mini", input_tokens=1200, output_tokens=350)


class Trips:
    """Counts the trips to aiosqlite's thread: it runs every call there through
    ``Connection._execute``."""

    def __init__(self) -> None:
        self.count = 0
        execute = aiosqlite.Connection._execute

        async def counted(conn: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await execute(conn, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

        setattr(aiosqlite.Connection, "_execute", counted)  # noqa: B010 - mypy refuses assigning a method


async def measure(
    name: str, calls: int, step: Callable[[int], Awaitable[object]], trips: Trips
) -> None:
    """Run ``step`` ``calls`` times after a tenth as many to warm up; print what one cost."""
    for index in range(calls // 10):
        await step(-index - 1)
    walls, cpus = [], []
    trips.count = 0
    for index in range(calls):
        wall, cpu = time.perf_counter(), time.process_time()
        await step(index)
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    print(
        f"{name:<14} wall {statistics.mean(walls) * 1e3:5.2f} ms (p50 "
        f"{statistics.median(walls) * 1e3:5.2f})  CPU {statistics.mean(cpus) * 1e3:5.2f} ms  "
        f"trips {trips.count / calls:4.1f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    calls = parser.parse_args().calls
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        settings = load_settings(os.devnull, environ={"CREDITSD_DATABASE_URL": url})
        async with await Ledger.connect(settings, migrate=True) as ledger:
            await ledger.grant("u", 10**15)
            trips = Trips()
            opened: dict[int, str] = {}

            async def open_hold(index: int) -> None:
                opened[index] = (await ledger.open_hold("u", 50_000)).id

            async def capture(index: int) -> None:
                await ledger.capture_hold(opened[index], use=USE)

            async def charge(_index: int) -> None:
                await ledger.charge("u", 10)

            await measure("open_hold", calls, open_hold, trips)
            await measure("capture_hold", calls, capture, trips)
            await measure("charge", calls, charge, trips)


if __name__ == "__main__":
    asyncio.run(main())
