"""A call the upstream answered is billed even when the database refuses its capture for a
while: the client has its answer at once, and the capture is retried until the database
takes it, its hold kept alive meanwhile, or charged after the hold's expiry if the outage
outlasted it. Only a process that dies in that window leaves the call free."""

from __future__ import annotations

import asyncio

import pytest

from creditsd.inprocess import Ledger
from tests.conftest import Clock, LedgerFactory, row_locked
from tests.proxy.conftest import FULL_PRICE, MODEL, captures, served_sdk, settled
from tests.proxy.upstream import UPSTREAM_KEY, Upstream

MESSAGES = [{"role": "user", "content": "Hi"}]
# Writes give up quickly, so the capture meets many refusals while the lock lasts.
QUICK = {"lock_timeout": 0.3, "statement_timeout": 1, "pool_timeout": 0.5}


async def until_called(upstream: Upstream) -> None:
    """Wait until the upstream holds the call (its hold is open)."""
    async with asyncio.timeout(10):
        while not upstream.requests:  # noqa: ASYNC110  # the upstream runs in a thread
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("outlasts_the_hold", [False, True], ids=["within", "past_expiry"])
async def test_a_capture_the_database_refuses_lands_once_the_database_is_back(
    make_ledger: LedgerFactory, upstream: Upstream, clock: Clock, outlasts_the_hold: bool
) -> None:
    ledger: Ledger = await make_ledger(
        proxy={"base_url": upstream.url, "api_key": UPSTREAM_KEY}, database=QUICK
    )
    unit = ledger.money.unit
    await ledger.grant("user_1", 100 * unit)
    async with served_sdk(ledger) as client:
        upstream.gate.clear()
        call = asyncio.ensure_future(
            client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=500)  # type: ignore[arg-type]
        )
        await until_called(upstream)
        async with row_locked(ledger, "user_1"):  # the database takes no write on the account
            upstream.gate.set()
            async with asyncio.timeout(5):
                answer = await call  # the client is not kept waiting for the ledger
            assert answer.choices[0].message.content == "Hello!"
            if outlasts_the_hold:
                clock.advance(ledger.settings.proxy.hold_seconds + 1)
            await asyncio.sleep(1.5)  # several captures tried and refused meanwhile
            assert await captures(ledger) == []
        async with asyncio.timeout(15):
            while not (made := await captures(ledger)):  # noqa: ASYNC110  # the ledger's own pace
                await asyncio.sleep(0.05)
        (capture,) = made
        assert capture.amount == FULL_PRICE
        assert (capture.metadata or {})["proxy_outcome"] == "completed"
        outcome = (capture.pricing or {})["settlement"]["outcome"]
        # The upstream's usage (1,000 input tokens) passes the estimate of a two-word prompt.
        assert outcome == ("after_expiry" if outlasts_the_hold else "over_hold_charged")
        assert await settled(ledger) == (100 * unit - FULL_PRICE, 0)
        assert (await ledger.verify_account("user_1")).valid
