"""Many connections at once: no overdraft, no double charge, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg
import pytest
from sqlalchemy import event

from creditsd.inprocess import Ledger
from creditsd.ledger.errors import IdempotencyConflict, InsufficientCredits
from tests.conftest import Clock, LedgerFactory, _asyncpg_dsn, client_for, create_key

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


async def deadlocks(database_url: str) -> int:
    """How many deadlocks PostgreSQL has detected in this database (0 on SQLite)."""
    if database_url.startswith("sqlite"):
        return 0
    server = await asyncpg.connect(_asyncpg_dsn(database_url))
    try:
        found = await server.fetchval(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await server.close()
    return int(found or 0)


async def test_settling_holds_around_their_expiry_beside_charges_never_deadlocks(
    make_ledger: LedgerFactory, database_url: str, clock: Clock
) -> None:
    """Releases, captures and extensions of holds, half of them just past their expiry,
    beside charges and the expiry sweep, all on one account: every request is answered
    for its own reason (no 503), and PostgreSQL detects no deadlock."""
    ledger = await make_ledger(database={"pool_size": await connection_budget(database_url, 40)})
    await ledger.grant("hot", 10_000 * CREDIT)
    before = await deadlocks(database_url)
    for round_ in range(3):
        holds = [
            await ledger.open_hold("hot", CREDIT, expires_in=60 if n % 2 else 30) for n in range(60)
        ]
        clock.advance(31)

        async def settle(n: int, hold_id: str) -> object:
            if n % 3 == 0:
                return await ledger.release_hold(hold_id)
            if n % 3 == 1:
                return await ledger.capture_hold(hold_id, CREDIT // 2)
            return await ledger.extend_hold(hold_id, 60)

        answers = await asyncio.gather(
            *(settle(n, hold.id) for n, hold in enumerate(holds)),
            *(ledger.charge("hot", CREDIT, idempotency_key=f"{round_}-{n}") for n in range(60)),
            *(ledger.expire_holds() for _ in range(6)),
            return_exceptions=True,
        )
        failures = Counter(type(a).__name__ for a in answers if isinstance(a, BaseException))
        assert set(failures) <= {"HoldNotOpen"}, failures
        clock.advance(60)
        await ledger.expire_holds()
    assert (await ledger.verify_account("hot")).valid
    await ledger.close()  # its connections end, so the server counts what they met
    assert await deadlocks(database_url) == before


async def test_lowering_the_overdraft_while_charges_run_is_a_409_never_a_503(
    make_ledger: LedgerFactory, database_url: str
) -> None:
    """Charges spend into the overdraft while an operator keeps lowering and raising the
    limit: a change the account's spending no longer allows is 409 ``overdraft_in_use``,
    decided on the figures it locked, never a 503 from the database's check."""
    ledger = await make_ledger(database={"pool_size": await connection_budget(database_url, 40)})
    await ledger.open_account("od", overdraft_limit=100 * CREDIT)
    async with client_for(ledger, await create_key(ledger, "admin")) as api:

        async def charge(n: int) -> int:
            answer = await api.post(
                "/v1/charges",
                json={"account_id": "od", "amount": 1},
                headers={"Idempotency-Key": f"od-{n}"},
            )
            return answer.status_code

        async def limit(n: int) -> tuple[int, str | None]:
            answer = await api.put("/v1/accounts/od", json={"overdraft_limit": n % 2 * 100})
            return answer.status_code, answer.json().get("error", {}).get("code")

        charged, limited = await asyncio.gather(
            asyncio.gather(*(charge(n) for n in range(60))),
            asyncio.gather(*(limit(n) for n in range(60))),
        )
    statuses = Counter([*charged, *(status for status, _ in limited)])
    assert set(statuses) <= {200, 201, 402, 409}, statuses
    assert {code for status, code in limited if status == 409} <= {"overdraft_in_use"}
    account = await ledger.get_account("od")
    assert account.balance == -statuses[201] * CREDIT
    assert account.available >= 0
    assert (await ledger.verify_account("od")).valid
