"""find_violations: a sound ledger has none; each invariant broken by hand is named."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text

from creditsd import db
from creditsd.inprocess import Ledger
from creditsd.integrity import INVARIANTS, Violation, checkpoints, find_violations
from creditsd.jsonio import format_timestamp
from tests.conftest import Clock

CREDIT = 10_000


async def violations(ledger: Ledger) -> list[Violation]:
    return await db.run(
        ledger.engine, lambda conn: find_violations(conn, ledger.now(), ledger.settings)
    )


async def execute(ledger: Ledger, sql: str, **values: Any) -> None:
    async with db.transaction(ledger.engine) as conn:
        await conn.execute(text(sql), values)


async def busy_ledger(ledger: Ledger, clock: Clock) -> str:
    """Grants, charges, a captured hold, an open hold, a lapsed lot; the hold still open."""
    await ledger.grant("alice", 100 * CREDIT)
    await ledger.grant("alice", 5 * CREDIT, expires_at=clock.now + timedelta(seconds=30))
    await ledger.charge("alice", 10 * CREDIT, idempotency_key="chat-1")
    hold = await ledger.open_hold("alice", 20 * CREDIT, expires_in=600)
    await ledger.capture_hold(hold.id, 15 * CREDIT)
    await ledger.grant("bob", 3 * CREDIT)
    await ledger.adjust("bob", -1 * CREDIT, reason="typo")
    clock.advance(60)
    await ledger.expire_lots()
    return (await ledger.open_hold("bob", CREDIT, expires_in=600)).id


async def test_a_sound_ledger_breaks_nothing(ledger: Ledger, clock: Clock) -> None:
    await busy_ledger(ledger, clock)
    assert await violations(ledger) == []
    clock.advance(120)
    await db.run(ledger.engine, lambda conn: checkpoints.write_checkpoint(conn, ledger.now()))
    assert await violations(ledger) == []


async def test_every_invariant_has_a_name_for_alerts() -> None:
    assert all(name.isidentifier() and name.islower() for name in INVARIANTS)
    assert len(set(INVARIANTS)) == len(INVARIANTS)


async def test_a_balance_off_its_transfers(ledger: Ledger, clock: Clock) -> None:
    await busy_ledger(ledger, clock)
    await execute(ledger, "UPDATE accounts SET balance = balance + 7 WHERE id = 'alice'")
    found = await violations(ledger)
    assert [(v.invariant, v.subject) for v in found] == [("balance_matches_transfers", "alice")]
    assert "stored balance 800007, its transfers sum to 800000" in found[0].detail


async def test_held_off_its_open_holds(ledger: Ledger, clock: Clock) -> None:
    await busy_ledger(ledger, clock)
    await execute(ledger, "UPDATE accounts SET held = 0 WHERE id = 'bob'")
    assert [(v.invariant, v.subject) for v in await violations(ledger)] == [
        ("held_matches_holds", "bob")
    ]


async def test_lots_off_the_balance(ledger: Ledger, clock: Clock) -> None:
    await busy_ledger(ledger, clock)
    await execute(ledger, "UPDATE lots SET remaining = remaining - 1 WHERE account_id = 'bob'")
    assert [(v.invariant, v.subject) for v in await violations(ledger)] == [
        ("lots_match_balance", "bob")
    ]


async def test_an_open_hold_past_its_expiry(ledger: Ledger, clock: Clock) -> None:
    hold_id = await busy_ledger(ledger, clock)
    clock.advance(600 + 5 + 60 + 1)  # expired, and the sweep had its interval and a minute
    assert [(v.invariant, v.subject) for v in await violations(ledger)] == [
        ("hold_past_expiry", hold_id)
    ]
    await ledger.expire_holds()
    assert await violations(ledger) == []


async def test_a_hold_that_captured_more_than_it_held(ledger: Ledger, clock: Clock) -> None:
    hold_id = await busy_ledger(ledger, clock)
    await execute(
        ledger,
        "UPDATE holds SET status = 'captured', captured = amount + 1 WHERE id = :id",
        id=hold_id,
    )
    await execute(ledger, "UPDATE accounts SET held = 0 WHERE id = 'bob'")
    assert [(v.invariant, v.subject) for v in await violations(ledger)] == [
        ("captured_over_amount", hold_id)
    ]


async def test_a_payment_or_a_period_granted_twice(ledger: Ledger, clock: Clock) -> None:
    await busy_ledger(ledger, clock)
    end = clock.now + timedelta(days=30)
    for source, reference in (("purchase", "stripe:pi_1"), ("subscription", "plan:pro")):
        for _ in range(2):
            await ledger.grant("carol", CREDIT, source=source, expires_at=end)
            await execute(
                ledger,
                "UPDATE lots SET reference = :reference WHERE id = (SELECT max(id) FROM lots)",
                reference=reference,
            )
    found = [(v.invariant, v.subject) for v in await violations(ledger)]
    assert found == [
        ("one_grant_per_payment", "pi_1"),
        ("one_grant_per_period", f"carol:pro:{format_timestamp(end)}"),
    ]


async def test_an_outbox_message_past_its_retry_budget(ledger: Ledger, clock: Clock) -> None:
    await execute(
        ledger,
        "INSERT INTO outbox (destination, message_id, event_type, payload, status, attempts,"
        " next_attempt_at, created_at) VALUES ('we_1', 'msg_old', 'balance.low', '{}',"
        " 'pending', 0, :now, :now)",
        now=clock.now,
    )
    assert await violations(ledger) == []
    budget = 3 * 86_400 + 3600 * 1.5 + 10 + 60
    clock.advance(budget + 1)
    assert [(v.invariant, v.subject) for v in await violations(ledger)] == [
        ("outbox_overdue", "msg_old")
    ]


async def test_a_transfer_changed_after_its_checkpoint(ledger: Ledger, clock: Clock) -> None:
    await busy_ledger(ledger, clock)
    clock.advance(120)
    await db.run(ledger.engine, lambda conn: checkpoints.write_checkpoint(conn, ledger.now()))
    charge = await ledger.charge("alice", 10 * CREDIT, idempotency_key="chat-1")  # a replay
    await execute(
        ledger, "UPDATE transfers SET description = 'edited' WHERE id = :id", id=charge.id
    )
    assert [(v.invariant, v.subject) for v in await violations(ledger)] == [
        ("checkpoint_chain", charge.id)
    ]
