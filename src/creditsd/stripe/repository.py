"""Every query about Stripe customers and the payments that bought credits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.kit.rows import insert_or_skip
from creditsd.tables import stripe_customers, stripe_early_events, stripe_payments

_C = stripe_customers.c
_P = stripe_payments.c
_E = stripe_early_events.c


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


async def keep_early(conn: AsyncConnection, payment_id: str, event_ids: list[str]) -> bool:
    """Start the list of events that came before a payment's purchase; False when the
    payment has one (kept, or being written by another transaction, which this waits for)."""
    insert = insert_or_skip(conn)
    result = await conn.execute(
        insert(stripe_early_events)
        .values(payment_id=payment_id, event_ids=event_ids)
        .on_conflict_do_nothing(index_elements=[_E.payment_id])
        .returning(_E.payment_id)
    )
    return result.first() is not None


async def lock_early(conn: AsyncConnection, payment_id: str) -> list[str] | None:
    """The events kept for a payment, locked; None when it has none."""
    query = select(_E.event_ids).where(_E.payment_id == payment_id).with_for_update()
    found: list[str] | None = (await conn.execute(query)).scalar_one_or_none()
    return found


async def set_early(conn: AsyncConnection, payment_id: str, event_ids: list[str]) -> None:
    """Replace the events kept for a payment."""
    query = update(stripe_early_events).where(_E.payment_id == payment_id)
    await conn.execute(query.values(event_ids=event_ids))


async def take_early(conn: AsyncConnection, payment_id: str) -> list[str]:
    """The events kept for a payment, no longer kept. The payment's row is written first,
    so that a transaction keeping an event for it right now is waited for, and its event
    taken too."""
    await keep_early(conn, payment_id, [])
    query = delete(stripe_early_events).where(_E.payment_id == payment_id)
    found: list[str] | None = (
        await conn.execute(query.returning(_E.event_ids))
    ).scalar_one_or_none()
    return found or []


async def all_early(conn: AsyncConnection) -> list[Any]:
    """Every payment with events kept for its purchase."""
    return list(await conn.execute(select(stripe_early_events).order_by(_E.payment_id)))
