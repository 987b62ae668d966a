"""What must hold after every step of a run.

The ledger's own invariants (``creditsd.integrity.find_violations``: the ledger sums to
zero, each balance equals its transfers, ``held`` its open holds, lots add up…), and the
simulation's model of what its clients were promised, which the ledger cannot know:

- a request sent again with its key answers what it answered the first time, and a key
  reused with another body is 409 (checked as the world plays, with every 5xx);
- no debit but a hold's capture spends a lot past its expiry (an open hold keeps what it
  reserves of a lapsed lot for its own capture, nobody else);
- each account's credits from Stripe are what its handled events promise: a pack's credits
  per completed checkout, less the refunded share (half up) of each refund, less the pack
  for a dispute until it is won, whatever order Stripe delivered them in;
- each account has one sign-up grant, and one allowance per billing period that was
  reported while it was current, however often and by whichever event.
"""

from __future__ import annotations

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.integrity import find_violations
from creditsd.kit import db
from creditsd.ledger.models import SIGNUP, STRIPE, SUBSCRIPTIONS
from creditsd.tables import accounts, lot_spends, lots, transfers
from tests.sim.world import Purchase, World

COMPLETED = "checkout.session.completed"


async def violations(world: World) -> list[str]:
    """Everything wrong with the world now (empty: all is well)."""
    found = list(world.problems)
    found += await db.run(world.ledger.engine, lambda conn: _model(conn, world), readonly=True)
    return found


async def _model(conn: AsyncConnection, world: World) -> list[str]:
    violated = await find_violations(conn, world.clock.now, world.settings)
    found = [
        f"{violation.invariant}: {violation.subject}: {violation.detail}" for violation in violated
    ]
    found += await _lapsed_lots_spent(conn)
    customers = list(
        (await conn.execute(select(accounts.c.id).where(accounts.c.kind == "customer"))).scalars()
    )
    from_stripe = await _net_from(conn, STRIPE)
    for account_id in customers:
        expected = sum(
            _promised(number, purchase, world.stripe.handled)
            for number, purchase in world.stripe.purchases.items()
            if purchase.account == account_id
        )
        got = from_stripe.get(account_id, 0)
        if got != expected:
            found.append(
                f"stripe: {account_id} got {got} from Stripe, its events promise {expected}"
            )
    signups = await _count_from(conn, SIGNUP)
    allowances = await _count_from(conn, SUBSCRIPTIONS)
    for account_id in customers:
        if signups.get(account_id, 0) != 1:
            found.append(f"signup: {account_id} has {signups.get(account_id, 0)} sign-up grants")
        periods = sum(1 for account, _period in world.periods if account == account_id)
        granted = allowances.get(account_id, 0)
        if granted != periods:
            found.append(f"allowance: {account_id} has {granted} allowances for {periods} periods")
    return found


async def _lapsed_lots_spent(conn: AsyncConnection) -> list[str]:
    """Spends of a lot past its expiry by a debit other than a capture (or the expiry)."""
    query = (
        select(transfers.c.kind, transfers.c.debit_account_id, lot_spends.c.amount, lots.c.source)
        .join(lot_spends, lot_spends.c.transfer_id == transfers.c.id)
        .join(lots, lots.c.id == lot_spends.c.lot_id)
        .where(
            lots.c.expires_at.is_not(None),
            lots.c.expires_at <= transfers.c.created_at,
            transfers.c.kind.not_in(("capture", "expiry")),
        )
    )
    return [
        f"lapsed lot spent: a {row.kind} of {row.debit_account_id} took {row.amount} "
        f"of a {row.source} lot past its expiry"
        for row in await conn.execute(query)
    ]


async def _net_from(conn: AsyncConnection, system: str) -> dict[str, int]:
    """What each customer account received from ``system``, net of what went back."""
    net: dict[str, int] = {}
    for side, sign in ((transfers.c.credit_account_id, 1), (transfers.c.debit_account_id, -1)):
        other = transfers.c.debit_account_id if sign == 1 else transfers.c.credit_account_id
        query = select(side, func.sum(transfers.c.amount)).where(other == system).group_by(side)
        for account_id, amount in await conn.execute(query):
            net[account_id] = net.get(account_id, 0) + sign * int(amount)
    return net


async def _count_from(conn: AsyncConnection, system: str) -> dict[str, int]:
    query = (
        select(transfers.c.credit_account_id, func.count())
        .where(and_(transfers.c.debit_account_id == system))
        .group_by(transfers.c.credit_account_id)
    )
    return {account_id: int(count) for account_id, count in await conn.execute(query)}


def _promised(number: int, purchase: Purchase, handled: list[tuple[int, str]]) -> int:
    """The credits a purchase's handled events promise its account."""
    order = [event for bought, event in handled if bought == number]
    if COMPLETED not in order:
        return 0
    credits = purchase.credits
    if "charge.refunded" in order:
        credits -= _half_up(purchase.credits * purchase.refund, purchase.price)
    if "charge.dispute.created" in order:
        after = order[order.index("charge.dispute.created") + 1 :]
        if not (purchase.dispute == "won" and "charge.dispute.closed" in after):
            credits -= purchase.credits
    return credits


def _half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)
