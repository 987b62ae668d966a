"""An attempt is queued in the transaction of the write that takes ``available`` below the
threshold (or is refused for insufficient credits): one in flight per account, never past
the monthly cap."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import event, select

from creditsd.autotopup import service
from creditsd.autotopup.models import Card, Rule
from creditsd.inprocess import Ledger
from creditsd.ledger.errors import InsufficientCredits
from creditsd.tables import accounts, auto_topup_attempts
from tests.conftest import LedgerFactory
from tests.ledger.test_concurrency import connection_budget
from tests.stripe.conftest import PACKS

CREDIT = 10_000
CARD = Card(
    customer_id="cus_ada", payment_method_id="pm_ada", fingerprint="fp", last4="4242", brand="visa"
)


async def set_up(ledger: Ledger, account: str = "ada", **rule: Any) -> None:
    """A rule (threshold 100, target 500, cap 2000 credits unless given) and a saved card."""
    values: dict[str, Any] = {"enabled": True, "threshold": 100 * CREDIT, "pack": None}
    values |= {"target_balance": 500 * CREDIT, "monthly_cap": 2000 * CREDIT} | rule
    await ledger.database.write(
        lambda conn, now: service.put_rule(
            conn, account, Rule(**values), PACKS, ledger.policy, now, actor="test"
        )
    )
    await ledger.database.write(
        lambda conn, now: service.record_consent(conn, account, CARD, "test", ledger.policy, now)
    )


async def attempts_of(ledger: Ledger, account: str = "ada") -> list[Any]:
    """The account's attempts, as stored."""
    query = select(auto_topup_attempts).where(auto_topup_attempts.c.account_id == account)

    async def read(conn: Any, _now: Any) -> list[Any]:
        return list(await conn.execute(query))

    return await ledger.database.read(read)


@pytest.fixture
async def shop(make_ledger: LedgerFactory) -> Ledger:
    return await make_ledger(packs=PACKS)


async def test_crossing_the_threshold_queues_enough_to_reach_the_target(shop: Ledger) -> None:
    await shop.grant("ada", 300 * CREDIT)
    await set_up(shop)
    await shop.charge("ada", 150 * CREDIT)
    assert await attempts_of(shop) == []  # 150 left: above the threshold
    await shop.charge("ada", 60 * CREDIT)
    (attempt,) = await attempts_of(shop)
    assert (attempt.status, attempt.credits, attempt.in_flight) == ("queued", 410 * CREDIT, "ada")
    assert attempt.payment_method_id == "pm_ada"
    await shop.charge("ada", 10 * CREDIT)  # crossed again while in flight: nothing more
    assert len(await attempts_of(shop)) == 1


async def test_a_refusal_for_insufficient_credits_queues_one(shop: Ledger) -> None:
    await shop.grant("ada", 200 * CREDIT)
    await set_up(shop)
    with pytest.raises(InsufficientCredits):
        await shop.charge("ada", 300 * CREDIT)
    (attempt,) = await attempts_of(shop)
    assert attempt.credits == 300 * CREDIT  # 200 available, target 500


async def test_an_account_with_auto_topup_off_queues_none(shop: Ledger) -> None:
    await shop.grant("ada", 200 * CREDIT)
    await set_up(shop, enabled=False)
    await shop.charge("ada", 150 * CREDIT)
    assert await attempts_of(shop) == []


@pytest.mark.parametrize(
    ("rule", "queued"),
    [
        ({"monthly_cap": 450 * CREDIT}, 440 * CREDIT),  # 440 to reach 500: fits
        ({"monthly_cap": 300 * CREDIT}, 300 * CREDIT),  # cut down to the cap
        ({"target_balance": None, "pack": "1k", "monthly_cap": 999 * CREDIT}, None),
        ({"target_balance": None, "pack": "1k", "monthly_cap": 1000 * CREDIT}, 1000 * CREDIT),
    ],
)
async def test_the_monthly_cap_is_never_passed(
    shop: Ledger, rule: dict[str, Any], queued: int | None
) -> None:
    await shop.grant("ada", 100 * CREDIT)
    await set_up(shop, **rule)
    await shop.charge("ada", 40 * CREDIT)
    found = await attempts_of(shop)
    assert [a.credits for a in found] == ([] if queued is None else [queued])


async def test_100_concurrent_debits_crossing_the_threshold_start_one_attempt(
    make_ledger: LedgerFactory, database_url: str
) -> None:
    connections = await connection_budget(database_url, 100)
    ledger = await make_ledger(
        packs=PACKS, database={"pool_size": connections, "lock_timeout": 60, "pool_timeout": 60}
    )
    await ledger.grant("hot", 150 * CREDIT)
    await set_up(ledger, "hot")

    async def spend(n: int) -> str:
        try:
            await ledger.charge("hot", 1 * CREDIT, idempotency_key=f"c-{n}")
        except InsufficientCredits:
            return "402"
        return "201"

    outcomes = Counter(await asyncio.gather(*(spend(n) for n in range(100))))
    assert outcomes == {"201": 100}
    (attempt,) = await attempts_of(ledger, "hot")
    assert attempt.status == "queued" and attempt.in_flight == "hot"


async def test_a_rule_without_a_saved_card_queues_none(shop: Ledger) -> None:
    await shop.grant("ada", 200 * CREDIT)
    rule = Rule(
        enabled=True,
        threshold=100 * CREDIT,
        target_balance=500 * CREDIT,
        pack=None,
        monthly_cap=2000 * CREDIT,
    )
    await shop.database.write(
        lambda conn, now: service.put_rule(conn, "ada", rule, PACKS, shop.policy, now, actor="t")
    )
    await shop.charge("ada", 150 * CREDIT)
    assert await attempts_of(shop) == []


async def armed(ledger: Ledger, account: str = "ada") -> int | None:
    """The threshold the posting engine reads with the account (None: disarmed)."""
    query = select(accounts.c.auto_topup_below).where(accounts.c.id == account)
    return await ledger.database.read(lambda conn, _now: _scalar(conn, query))


async def _scalar(conn: Any, query: Any) -> Any:
    return (await conn.execute(query)).scalar_one()


async def test_a_write_below_the_threshold_while_an_attempt_is_in_flight_costs_nothing_more(
    shop: Ledger,
) -> None:
    await shop.grant("ada", 300 * CREDIT)
    await set_up(shop)
    assert await armed(shop) == 100 * CREDIT
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    async def topup_statements(write: Any) -> int:
        """How many statements about attempts ``write`` made."""
        statements.clear()
        await write
        return len([s for s in statements if "auto_topup_attempts" in s])

    event.listen(shop.engine.sync_engine, "before_cursor_execute", seen)
    try:
        assert await topup_statements(shop.charge("ada", 210 * CREDIT)) > 0  # 90: queues one
        assert await armed(shop) is None
        assert await topup_statements(shop.charge("ada", 10 * CREDIT)) == 0
        with pytest.raises(InsufficientCredits):
            await topup_statements(shop.charge("ada", 500 * CREDIT))
        assert not [s for s in statements if "auto_topup_attempts" in s]
    finally:
        event.remove(shop.engine.sync_engine, "before_cursor_execute", seen)
    assert len(await attempts_of(shop)) == 1
