"""``balance.runway_low``: told once as the runway falls below 7, 3 and 1 days, again only
after it rose above the level by half as much again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from creditsd.inprocess import Ledger
from creditsd.worker import Deliverer
from tests.conftest import Clock, client_for, create_key
from tests.webhooks.conftest import register
from tests.webhooks.receiver import Receiver

CREDIT = 10_000


@pytest.fixture
async def admin(hooked: Ledger) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(hooked, await create_key(hooked, "admin", "ops")) as client:
        yield client


async def told(deliverer: Deliverer, receiver: Receiver) -> list[tuple[int, Decimal]]:
    """The runway warnings delivered so far: each level and the runway it told of."""
    while await deliverer.deliver_due():
        pass
    return [
        (b["data"]["level_days"], b["data"]["runway_days"])
        for b in receiver.bodies()
        if b["type"] == "balance.runway_low"
    ]


async def test_each_level_is_told_once_per_crossing(
    hooked: Ledger,
    admin: httpx.AsyncClient,
    receiver: Receiver,
    deliverer: Deliverer,
    clock: Clock,
) -> None:
    await register(admin, receiver.url, ["balance.runway_low"])
    await hooked.grant("ada", 1_000 * CREDIT, source="purchase")
    clock.advance(2 * 86_400)
    await hooked.charge("ada", 100 * CREDIT)  # no burn stored yet: nothing to tell
    assert await hooked.refresh_runway_burns() == 1  # 100 a day: max(100, 100 / 2 days)
    await hooked.charge("ada", 150 * CREDIT)  # 750 left: 7.5 days
    assert await told(deliverer, receiver) == []
    await hooked.charge("ada", 100 * CREDIT)  # 650: 6.5 days, below 7
    await hooked.charge("ada", 50 * CREDIT)  # 600: still below 7, told already
    assert await told(deliverer, receiver) == [(7, Decimal("6.5"))]
    await hooked.charge("ada", 350 * CREDIT)  # 250: 2.5 days, below 3
    assert await told(deliverer, receiver) == [(7, Decimal("6.5")), (3, Decimal("2.5"))]

    await hooked.grant("ada", 900 * CREDIT, source="purchase")  # 1,150: 11.5 days, re-armed
    await hooked.charge("ada", 500 * CREDIT)  # 650: below 7 again
    assert [level for level, _ in await told(deliverer, receiver)] == [7, 3, 7]


async def test_a_runway_hovering_under_the_margin_is_not_told_again(
    hooked: Ledger, admin: httpx.AsyncClient, receiver: Receiver, deliverer: Deliverer, clock: Clock
) -> None:
    await register(admin, receiver.url, ["balance.runway_low"])
    await hooked.grant("bo", 800 * CREDIT, source="purchase")
    clock.advance(7 * 86_400)
    await hooked.charge("bo", 100 * CREDIT)
    await hooked.refresh_runway_burns()  # 100 a day
    await hooked.charge("bo", 100 * CREDIT)  # 600: below 7
    await hooked.grant("bo", 300 * CREDIT, source="purchase")  # 900: 9 days, under 10½
    await hooked.charge("bo", 250 * CREDIT)  # 650: below 7, but never re-armed
    assert await told(deliverer, receiver) == [(7, Decimal(6))]


async def test_spend_the_allowance_pays_for_is_no_burn(
    hooked: Ledger, admin: httpx.AsyncClient, receiver: Receiver, deliverer: Deliverer, clock: Clock
) -> None:
    await register(admin, receiver.url, ["balance.runway_low"])
    await hooked.grant("cy", 100 * CREDIT, source="purchase")
    month_end = clock.now + timedelta(days=30)
    await hooked.grant("cy", 500 * CREDIT, source="subscription", expires_at=month_end)
    clock.advance(2 * 86_400)
    await hooked.charge("cy", 100 * CREDIT)  # paid from the allowance, spent first
    await hooked.refresh_runway_burns()
    await hooked.charge("cy", 300 * CREDIT)  # the allowance again: 100 of its own left
    assert (await hooked.runway("cy")).reason == "no_burn"
    assert await told(deliverer, receiver) == []


async def test_a_quiet_week_clears_the_stored_burn(
    hooked: Ledger, admin: httpx.AsyncClient, receiver: Receiver, deliverer: Deliverer, clock: Clock
) -> None:
    await register(admin, receiver.url, ["balance.runway_low"])
    await hooked.grant("dee", 100 * CREDIT, source="purchase")
    clock.advance(2 * 86_400)
    await hooked.charge("dee", 10 * CREDIT)
    assert await hooked.refresh_runway_burns() == 1  # 10 a day
    assert await hooked.refresh_runway_burns() == 0  # unchanged: nothing written
    clock.advance(8 * 86_400)
    assert await hooked.refresh_runway_burns() == 1  # nothing spent for a week: 0
    await hooked.charge("dee", 85 * CREDIT)  # 5 left, but no burn to run out at
    assert await told(deliverer, receiver) == []
