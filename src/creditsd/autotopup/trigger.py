"""Queueing an auto top-up in the transaction of the write that calls for it.

The posting engine tells the observer the ``available`` credits of every customer account a
batch debited, held from, or refused for insufficient credits; an account whose rule is on,
whose card is saved, which is neither paused nor waiting for the customer, and which is not
backing off after a decline, gets an attempt when it is below its threshold (or was refused).
The attempt's ``in_flight`` column holds the account id until the attempt is resolved, under
a unique constraint: however many writes cross the threshold at once, and however often it is
crossed again while one is in flight, one attempt is queued. The claim disarms the account's
threshold until the attempt is resolved, so the writes in between cost nothing more. The
monthly cap is checked here too: a ``target_balance`` attempt is cut down to what the cap
leaves, a pack that does not fit whole is not bought.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.audit import repository as audit
from creditsd.autotopup import repository as repo
from creditsd.autotopup.models import ACTOR
from creditsd.autotopup.service import month_start
from creditsd.config import Settings
from creditsd.kit import ids
from creditsd.kit.rows import insert_or_skip
from creditsd.tables import auto_topup_attempts, auto_topups

_R = auto_topups.c


async def queue_attempts(
    conn: AsyncConnection,
    available: dict[str, int],
    short: set[str],
    settings: Settings,
    now: datetime,
) -> dict[str, dict[str, Any]]:
    """Queue the attempts these balances call for; what ``auto_topup.cap_reached`` says of
    each account the monthly cap stopped, the first time this month."""
    query = select(auto_topups).where(
        _R.account_id.in_(sorted(available)),
        _R.enabled.is_(True),
        _R.state == "active",
        _R.payment_method_id.is_not(None),
    )
    capped = {}
    for rule in await conn.execute(query):
        account_id = rule.account_id
        due = available[account_id] < rule.threshold or account_id in short
        if not due or (rule.next_attempt_at is not None and rule.next_attempt_at > now):
            continue
        credits = await _credits(conn, rule, available[account_id], settings, now)
        if credits > 0:
            if await _claim(conn, rule, credits, now):
                await repo.arm(conn, account_id)  # disarmed until the attempt is resolved
        elif (told := await _cap_reached(conn, rule, settings, now)) is not None:
            capped[account_id] = told
    return capped


async def _credits(
    conn: AsyncConnection, rule: Any, available: int, settings: Settings, now: datetime
) -> int:
    """The credits to buy: up to the target, or one pack, within what the month's cap
    leaves (0: the cap leaves nothing)."""
    left: int = rule.monthly_cap - await repo.bought_since(conn, rule.account_id, month_start(now))
    if rule.pack is not None:
        pack = settings.packs.get(rule.pack)
        credits = 0 if pack is None else settings.money.to_minor(pack.credits)
        return credits if credits <= left else 0
    target: int = rule.target_balance
    return max(min(target - available, left), 0)


async def _cap_reached(
    conn: AsyncConnection, rule: Any, settings: Settings, now: datetime
) -> dict[str, Any] | None:
    """Note, once a month and audited, that the cap stopped a top-up; the webhook's data
    (None: already told this month)."""
    month = now.strftime("%Y-%m")
    if rule.cap_reached_in == month:
        return None
    await repo.update_rule(conn, rule.account_id, {"cap_reached_in": month, "updated_at": now})
    money = settings.money
    data = {
        "account_id": rule.account_id,
        "monthly_cap": money.to_decimal(rule.monthly_cap),
        "month": month,
    }
    await audit.record(
        conn,
        actor=ACTOR,
        action="auto_topup.cap_reached",
        target=rule.account_id,
        before=None,
        after={"monthly_cap": rule.monthly_cap, "month": month},
        now=now,
    )
    return data


async def _claim(conn: AsyncConnection, rule: Any, credits: int, now: datetime) -> bool:
    """Insert the attempt unless one is in flight for the account; whether it was."""
    insert = insert_or_skip(conn)
    values = {
        "account_id": rule.account_id,
        "id": ids.new_id("atu"),
        "in_flight": rule.account_id,
        "status": "queued",
        "credits": credits,
        "payment_method_id": rule.payment_method_id,
        "card_fingerprint": rule.card_fingerprint,
        "created_at": now,
        "updated_at": now,
    }
    statement = insert(auto_topup_attempts).values(**values)
    statement = statement.on_conflict_do_nothing(index_elements=["in_flight"])
    result = await conn.execute(statement.returning(auto_topup_attempts.c.id))
    return result.first() is not None
