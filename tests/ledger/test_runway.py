"""Runway: the burn of synthetic spend series, and how long credits last at it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from creditsd.inprocess import Ledger
from creditsd.ledger.runway import (
    DAY,
    METHOD,
    Burn,
    Runway,
    available_without_allowance,
    next_warning,
    runway,
)
from tests.conftest import Clock

CREDIT = 10_000
NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def burn_of(days: list[int]) -> Burn:
    """The burn of a series of daily spends, the last one the latest 24 hours."""
    return Burn(last_day=days[-1], last_week=sum(days[-7:]))


def test_a_steady_burn_runs_out_at_its_mean() -> None:
    answer = runway(700, burn_of([100] * 10), timedelta(days=10), NOW)
    assert answer == Runway(700, 100, 7 * DAY, NOW + 7 * DAY, None, METHOD)


def test_a_spike_in_the_last_day_takes_the_lead() -> None:
    answer = runway(700, burn_of([100] * 6 + [400]), timedelta(days=30), NOW)
    assert answer.burn_per_day == 400  # the mean is ⌈1000 / 7⌉ = 143
    assert answer.lasts == timedelta(days=1, hours=18)


def test_a_quiet_last_day_does_not_hide_a_busy_week() -> None:
    answer = runway(1_000, burn_of([300, 300, 300, 0, 0, 0, 0]), timedelta(days=7), NOW)
    assert answer.burn_per_day == 129  # ⌈900 / 7⌉, rounded up
    assert answer.lasts == timedelta(seconds=1_000 * 86_400 // 129)


def test_a_young_account_averages_over_the_days_it_has() -> None:
    answer = runway(300, burn_of([50, 100]), timedelta(days=2), NOW)
    assert answer.burn_per_day == 100  # max(100, ⌈150 / 2⌉ = 75)
    assert answer.runs_out_at == NOW + 3 * DAY


def test_less_than_a_day_of_history_has_no_runway() -> None:
    answer = runway(300, Burn(200, 200), timedelta(hours=23), NOW)
    assert answer == Runway(300, None, None, None, "too_little_history", METHOD)


def test_no_burn_has_no_runway() -> None:
    assert runway(300, Burn(0, 0), timedelta(days=30), NOW).reason == "no_burn"


def test_nothing_available_runs_out_now() -> None:
    assert runway(0, Burn(10, 70), timedelta(days=30), NOW).runs_out_at == NOW


def test_the_unspent_allowance_is_not_runway() -> None:
    assert available_without_allowance(1_500, 1_000) == 500
    assert available_without_allowance(200, 1_000) == 0  # open holds reserve it


def test_each_level_warns_once_per_crossing() -> None:
    per_day = 100
    steps = [800, 600, 500, 200, 150, 1_100, 600, 90]  # runway in days × 100
    warned: int | None = None
    told = []
    for available in steps:
        level, warned = next_warning(available, per_day, warned)
        told.append(level)
    assert told == [None, 7, None, 3, None, None, 7, 1]


def test_a_level_rearms_only_above_its_margin() -> None:
    assert next_warning(1_000, 100, 7) == (None, 7)  # 10 days: under 10½
    assert next_warning(400, 100, 3) == (None, 3)  # 4 days: under 4½
    assert next_warning(500, 100, 3) == (None, 7)  # 5 days: 3 re-armed, 7 still warned
    assert next_warning(200, 100, 1) == (None, 3)  # 2 days: 1 re-armed, 3 still warned


async def test_steady_spend_through_the_ledger(ledger: Ledger, clock: Clock) -> None:
    await ledger.grant("ada", 1_000 * CREDIT, source="purchase")
    for _day in range(7):
        await ledger.charge("ada", 50 * CREDIT)
        clock.advance(86_400)
    answer = await ledger.runway("ada")
    assert (answer.available, answer.burn_per_day) == (650 * CREDIT, 50 * CREDIT)
    assert answer.lasts == 13 * DAY


async def test_an_allowance_at_month_start_neither_lengthens_nor_burns(
    ledger: Ledger, clock: Clock
) -> None:
    await ledger.grant("ada", 1_000 * CREDIT, source="purchase")
    for _day in range(7):
        await ledger.charge("ada", 50 * CREDIT)
        clock.advance(86_400)
    month_end = clock.now + timedelta(days=30)
    await ledger.grant("ada", 500 * CREDIT, source="subscription", expires_at=month_end)
    assert (await ledger.runway("ada")).lasts == 13 * DAY  # as before the allowance

    await ledger.charge("ada", 60 * CREDIT)  # paid from the allowance, which is spent first
    answer = await ledger.runway("ada")
    assert (answer.available, answer.burn_per_day) == (650 * CREDIT, 50 * CREDIT)
    clock.advance(7 * 86_400)  # a week the allowance paid for: nothing of the rest burns
    await ledger.charge("ada", 10 * CREDIT)
    assert (await ledger.runway("ada")).reason == "no_burn"
