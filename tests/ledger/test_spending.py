"""Spending per day and item: read from the price stamps, each finished day only once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from creditsd.inprocess import Ledger
from creditsd.ledger.models import DaySpend
from creditsd.ledger.spending import SpendingMemo
from creditsd.pricing.catalog import FeatureUse, TokenUse
from tests.conftest import Clock

CREDIT = 10_000


async def test_spending_is_summed_per_day_and_item_across_days(
    ledger: Ledger, clock: Clock
) -> None:
    await ledger.grant("ada", 1_000 * CREDIT)
    first_day = clock.now.date()
    await ledger.charge("ada", use=FeatureUse("chat_message", Decimal(2)))
    await ledger.charge("ada", use=FeatureUse("chat_message"))
    await ledger.charge("ada", 4 * CREDIT, description="export")
    hold = await ledger.open_hold("ada", 3 * CREDIT)
    await ledger.capture_hold(hold.id, use=TokenUse("openai/gpt-4o", output_tokens=1_000))
    await ledger.grant("bo", 50 * CREDIT)
    await ledger.charge("bo", use=FeatureUse("chat_message"))
    assert await ledger.daily_spend("ada", first_day) == [
        DaySpend(first_day, "chat_message", 30 * CREDIT),
        DaySpend(first_day, "export", 4 * CREDIT),
        DaySpend(first_day, "openai/gpt-4o", CREDIT),
    ]

    clock.advance(86_400)
    await ledger.charge("ada", use=FeatureUse("video_generation", Decimal("0.5")))
    spent = await ledger.daily_spend("ada", first_day)
    assert spent[-1] == DaySpend(first_day + timedelta(days=1), "video_generation", 5 * CREDIT)
    assert len(spent) == 4
    assert await ledger.daily_spend("ada", first_day + timedelta(days=1)) == spent[-1:]
    assert await ledger.daily_spend("nobody", first_day) == []


async def test_a_finished_day_is_read_once_and_open_days_every_time() -> None:
    memo = SpendingMemo(size=1)
    reads: list[datetime] = []
    monday, tuesday = date(2026, 11, 30), date(2026, 12, 1)
    spent = {monday: [DaySpend(monday, "chat", 10)], tuesday: [DaySpend(tuesday, "chat", 5)]}

    async def read(since: datetime) -> list[DaySpend]:
        reads.append(since)
        return [
            found
            for day, found_list in spent.items()
            for found in found_list
            if day >= since.date()
        ]

    at_noon = datetime(2026, 12, 1, 12, tzinfo=UTC)
    both = spent[monday] + spent[tuesday]
    assert await memo.days("ada", monday, at_noon, read) == both
    assert await memo.days("ada", monday, at_noon, read) == both
    assert reads == [datetime(2026, 11, 30, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)]

    # Just after midnight a day is not over yet for processes whose clocks run behind.
    reads.clear()
    just_after = datetime(2026, 12, 2, 0, 1, tzinfo=UTC)
    assert await memo.days("ada", monday, just_after, read) == both
    assert reads == [datetime(2026, 12, 1, tzinfo=UTC)]

    # A window that moves on reads no more than its days still open.
    reads.clear()
    assert await memo.days("ada", tuesday, just_after, read) == spent[tuesday]
    assert reads == [datetime(2026, 12, 1, tzinfo=UTC)]

    # An account seen least recently is forgotten beyond the memo's size.
    await memo.days("bo", monday, at_noon, read)
    reads.clear()
    await memo.days("ada", monday, at_noon, read)
    assert reads == [datetime(2026, 11, 30, tzinfo=UTC)]
