"""The posting engine: what an auditor found, each as a story on both databases."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.gateway import service as gateway
from creditsd.inprocess import Ledger
from creditsd.kit import db
from creditsd.ledger.errors import AccountClosed, AccountFrozen
from creditsd.tables import accounts, lots
from tests.conftest import Clock

CREDIT = 10_000
ONE_USD = Decimal(1)  # credits a dollar of gateway usage costs, so that costs read as credits
DAY = 86_400


async def sync(ledger: Ledger, account_id: str, credits: int) -> None:
    """What the gateway's balance sync does: bring the balance to ``credits``."""
    await db.run(
        ledger.engine,
        lambda conn: gateway.sync_balance(
            conn, account_id, credits * CREDIT, ledger.policy, ledger.now()
        ),
    )


async def stored(ledger: Ledger, account_id: str) -> tuple[int, int, int]:
    """The account row's balance, held and debt as stored."""
    row = await db.run(
        ledger.engine,
        lambda conn: _row(conn, account_id),
        readonly=True,
    )
    return int(row.balance), int(row.held), int(row.debt)


async def _row(conn: AsyncConnection, account_id: str) -> Any:
    query = select(accounts.c.balance, accounts.c.held, accounts.c.debt)
    return (await conn.execute(query.where(accounts.c.id == account_id))).one()


async def test_a_replayed_credit_on_an_account_below_zero_creates_nothing(ledger: Ledger) -> None:
    await sync(ledger, "ada", -10)
    assert await stored(ledger, "ada") == (-10 * CREDIT, 0, 10 * CREDIT)

    first = await ledger.grant("ada", 5 * CREDIT, idempotency_key="K")
    again = await ledger.grant("ada", 5 * CREDIT, idempotency_key="K")

    assert (again.id, again.replayed, again.credit_balance_after) == (first.id, True, -5 * CREDIT)
    assert await stored(ledger, "ada") == (-5 * CREDIT, 0, 5 * CREDIT)
    assert (await ledger.verify_account("ada")).valid
    assert await ledger.ledger_total() == 0
    assert (await ledger.rebuild_account("ada")).valid


async def test_a_replayed_forced_debit_leaves_debt_as_the_first_left_it(ledger: Ledger) -> None:
    await ledger.grant("bo", 5 * CREDIT)

    async def usage() -> None:
        await db.run(
            ledger.engine,
            lambda conn: gateway.record_usage(
                conn,
                gateway.UsagePost(
                    user_id="bo",
                    model="gpt-4o",
                    cost=Decimal(8),
                    gateway_balance_usd=None,
                    payload={},
                    request_id="req-1",
                ),
                ONE_USD,
                ledger.money,
                ledger.policy,
                ledger.now(),
            ),
        )

    await usage()
    assert await stored(ledger, "bo") == (-3 * CREDIT, 0, 3 * CREDIT)
    await usage()
    await usage()
    assert await stored(ledger, "bo") == (-3 * CREDIT, 0, 3 * CREDIT)
    await ledger.grant("bo", 3 * CREDIT)
    assert await stored(ledger, "bo") == (0, 0, 0)
    assert await ledger.ledger_total() == 0


async def test_rebuild_restores_every_stored_figure_from_the_transfers(
    ledger: Ledger, clock: Clock
) -> None:
    await ledger.grant("cy", 50 * CREDIT, source="purchase")
    await ledger.grant("cy", 30 * CREDIT, expires_at=clock.now + timedelta(days=2))
    await ledger.charge("cy", 20 * CREDIT)  # from the promotion: 10 left in it
    await ledger.open_hold("cy", 15 * CREDIT, expires_in=3_600)
    sound = await figures(ledger, "cy")
    assert sound[0] == (60 * CREDIT, 15 * CREDIT, 0)

    await drift(ledger, "cy", debt=0)
    assert not (await ledger.verify_account("cy")).valid
    await ledger.rebuild_account("cy")
    assert await figures(ledger, "cy") == sound

    await sync(ledger, "cy", -4)  # forced: 45 available, 64 taken, 19 into debt
    in_debt = await figures(ledger, "cy")
    assert in_debt[0] == (-4 * CREDIT, 15 * CREDIT, 19 * CREDIT)
    await drift(ledger, "cy", debt=50 * CREDIT)
    await ledger.rebuild_account("cy")
    assert await figures(ledger, "cy") == in_debt
    assert (await ledger.verify_account("cy")).valid
    assert await ledger.ledger_total() == 0


async def figures(ledger: Ledger, account_id: str) -> tuple[tuple[int, int, int], object, object]:
    """Every stored figure of an account: (balance, held, debt), lots by source, next expiry."""
    account = await ledger.get_account(account_id)
    return await stored(ledger, account_id), account.by_source, account.lots_expire_at


async def drift(ledger: Ledger, account_id: str, *, debt: int) -> None:
    """Corrupt an account's stored figures (within what the database's checks allow)."""

    async def corrupt(conn: AsyncConnection) -> None:
        await conn.execute(
            update(accounts)
            .where(accounts.c.id == account_id)
            .values(balance=70 * CREDIT, held=0, debt=debt, lots_expire_at=None)
        )
        await conn.execute(
            update(lots).where(lots.c.account_id == account_id).values(remaining=lots.c.amount)
        )

    await db.run(ledger.engine, corrupt)


async def test_a_due_promotion_lapses_while_a_hold_stays_open(ledger: Ledger, clock: Clock) -> None:
    await ledger.grant("di", 70 * CREDIT, source="purchase")
    await ledger.grant("di", 30 * CREDIT, expires_at=clock.now + timedelta(days=1))
    hold = await ledger.open_hold("di", 20 * CREDIT, expires_in=DAY)

    clock.advance(DAY - 60)
    await ledger.extend_hold(hold.id, DAY)  # kept alive past the promotion's expiry
    clock.advance(61)
    await ledger.expire_lots()
    chat = await ledger.charge("di", 20 * CREDIT)
    assert {part.source for part in chat.lots} == {"purchase"}  # never the lapsed promotion

    await ledger.release_hold(hold.id)
    await ledger.expire_lots()
    account = await ledger.get_account("di")
    assert (account.balance, account.by_source) == (50 * CREDIT, {"purchase": 50 * CREDIT})
    assert (await ledger.verify_account("di")).valid
    assert await ledger.ledger_total() == 0


@pytest.mark.parametrize(
    ("status", "error"), [("frozen", AccountFrozen), ("closed", AccountClosed)]
)
async def test_a_hold_on_a_frozen_or_closed_account_is_not_captured(
    ledger: Ledger, status: str, error: type[Exception]
) -> None:
    await ledger.grant("eve", 100 * CREDIT)
    hold = await ledger.open_hold("eve", 40 * CREDIT)
    await ledger.open_account("eve", status=status)

    with pytest.raises(error):
        await ledger.capture_hold(hold.id, 30 * CREDIT)
    assert (await ledger.get_hold(hold.id)).status == "open"

    released = await ledger.release_hold(hold.id)
    account = await ledger.get_account("eve")
    assert (released.status, account.balance, account.held) == ("released", 100 * CREDIT, 0)
