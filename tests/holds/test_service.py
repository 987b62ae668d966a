"""Holds: reserve, capture in slices or once, extend, release, expire."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from creditsd.holds.errors import ExpiryTooLong
from creditsd.inprocess import Ledger
from creditsd.ledger.errors import (
    HoldExceeded,
    HoldNotFound,
    HoldNotOpen,
    IdempotencyConflict,
    InsufficientCredits,
)
from tests.conftest import Clock, LedgerFactory

CREDIT = 10_000


async def funded(ledger: Ledger, credits: int = 100) -> None:
    await ledger.grant("u", credits * CREDIT)


async def test_an_open_hold_reduces_available_not_balance(ledger: Ledger) -> None:
    await funded(ledger)
    hold = await ledger.open_hold("u", 30 * CREDIT, expires_in=60)
    assert (hold.status, hold.amount, hold.captured) == ("open", 30 * CREDIT, 0)
    account = await ledger.get_account("u")
    assert (account.balance, account.held, account.available) == (
        100 * CREDIT,
        30 * CREDIT,
        70 * CREDIT,
    )
    with pytest.raises(InsufficientCredits) as refused:
        await ledger.charge("u", 71 * CREDIT)
    assert refused.value.available == 70 * CREDIT
    with pytest.raises(InsufficientCredits):
        await ledger.open_hold("u", 71 * CREDIT)


async def test_final_capture_charges_the_actual_and_gives_back_the_rest(ledger: Ledger) -> None:
    await funded(ledger)
    hold = await ledger.open_hold("u", 50 * CREDIT)
    closed, transfer = await ledger.capture_hold(hold.id, 30 * CREDIT)
    assert (closed.status, closed.captured) == ("captured", 30 * CREDIT)
    assert (transfer.kind, transfer.amount, transfer.hold_id) == ("capture", 30 * CREDIT, hold.id)
    assert (transfer.debit_balance_after, transfer.debit_available_after) == (
        70 * CREDIT,
        70 * CREDIT,
    )
    account = await ledger.get_account("u")
    assert (account.balance, account.held) == (70 * CREDIT, 0)
    assert (await ledger.verify_account("u")).valid


async def test_capturing_the_same_hold_twice_charges_once(ledger: Ledger) -> None:
    await funded(ledger)
    hold = await ledger.open_hold("u", 50 * CREDIT)
    _, first = await ledger.capture_hold(hold.id, 30 * CREDIT)
    _, again = await ledger.capture_hold(hold.id, 30 * CREDIT)
    assert again.id == first.id and again.replayed
    with pytest.raises(IdempotencyConflict):
        await ledger.capture_hold(hold.id, 40 * CREDIT)
    with pytest.raises(HoldNotOpen):
        await ledger.capture_hold(hold.id, 40 * CREDIT, idempotency_key="new")
    assert (await ledger.get_account("u")).balance == 70 * CREDIT


async def test_final_capture_above_the_hold_charges_the_difference_if_affordable(
    ledger: Ledger,
) -> None:
    await funded(ledger)
    hold = await ledger.open_hold("u", 50 * CREDIT)
    _, transfer = await ledger.capture_hold(hold.id, 80 * CREDIT)
    assert transfer.debit_balance_after == 20 * CREDIT
    assert transfer.pricing is not None
    assert transfer.pricing["settlement"]["outcome"] == "over_hold_charged"


async def test_an_unaffordable_overrun_is_capped_and_recorded_by_default(ledger: Ledger) -> None:
    await funded(ledger, 20)
    hold = await ledger.open_hold("u", 10 * CREDIT)
    closed, transfer = await ledger.capture_hold(hold.id, 40 * CREDIT)
    assert (closed.status, closed.captured, transfer.amount) == (
        "captured",
        20 * CREDIT,
        20 * CREDIT,
    )
    assert transfer.pricing is not None
    assert transfer.pricing["settlement"] == {
        "outcome": "over_hold_capped",
        "estimate": 10,
        "held_before": 10,
        "actual": 40,
        "charged": 20,
        "released": 0,
        "uncollected": 20,
    }
    account = await ledger.get_account("u")
    assert (account.balance, account.held, account.available) == (0, 0, 0)
    assert (await ledger.verify_account("u")).valid


async def test_an_overrun_policy_of_refuse_answers_402_and_changes_nothing(
    make_ledger: LedgerFactory,
) -> None:
    ledger = await make_ledger(holds={"overrun": "refuse"})
    await funded(ledger, 20)
    hold = await ledger.open_hold("u", 10 * CREDIT)
    with pytest.raises(InsufficientCredits) as refused:
        await ledger.capture_hold(hold.id, 40 * CREDIT)
    assert (refused.value.required, refused.value.available) == (30 * CREDIT, 10 * CREDIT)
    still = await ledger.get_hold(hold.id)
    assert (still.status, still.captured) == ("open", 0)
    assert (await ledger.get_account("u")).held == 10 * CREDIT


async def test_slices_keep_the_rest_held_up_to_the_hold(ledger: Ledger) -> None:
    await funded(ledger)
    hold = await ledger.open_hold("u", 50 * CREDIT)
    for expected_captured in (10, 20, 30):
        hold, _ = await ledger.capture_hold(hold.id, 10 * CREDIT, final=False)
        assert (hold.status, hold.captured) == ("open", expected_captured * CREDIT)
        assert (await ledger.get_account("u")).held == (50 - expected_captured) * CREDIT
    with pytest.raises(HoldExceeded):
        await ledger.capture_hold(hold.id, 21 * CREDIT, final=False)
    hold, _ = await ledger.capture_hold(hold.id, 5 * CREDIT)
    assert (hold.status, hold.captured) == ("captured", 35 * CREDIT)
    account = await ledger.get_account("u")
    assert (account.balance, account.held) == (65 * CREDIT, 0)
    assert (await ledger.verify_account("u")).valid


async def test_a_repeated_slice_with_its_key_is_charged_once(ledger: Ledger) -> None:
    await funded(ledger)
    hold = await ledger.open_hold("u", 50 * CREDIT)
    await ledger.capture_hold(hold.id, 10 * CREDIT, final=False, idempotency_key="slice-1")
    _, again = await ledger.capture_hold(
        hold.id, 10 * CREDIT, final=False, idempotency_key="slice-1"
    )
    assert again.replayed
    assert (await ledger.get_hold(hold.id)).captured == 10 * CREDIT


async def test_concurrent_identical_captures_charge_once(make_ledger: LedgerFactory) -> None:
    """A capture that waited for the hold's lock while another settled it replays it."""
    ledger = await make_ledger(database={"pool_size": 8})
    await funded(ledger)
    # Every connection open up front, so the captures start together.
    warm = [await ledger.engine.connect() for _ in range(8)]
    for conn in warm:
        await conn.close()
    for final, key in ((True, None), (False, "slice")):
        hold = await ledger.open_hold("u", 50 * CREDIT)
        captures = await asyncio.gather(
            *(
                ledger.capture_hold(hold.id, 10 * CREDIT, final=final, idempotency_key=key)
                for _ in range(8)
            )
        )
        assert len({transfer.id for _, transfer in captures}) == 1
        assert sum(not transfer.replayed for _, transfer in captures) == 1
    account = await ledger.get_account("u")
    assert (account.balance, account.held) == (80 * CREDIT, 40 * CREDIT)
    assert (await ledger.verify_account("u")).valid


async def test_release_gives_everything_back_and_is_harmless_twice(ledger: Ledger) -> None:
    await funded(ledger)
    hold = await ledger.open_hold("u", 50 * CREDIT)
    released = await ledger.release_hold(hold.id)
    assert released.status == "released"
    assert (await ledger.release_hold(hold.id)).status == "released"
    assert (await ledger.get_account("u")).available == 100 * CREDIT
    with pytest.raises(HoldNotOpen):
        await ledger.capture_hold(hold.id, 1)
    captured = await ledger.open_hold("u", 5 * CREDIT)
    await ledger.capture_hold(captured.id, 5 * CREDIT)
    with pytest.raises(HoldNotOpen):
        await ledger.release_hold(captured.id)


async def test_an_expired_hold_stops_counting_before_any_sweeper_runs(
    ledger: Ledger, clock: Clock
) -> None:
    await funded(ledger)
    hold = await ledger.open_hold("u", 60 * CREDIT, expires_in=30)
    clock.advance(31)
    account = await ledger.get_account("u")
    assert (account.held, account.available) == (0, 100 * CREDIT)
    charge = await ledger.charge("u", 90 * CREDIT)
    assert charge.debit_available_after == 10 * CREDIT
    expired = await ledger.get_hold(hold.id)
    assert expired.status_at(ledger.now()) == "expired"
    with pytest.raises(HoldNotOpen):
        await ledger.capture_hold(hold.id, 1 * CREDIT)
    with pytest.raises(HoldNotOpen):
        await ledger.extend_hold(hold.id, 60)
    assert (await ledger.verify_account("u")).valid


async def test_the_sweeper_closes_expired_holds(ledger: Ledger, clock: Clock) -> None:
    await funded(ledger)
    for _ in range(3):
        await ledger.open_hold("u", 10 * CREDIT, expires_in=10)
    keep = await ledger.open_hold("u", 10 * CREDIT, expires_in=100)
    clock.advance(11)
    assert await ledger.expire_holds() == 3  # three holds closed
    assert await ledger.expire_holds() == 0
    verification = await ledger.verify_account("u")
    assert verification.valid and verification.stored_held == 10 * CREDIT
    assert (await ledger.get_hold(keep.id)).status == "open"


async def test_extend_keeps_a_long_job_alive(ledger: Ledger, clock: Clock) -> None:
    await funded(ledger)
    hold = await ledger.open_hold("u", 10 * CREDIT, expires_in=30)
    for _ in range(5):
        clock.advance(20)
        hold = await ledger.extend_hold(hold.id, 30)
    assert hold.expires_at == ledger.now() + timedelta(seconds=30)
    clock.advance(29)
    hold, transfer = await ledger.capture_hold(hold.id, 10 * CREDIT)
    assert hold.status == "captured" and transfer.amount == 10 * CREDIT
    with pytest.raises(ExpiryTooLong):
        await ledger.open_hold("u", 1, expires_in=10**9)


async def test_holds_replay_by_key(ledger: Ledger) -> None:
    await funded(ledger)
    first = await ledger.open_hold("u", 10 * CREDIT, idempotency_key="job-7")
    again = await ledger.open_hold("u", 10 * CREDIT, idempotency_key="job-7")
    assert again.id == first.id and again.replayed
    with pytest.raises(IdempotencyConflict):
        await ledger.open_hold("u", 11 * CREDIT, idempotency_key="job-7")
    assert (await ledger.get_account("u")).held == 10 * CREDIT


async def test_unknown_holds_are_not_found(ledger: Ledger) -> None:
    for attempt in (
        ledger.get_hold("hold_nope"),
        ledger.capture_hold("hold_nope", 1),
        ledger.release_hold("hold_nope"),
        ledger.extend_hold("hold_nope", 5),
    ):
        with pytest.raises(HoldNotFound):
            await attempt


async def test_a_charge_reports_available_without_expired_holds(
    ledger: Ledger, clock: Clock
) -> None:
    await funded(ledger)
    await ledger.open_hold("u", 10 * CREDIT, expires_in=30)
    await ledger.open_hold("u", 20 * CREDIT, expires_in=100)
    clock.advance(31)
    charge = await ledger.charge("u", 5 * CREDIT)
    assert (charge.debit_balance_after, charge.debit_available_after) == (95 * CREDIT, 75 * CREDIT)
    stored = await ledger.get_transfer(charge.id)
    assert stored.debit_available_after == 75 * CREDIT
