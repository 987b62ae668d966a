"""The schedule: [reconcile] interval_seconds, run by the worker's background; 0 is off."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

import pytest

from creditsd.config import ConfigError, load_settings
from creditsd.inprocess import Ledger
from creditsd.integrity import repository as repo
from creditsd.kit import db
from creditsd.worker import background
from tests.conftest import Clock, LedgerFactory
from tests.integrity.conftest import drifts, execute

CREDIT = 10_000
PATIENCE = 10.0  # seconds a test waits for what the schedule must bring before failing


async def last_success(ledger: Ledger) -> object:
    return (await db.run(ledger.engine, repo.job_state, readonly=True)).last_success_at


async def eventually(condition: Callable[[], Awaitable[bool]]) -> None:
    """Wait until ``condition`` holds, looking every 20 ms, for at most PATIENCE seconds."""
    for _ in range(int(PATIENCE / 0.02)):
        if await condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the background did not get there")


async def test_the_background_reconciles_every_interval(make_ledger: LedgerFactory) -> None:
    ledger = await make_ledger(reconcile={"interval_seconds": 0.05})
    await ledger.grant("alice", 10 * CREDIT)
    running = asyncio.create_task(background(ledger))
    try:
        await eventually(lambda: _ran(ledger))
        await execute(ledger, "UPDATE accounts SET balance = balance + 1 WHERE id = 'alice'")
        await eventually(lambda: _has_drifts(ledger))
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    (drift,) = await drifts(ledger)
    assert (drift.invariant, drift.subject) == ("balance_matches_transfers", "alice")


async def _ran(ledger: Ledger) -> bool:
    return await last_success(ledger) is not None


async def _has_drifts(ledger: Ledger) -> bool:
    return bool(await drifts(ledger))


async def test_interval_zero_turns_it_off(make_ledger: LedgerFactory, clock: Clock) -> None:
    ledger = await make_ledger(reconcile={"interval_seconds": 0}, holds={"sweep_interval": 0.01})
    await ledger.grant("alice", 10 * CREDIT)
    hold = await ledger.open_hold("alice", CREDIT, expires_in=1)
    clock.advance(2)
    running = asyncio.create_task(background(ledger))
    try:  # the sweeps of the same background ran, and reconciliation never did
        await eventually(lambda: _expired(ledger, hold.id))
        await asyncio.sleep(0.2)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert await last_success(ledger) is None


async def _expired(ledger: Ledger, hold_id: str) -> bool:
    return (await ledger.get_hold(hold_id)).status == "expired"


def test_the_interval_from_the_environment() -> None:
    base = {"CREDITSD_CONFIG": os.devnull}
    assert load_settings(environ=base).reconcile.interval_seconds == 300
    settings = load_settings(environ={**base, "CREDITSD_RECONCILE__INTERVAL_SECONDS": "0"})
    assert settings.reconcile.interval_seconds == 0
    with pytest.raises(ConfigError, match=r"reconcile\.interval_seconds"):
        load_settings(environ={**base, "CREDITSD_RECONCILE__INTERVAL_SECONDS": "-1"})
