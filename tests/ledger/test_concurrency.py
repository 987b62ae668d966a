"""Many connections at once: no overdraft, no double charge, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg
import pytest
from sqlalchemy import event

from creditsd.inprocess import Ledger
from creditsd.ledger.errors import IdempotencyConflict, InsufficientCredits
from tests.conftest import LedgerFactory, _asyncpg_dsn

CREDIT = 10_000
CHARGES = 300


async def connection_budget(database_url: str, wanted: int) -> int:
    """How many connections this server lets the test open (PostgreSQL caps them)."""
    if database_url.startswith("sqlite"):
        return wanted
    server = await asyncpg.connect(_asyncpg_dsn(database_url))
    try:
        limit = int(await server.fetchval("SHOW max_connections"))
        reserved = int(await server.fetchval("SHOW superuser_reserved_connections"))
        in_use = int(await server.fetchval("SELECT count(*) FROM pg_stat_activity"))
    finally:
        await server.close()
    return max(10, min(wanted, limit - reserved - in_use - 5))


@pytest.mark.parametrize("operation", ["charge", "hold"])
@pytest.mark.parametrize("group_commit", [False, True])
async def test_300_concurrent_spends_against_100_credits(
    make_ledger: LedgerFactory, database_url: str, group_commit: bool, operation: str
) -> None:
    """Charges, or holds opened: exactly what the balance covers goes through."""
    connections = await connection_budget(database_url, CHARGES)
    ledger = await make_ledger(
        # 300 writers at once may queue longer than one request would wait; none may fail.
        database={"pool_size": connections, "lock_timeout": 60, "pool_timeout": 60},
        ledger={"group_commit": group_commit},
    )
    await ledger.grant("hot", 100 * CREDIT)
    # Open every connection up front, so all charges start together rather than one by one.
    warm = [await ledger.engine.connect() for _ in range(connections)]
    for conn in warm:
        await conn.close()
    in_use = peak = 0

    def checked_out(*_: object) -> None:
        nonlocal in_use, peak
        in_use += 1
        peak = max(peak, in_use)

    def checked_in(*_: object) -> None:
        nonlocal in_use
        in_use -= 1

    event.listen(ledger.engine.sync_engine, "checkout", checked_out)
    event.listen(ledger.engine.sync_engine, "checkin", checked_in)

    async def spend(n: int) -> str:
        try:
            if operation == "charge":
                await ledger.charge("hot", 1 * CREDIT, idempotency_key=f"c-{n}")
            else:
                await ledger.open_hold("hot", 1 * CREDIT, idempotency_key=f"h-{n}")
        except InsufficientCredits:
            return "402"
        return "201"

    outcomes = Counter(await asyncio.gather(*(spend(n) for n in range(CHARGES))))
    assert outcomes == {"201": 100, "402": 200}
    account = await ledger.get_account("hot")
    held = 100 * CREDIT if operation == "hold" else 0
    assert (account.balance, account.held, account.available) == (held, held, 0)
    assert (await ledger.verify_account("hot")).valid
    assert await ledger.ledger_total() == 0
    if group_commit:  # a few shared transactions instead of one each
        assert peak <= ledger.settings.ledger.group_commit_lanes
    elif database_url.startswith("sqlite"):  # a process's writers take turns, in order
        assert peak == 1
    else:  # every connection was in a transaction at the same time
        assert peak == connections


@pytest.mark.parametrize("group_commit", [False, True])
async def test_concurrent_hold_replays_open_one_hold_per_key(
    make_ledger: LedgerFactory, database_url: str, group_commit: bool
) -> None:
    ledger = await make_ledger(
        database={"pool_size": await connection_budget(database_url, 100)},
        ledger={"group_commit": group_commit},
    )
    await ledger.grant("u", 100 * CREDIT)
    keys = [f"call-{n}" for n in range(5)]

    async def attempt(key: str) -> str:
        return (await ledger.open_hold("u", 7 * CREDIT, idempotency_key=key)).id

    ids = await asyncio.gather(*(attempt(key) for key in keys for _ in range(20)))
    assert [len(set(ids[i * 20 : (i + 1) * 20])) for i in range(len(keys))] == [1] * len(keys)
    assert (await ledger.get_account("u")).held == 5 * 7 * CREDIT
    with pytest.raises(IdempotencyConflict):
        await ledger.open_hold("u", 8 * CREDIT, idempotency_key=keys[0])


@pytest.mark.parametrize("group_commit", [False, True])
async def test_concurrent_replays_make_one_transfer_per_key(
    make_ledger: LedgerFactory, database_url: str, group_commit: bool
) -> None:
    ledger = await make_ledger(
        database={"pool_size": await connection_budget(database_url, 100)},
        ledger={"group_commit": group_commit},
    )
    await ledger.grant("u", 1000 * CREDIT)
    keys = [f"order-{n}" for n in range(5)]

    async def attempt(key: str) -> str:
        return (await ledger.charge("u", 7 * CREDIT, idempotency_key=key, description=key)).id

    ids = await asyncio.gather(*(attempt(key) for key in keys for _ in range(20)))
    per_key = {key: set(ids[i * 20 : (i + 1) * 20]) for i, key in enumerate(keys)}
    assert all(len(found) == 1 for found in per_key.values())
    history = await ledger.transactions("u", limit=100)
    charges = [t for t in history.items if t.kind == "charge"]
    assert sorted(t.idempotency_key for t in charges) == keys
    assert (await ledger.get_account("u")).balance == (1000 - 5 * 7) * CREDIT


async def test_holds_and_charges_racing_never_overdraw(
    make_ledger: LedgerFactory, database_url: str
) -> None:
    ledger = await make_ledger(database={"pool_size": await connection_budget(database_url, 60)})
    await ledger.grant("u", 50 * CREDIT)

    async def hold_then_capture(n: int) -> int:
        try:
            hold = await ledger.open_hold("u", 3 * CREDIT, idempotency_key=f"h{n}")
        except InsufficientCredits:
            return 0
        _, transfer = await ledger.capture_hold(hold.id, 2 * CREDIT)
        return transfer.amount

    async def charge(n: int) -> int:
        try:
            return (await ledger.charge("u", 1 * CREDIT, idempotency_key=f"c{n}")).amount
        except InsufficientCredits:
            return 0

    spent = await asyncio.gather(
        *(hold_then_capture(n) for n in range(30)), *(charge(n) for n in range(30))
    )
    account = await ledger.get_account("u")
    assert account.balance == 50 * CREDIT - sum(spent)
    assert account.balance >= 0 and account.held == 0
    assert (await ledger.verify_account("u")).valid


@pytest.mark.parametrize("first_touches", [20])
async def test_racing_first_touches_grant_sign_up_once(
    make_ledger: LedgerFactory, database_url: str, first_touches: int
) -> None:
    ledger: Ledger = await make_ledger(
        accounts={"signup_grant": 100},
        database={"pool_size": await connection_budget(database_url, first_touches)},
    )
    await asyncio.gather(
        *(ledger.charge("newcomer", 1 * CREDIT) for _ in range(first_touches // 2)),
        *(ledger.get_account("newcomer") for _ in range(first_touches // 2)),
    )
    account = await ledger.get_account("newcomer")
    assert account.balance == (100 - first_touches // 2) * CREDIT
    assert (await ledger.verify_account("newcomer")).valid


async def test_group_commit_serves_one_caller_after_another(make_ledger: LedgerFactory) -> None:
    ledger = await make_ledger(ledger={"group_commit": True, "group_commit_lanes": 1})
    await ledger.grant("u", 100 * CREDIT)
    # Each charge is submitted in the very step its predecessor's flusher winds down
    # (asyncio.timeout, unlike wait_for, adds no task that would let the loop catch up).
    async with asyncio.timeout(10):
        for n in range(10):
            charge = await ledger.charge("u", 1 * CREDIT)
            assert charge.debit_balance_after == (99 - n) * CREDIT
        with pytest.raises(InsufficientCredits):
            await ledger.charge("u", 1000 * CREDIT)
