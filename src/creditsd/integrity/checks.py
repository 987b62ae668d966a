"""The invariants, each checked against the database as it is.

:func:`find_violations` checks everything. A scheduled run checks less where it safely can
(:func:`check`): the accounts that changed since the previous run, plus every account when
a ledger-wide total disagrees (a drift anywhere shows in a total: stored ``held`` summed
against the open holds, each balance, or what its lots past expiry keep when more, against
the lots, the stored balances plus the derived system balances against zero); the chain
is re-derived only when its count and sum disagree, or a full pass is due
(:mod:`creditsd.integrity.checkpoints`).
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
from creditsd.kit.jsonio import format_timestamp
from creditsd.ledger import repository as ledger_repo
from creditsd.ledger import verification as ledger_verification

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
    if accounts is not None and not await _totals_agree(conn, now):
        accounts = None
    found = await _account_violations(conn, accounts, now)
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


async def _totals_agree(conn: AsyncConnection, now: datetime) -> bool:
    held, reserved, backed = await repo.customer_totals(conn, now)
    return (
        held == reserved
        and backed == await repo.lot_total(conn)
        and await ledger_verification.ledger_total(conn) == 0
    )


async def _account_ids(conn: AsyncConnection) -> list[list[str]]:
    pages: list[list[str]] = []
    after: str | None = None
    while page := await ledger_repo.customer_ids(conn, after, ACCOUNT_PAGE):
        pages.append(page)
        after = page[-1]
    return pages


async def _account_violations(
    conn: AsyncConnection, account_ids: Iterable[str] | None, now: datetime
) -> list[Violation]:
    if account_ids is None:
        pages = await _account_ids(conn)
    else:
        wanted = sorted(account_ids)
        pages = [wanted[i : i + ACCOUNT_PAGE] for i in range(0, len(wanted), ACCOUNT_PAGE)]
    found: list[Violation] = []
    for page in pages:
        lots = await repo.lot_figures(conn, page, now)
        for v in await ledger_verification.verify_accounts(conn, page):
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
            # Against the figures the transfers and open holds make, so that a drifted
            # stored figure is one drift, not two.
            remaining, kept = lots.get(v.account_id, (0, 0))
            if not _lots_match(remaining, kept, v.calculated_balance, v.calculated_held):
                beside = (
                    f", lots past their expiry keep {kept} of it for holds reserving "
                    f"{v.calculated_held}"
                    if kept
                    else ""
                )
                found.append(
                    Violation(
                        LOTS_MATCH_BALANCE,
                        v.account_id,
                        f"its lots hold {remaining}{beside}, its transfers make a balance "
                        f"of {v.calculated_balance} (minor units)",
                    )
                )
    return found


def _lots_match(remaining: int, kept: int, balance: int, held: int) -> bool:
    """Whether an account's lots agree with its balance: what they hold is the balance, or
    what its lots past expiry keep when that is more; and the balance is below those only
    while they keep no more than the open holds reserve.

    Lots past expiry lapse at the account's next write, all but what its open holds
    reserve; only a capture spends what they keep (every other debit goes below them:
    :mod:`creditsd.ledger.posting`), and the rest lapses once the holds settle. Until
    that write the lots just past expiry are still in the balance."""
    return remaining == max(balance, kept) and (balance >= kept or kept <= held)


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
            f"captured {captured} of a hold of {amount}, {before} of it before its final "
            "capture (minor units)",
        )
        for hold_id, amount, captured, before in await repo.holds_over_captured(conn)
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
