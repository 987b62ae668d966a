"""find_violations: a sound ledger has none; each invariant broken by hand is named."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text

from creditsd.inprocess import Ledger
from creditsd.integrity import INVARIANTS, Violation, checkpoints, find_violations
from creditsd.kit import db
from creditsd.kit.jsonio import format_timestamp
from tests.conftest import Clock, LedgerFactory, client_for, create_key, put_member
from tests.stripe.conftest import PACKS, PRICES, buy, deliver, stripe_settings
from tests.stripe.fake import FakeStripe
from tests.stripe.test_published_payloads import dispute_of

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


async def test_a_final_capture_past_its_hold_is_no_drift(ledger: Ledger) -> None:
    await ledger.grant("fay", 10 * CREDIT)
    hold = await ledger.open_hold("fay", 2 * CREDIT, expires_in=600)
    await ledger.capture_hold(hold.id, CREDIT, final=False)
    settled, charged = await ledger.capture_hold(hold.id, 3 * CREDIT)
    assert (settled.status, settled.captured) == ("captured", 4 * CREDIT)
    assert charged.pricing is not None
    assert charged.pricing["settlement"]["outcome"] == "over_hold_charged"
    assert await violations(ledger) == []

    # What it captured before its final capture is past the hold: a drift.
    await execute(
        ledger,
        "UPDATE holds SET captured = captured + :more WHERE id = :id",
        more=CREDIT + 1,
        id=hold.id,
    )
    found = await violations(ledger)
    assert [(v.invariant, v.subject) for v in found] == [("captured_over_amount", hold.id)]
    assert "20001 of it before its final capture" in found[0].detail


async def test_a_won_dispute_gives_back_into_its_purchase_lot(
    make_ledger: LedgerFactory,
) -> None:
    with FakeStripe(prices=PRICES) as fake:
        shop = await make_ledger(stripe=stripe_settings(fake), packs=PACKS)
        async with client_for(shop, await create_key(shop, "app", "web")) as api:
            session = await buy(api, fake, "erin", "1k")
            disputed = fake.dispute(fake.objects[session["payment_intent"]]["latest_charge"])
            opened = fake.event(
                "charge.dispute.created", dispute_of(fake, disputed, "needs_response")
            )
            assert (await deliver(api, opened)).status_code == 200
            assert (await shop.get_account("erin")).balance == 0
            won = fake.event("charge.dispute.closed", dispute_of(fake, disputed, "won"))
            assert (await deliver(api, won)).json()["outcome"] == "reinstated"
    assert (await shop.get_account("erin")).balance == 1_000 * CREDIT
    assert await violations(shop) == []


async def test_lots_past_expiry_kept_for_a_hold_beside_a_debt(ledger: Ledger, clock: Clock) -> None:
    await ledger.open_account("gus", overdraft_limit=50 * CREDIT)
    await ledger.grant("gus", 10 * CREDIT, expires_at=clock.now + timedelta(seconds=30))
    hold = await ledger.open_hold("gus", 6 * CREDIT, expires_in=600)
    clock.advance(60)
    assert await ledger.expire_lots() == 1  # 4 lapse, the hold keeps 6
    await ledger.charge("gus", 3 * CREDIT)  # not from the kept lot: the rest goes below it
    assert await violations(ledger) == []
    await ledger.charge("gus", 10 * CREDIT)  # below zero
    assert (await ledger.get_account("gus")).balance == -7 * CREDIT
    assert await violations(ledger) == []
    await ledger.capture_hold(hold.id, 6 * CREDIT)
    assert (await ledger.get_account("gus")).balance == -13 * CREDIT
    assert await violations(ledger) == []


async def test_a_lot_kept_for_a_hold_off_the_balance(ledger: Ledger, clock: Clock) -> None:
    await ledger.open_account("gus", overdraft_limit=50 * CREDIT)
    await ledger.grant("gus", 10 * CREDIT, expires_at=clock.now + timedelta(seconds=30))
    await ledger.open_hold("gus", 6 * CREDIT, expires_in=600)
    clock.advance(60)
    await ledger.expire_lots()
    kept_lot = "UPDATE lots SET remaining = remaining + :change WHERE account_id = 'gus'"
    await execute(ledger, kept_lot, change=-1)  # less than the balance
    found = await violations(ledger)
    assert [(v.invariant, v.subject) for v in found] == [("lots_match_balance", "gus")]
    await execute(ledger, kept_lot, change=1)
    await ledger.charge("gus", 3 * CREDIT)
    assert await violations(ledger) == []
    await execute(ledger, kept_lot, change=1)  # more than the hold reserves
    found = await violations(ledger)
    assert [(v.invariant, v.subject) for v in found] == [("lots_match_balance", "gus")]
    assert "lots past their expiry keep 60001 of it for holds reserving 60000" in found[0].detail


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


async def test_a_member_changed_after_its_checkpoint(ledger: Ledger, clock: Clock) -> None:
    await ledger.grant("org:acme", 100 * CREDIT)
    await put_member(ledger, "org:acme", "ada")
    spent = await ledger.charge("org:acme", CREDIT, member="ada")
    clock.advance(120)
    await db.run(ledger.engine, lambda conn: checkpoints.write_checkpoint(conn, ledger.now()))
    # Spend moved onto another member's name is caught: the digest covers who spent it.
    await execute(ledger, "UPDATE transfers SET member_id = 'bob' WHERE id = :id", id=spent.id)
    assert [(v.invariant, v.subject) for v in await violations(ledger)] == [
        ("checkpoint_chain", spent.id)
    ]


async def test_a_checkpoint_of_an_earlier_version_still_derives(
    ledger: Ledger, clock: Clock, monkeypatch: Any
) -> None:
    await busy_ledger(ledger, clock)
    clock.advance(120)
    monkeypatch.setattr(checkpoints, "VERSION", 1)  # as a server before member_id wrote it
    older = await db.run(
        ledger.engine, lambda conn: checkpoints.write_checkpoint(conn, ledger.now())
    )
    monkeypatch.undo()
    assert older is not None and older.version == 1
    await ledger.charge("alice", CREDIT)
    clock.advance(120)
    newer = await db.run(
        ledger.engine, lambda conn: checkpoints.write_checkpoint(conn, ledger.now())
    )
    assert newer is not None and newer.version == 2
    assert await violations(ledger) == []
