"""The invariants, each checked against the database as it is.

:func:`find_violations` checks everything. A scheduled run checks less where it safely can
(:func:`check`): the accounts that changed since the previous run, plus every account when
a ledger-wide total disagrees (a drift anywhere shows in a total: stored ``held`` summed
against the open holds, the positive balances against the lots, the stored balances plus
the derived system balances against zero); the chain is re-derived only when its count
and sum disagree, or a full pass is due (:mod:`creditsd.integrity.checkpoints`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.config import Settings
from creditsd.integrity import checkpoints
from creditsd.integrity import repository as repo
from creditsd.integrity.models import (
    BALANCE_MATCHES_TRANSFERS,
    CAPTURED_OVER_AMOUNT,
    CHECKPOINT_CHAIN,
    HELD_MATCHES_HOLDS,
    HOLD_PAST_EXPIRY,
    LOTS_MATCH_BALANCE,
    ONE_GRANT_PER_PAYMENT,
    ONE_GRANT_PER_PERIOD,
    OUTBOX_OVERDUE,
    ChainBreak,
    Violation,
)
from creditsd.jsonio import format_timestamp
from creditsd.ledger import repository as ledger_repo
from creditsd.ledger import service as ledger

ACCOUNT_PAGE = 500
GRACE_SECONDS = 60  # how late the background's own timers may run before a lag is a drift


async def find_violations(
    conn: AsyncConnection, now: datetime, settings: Settings
) -> list[Violation]:
    """Every invariant checked in full, in the caller's transaction; what is broken, sorted.

    On a live PostgreSQL ledger, begin that transaction with
    ``repository.read_one_snapshot``, or writers committing meanwhile look like drift."""
    found = await check(conn, now, settings, None)
    return sorted(found + chain_violations(await checkpoints.first_break(conn)))


async def check(
    conn: AsyncConnection, now: datetime, settings: Settings, accounts: frozenset[str] | None
) -> list[Violation]:
    """Every invariant but the chain's, the accounts' for ``accounts`` only (None: all, as
    when a ledger-wide total disagrees); what is broken, sorted."""
    if accounts is not None and not await _totals_agree(conn):
        accounts = None
    found = await _account_violations(conn, accounts)
    found += await _hold_violations(conn, now, settings)
    found += await _grant_violations(conn)
    found += await _outbox_violations(conn, now, settings)
    return sorted(found)


def chain_violations(broken: ChainBreak | None) -> list[Violation]:
    """A break of the checkpoint chain as a violation."""
    if broken is None:
        return []
    subject = broken.transfer_id or f"checkpoint:{broken.checkpoint}"
    return [Violation(CHECKPOINT_CHAIN, subject, broken.detail)]


def hold_deadline(now: datetime, settings: Settings) -> datetime:
    """Open holds that expired before this are overdue: the sweep should have closed them."""
    return now - timedelta(seconds=settings.holds.sweep_interval + GRACE_SECONDS)


async def _totals_agree(conn: AsyncConnection) -> bool:
    held, reserved, positive_balances = await repo.customer_totals(conn)
    return (
        held == reserved
        and positive_balances == await repo.lot_total(conn)
        and await ledger.ledger_total(conn) == 0
    )


async def _account_ids(conn: AsyncConnection) -> list[list[str]]:
    pages: list[list[str]] = []
    after: str | None = None
    while page := await ledger_repo.customer_ids(conn, after, ACCOUNT_PAGE):
        pages.append(page)
        after = page[-1]
    return pages


async def _account_violations(
    conn: AsyncConnection, account_ids: Iterable[str] | None
) -> list[Violation]:
    if account_ids is None:
        pages = await _account_ids(conn)
    else:
        wanted = sorted(account_ids)
        pages = [wanted[i : i + ACCOUNT_PAGE] for i in range(0, len(wanted), ACCOUNT_PAGE)]
    found: list[Violation] = []
    for page in pages:
        remainders = await repo.lot_remainders(conn, page)
        for v in await ledger.verify_accounts(conn, page):
            if v.stored_balance != v.calculated_balance:
                found.append(
                    Violation(
                        BALANCE_MATCHES_TRANSFERS,
                        v.account_id,
                        f"stored balance {v.stored_balance}, its transfers sum to "
                        f"{v.calculated_balance} (minor units)",
                    )
                )
            if v.stored_held != v.calculated_held:
                found.append(
                    Violation(
                        HELD_MATCHES_HOLDS,
                        v.account_id,
                        f"stored held {v.stored_held}, its open holds reserve "
                        f"{v.calculated_held} (minor units)",
                    )
                )
            # Against the balance the transfers make, so that a drifted stored balance is
            # one drift, not two.
            remaining = remainders.get(v.account_id, 0)
            if remaining != max(v.calculated_balance, 0):
                found.append(
                    Violation(
                        LOTS_MATCH_BALANCE,
                        v.account_id,
                        f"its lots hold {remaining}, its transfers make a balance of "
                        f"{v.calculated_balance} (minor units)",
                    )
                )
    return found


async def _hold_violations(
    conn: AsyncConnection, now: datetime, settings: Settings
) -> list[Violation]:
    found = [
        Violation(
            HOLD_PAST_EXPIRY,
            hold_id,
            f"still open, expired at {format_timestamp(expires_at)}",
        )
        for hold_id, expires_at in await repo.holds_past(conn, hold_deadline(now, settings))
    ]
    found += [
        Violation(
            CAPTURED_OVER_AMOUNT,
            hold_id,
            f"captured {captured} of a hold of {amount} (minor units)",
        )
        for hold_id, amount, captured in await repo.holds_over_captured(conn)
    ]
    return found


async def _grant_violations(conn: AsyncConnection) -> list[Violation]:
    found = [
        Violation(
            ONE_GRANT_PER_PAYMENT,
            reference.removeprefix("stripe:"),
            f"{account} was credited {count} times for it",
        )
        for account, reference, _expiry, count in await repo.repeated_lots(conn, "purchase")
    ]
    for account, reference, expiry, count in await repo.repeated_lots(conn, "subscription"):
        plan = reference.removeprefix("plan:")
        end = "" if expiry is None else format_timestamp(expiry)
        found.append(
            Violation(
                ONE_GRANT_PER_PERIOD,
                f"{account}:{plan}:{end}",
                f"{account} was granted {plan}'s allowance of the period ending {end} "
                f"{count} times",
            )
        )
    return found


async def _outbox_violations(
    conn: AsyncConnection, now: datetime, settings: Settings
) -> list[Violation]:
    budget = outbox_budget(settings)
    return [
        Violation(
            OUTBOX_OVERDUE,
            message_id,
            f"pending since {format_timestamp(created_at)}, past its retry budget of "
            f"{budget.total_seconds():.0f} s",
        )
        for message_id, created_at in await repo.pending_since(conn, now - budget)
    ]


def outbox_budget(settings: Settings) -> timedelta:
    """How long a message may stay pending: its maximum age, then one last backoff (with
    its jitter) before the failure that makes it dead, and the delivery's own time."""
    webhooks = settings.webhooks
    return timedelta(
        seconds=webhooks.max_age_seconds
        + webhooks.max_backoff_seconds * 1.5
        + webhooks.timeout_seconds
        + GRACE_SECONDS
    )
