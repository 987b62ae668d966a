"""Granting a subscription period's allowance, whichever provider reports the period."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.ledger import accounts as ledger_accounts
from creditsd.ledger import repository as ledger_repo
from creditsd.ledger import service as ledger_service
from creditsd.ledger.lots import LotSpec
from creditsd.ledger.models import SUBSCRIPTIONS, SYSTEM_APP, Transfer


def period_key(plan_id: str, account_id: str, start: datetime) -> str:
    """The idempotency key of one period's allowance: the same from Stripe and from Clerk."""
    return f"allowance:{plan_id}:{account_id}:{start.astimezone(UTC):%Y%m%dT%H%M%SZ}"


async def grant_allowance(
    conn: AsyncConnection,
    account_name: str,
    plan_id: str,
    credits: int,
    period: tuple[datetime, datetime],
    policy: ledger_service.Policy,
    now: datetime,
) -> Transfer | None:
    """Grant a plan's credits for one billing period, once however often it is reported.

    The credits land in a ``subscription`` lot that lapses at the period's end, so the
    next period starts from its own allowance while one-off purchases stay. A period
    already over grants nothing (None).

    A period is its plan, account and start: reported again with another end (extended or
    corrected), it answers its first grant, whose credits then lapse at the latest end
    reported, so reports delivered out of order agree. The account is locked first, so a
    report racing another waits for its grant rather than conflicting with it.
    """
    start, end = (moment.astimezone(UTC) for moment in period)
    if end <= now or end <= start:
        return None
    account_id = await ledger_accounts.resolve_account(conn, account_name, policy, now)
    key = period_key(plan_id, account_id, start)
    await ledger_repo.get_account_row(conn, account_id, lock=True)
    granted = await ledger_repo.find_transfer_by_key(conn, SYSTEM_APP, key)
    if granted is not None:
        transfer, _fingerprint = granted
        await ledger_service.postpone_lapse(conn, account_id, transfer.id, end, now)
        return transfer
    return await ledger_service.post_transfer(
        conn,
        ledger_service.Movement(
            kind="grant",
            debit_account_id=SUBSCRIPTIONS,
            credit_account_id=account_id,
            amount=credits,
            app=SYSTEM_APP,
            idempotency_key=key,
            description=f"{plan_id} allowance",
            metadata={"plan": plan_id, "period_start": start.isoformat()},
            lot=LotSpec("subscription", expires_at=end, reference=f"plan:{plan_id}"),
        ),
        policy,
        now,
    )
