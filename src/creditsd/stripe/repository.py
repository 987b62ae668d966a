"""Every query about Stripe customers and the payments that bought credits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.ledger.statements import insert_or_skip
from creditsd.tables import stripe_customers, stripe_payments

_C = stripe_customers.c
_P = stripe_payments.c


async def customer_of(conn: AsyncConnection, account_id: str) -> str | None:
    """The Stripe customer an account pays as."""
    return (
        await conn.execute(select(_C.customer_id).where(_C.account_id == account_id))
    ).scalar_one_or_none()


async def account_of_customer(conn: AsyncConnection, customer_id: str) -> str | None:
    """The account a Stripe customer pays for."""
    return (
        await conn.execute(select(_C.account_id).where(_C.customer_id == customer_id))
    ).scalar_one_or_none()


async def remember_customer(
    conn: AsyncConnection, account_id: str, customer_id: str, now: datetime
) -> str:
    """Map an account to its Stripe customer; the first mapping stays, and is returned."""
    insert = insert_or_skip(conn)
    await conn.execute(
        insert(stripe_customers)
        .values(account_id=account_id, customer_id=customer_id, created_at=now)
        .on_conflict_do_nothing()
    )
    return await customer_of(conn, account_id) or customer_id


async def insert_payment(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    """Record a payment that bought credits; False when it is already recorded."""
    insert = insert_or_skip(conn)
    result = await conn.execute(
        insert(stripe_payments)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[_P.id])
        .returning(_P.id)
    )
    return result.first() is not None


async def get_payment(conn: AsyncConnection, payment_id: str, *, lock: bool = False) -> Any:
    """One payment by its payment intent (or invoice, or session) id."""
    query = select(stripe_payments).where(_P.id == payment_id)
    if lock:
        query = query.with_for_update()
    return (await conn.execute(query)).first()


async def payment_of_session(conn: AsyncConnection, account_id: str, session_id: str) -> Any:
    """The payment an account made through one Checkout Session, if it is recorded (read
    through the account's payments)."""
    query = select(stripe_payments).where(_P.account_id == account_id, _P.session_id == session_id)
    return (await conn.execute(query.limit(1))).first()


async def update_payment(conn: AsyncConnection, payment_id: str, values: dict[str, Any]) -> None:
    """Change what a payment records (refunded, clawed back, confirmed)."""
    await conn.execute(update(stripe_payments).where(_P.id == payment_id).values(**values))


async def all_payments(conn: AsyncConnection) -> list[Any]:
    """Every recorded payment."""
    return list(await conn.execute(select(stripe_payments).order_by(_P.id)))
