"""The scheduled reconciliation: one run checks the invariants and records what drifted.

A run (the worker's ``reconcile_once``, each step its own transaction) chains the
transfers settled since the last checkpoint, one link per transaction; plans what to
check (incrementally, see :mod:`creditsd.integrity.checks`; everything every
``[reconcile] full_pass_seconds``); re-derives the chain link by link when it must; then
checks the rest in one snapshot. Each drift is recorded once in the database, with its
log line, its ``ledger.drift_detected`` webhook and its audit record in the same
transaction; a drift a later run no longer finds is closed, and one that comes back after
that is a new drift. Repairs stay an operator's act (``creditsd reconcile --fix``); a
rebuild closes the drifts of the account it rebuilt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.audit import repository as audit
from creditsd.config import Settings
from creditsd.integrity import checkpoints
from creditsd.integrity import repository as repo
from creditsd.integrity.checks import chain_violations, check, hold_deadline
from creditsd.integrity.models import (
    ACCOUNT_INVARIANTS,
    CHECKPOINT_CHAIN,
    ChainBreak,
    Checkpoint,
    Drift,
    Health,
    Violation,
)
from creditsd.kit import ids
from creditsd.kit.jsonio import format_timestamp
from creditsd.ledger import statements
from creditsd.webhooks.outbox import Outbox

log = logging.getLogger("creditsd.integrity")

ACTOR = "reconcile"  # the audit log's actor for what a run records
LEASE_SECONDS = 900  # a run holds the job this long at most; a crashed one frees it then


@dataclass(frozen=True, slots=True)
class Plan:
    """What a run checks: the accounts (None: every one) and whether the chain is
    re-derived link by link (else only its count and sum are compared)."""

    full: bool
    accounts: frozenset[str] | None
    whole_chain: bool


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """What one run did: the checkpoints it wrote, every violation found, the drifts new
    and closed, and whether it checked everything."""

    checkpoints: list[Checkpoint]
    violations: list[Violation]
    found: list[Drift]
    resolved: list[Drift]
    full: bool


async def take_lease(conn: AsyncConnection, owner: str, now: datetime) -> bool:
    """Take the job for ``owner`` unless another process runs it; whether it did."""
    return await repo.take_lease(conn, owner, now, now + timedelta(seconds=LEASE_SECONDS))


async def end_lease(
    conn: AsyncConnection,
    owner: str,
    *,
    finished: Reconciliation | None,
    began: datetime,
    duration_ms: int,
) -> None:
    """Give the job back, noting the run when it succeeded: the moment it began, before
    its snapshot, so the next run looks at every transfer this one could not see."""
    await repo.end_lease(
        conn,
        owner,
        succeeded_at=None if finished is None else began,
        duration_ms=duration_ms,
        full=finished is not None and finished.full,
    )


async def plan(conn: AsyncConnection, now: datetime, settings: Settings, *, full: bool) -> Plan:
    """What the run due now checks: everything on a full pass (``full``, the first run,
    or every ``full_pass_seconds``); else the accounts transfers touched since the last
    run and those with open drifts, and the whole chain only when its count and sum
    disagree or it has an open drift."""
    job = await repo.job_row(conn)
    every = timedelta(seconds=settings.reconcile.full_pass_seconds)
    if full or job.last_full_at is None or now - job.last_full_at >= every:
        return Plan(True, None, True)
    # Transfers may commit up to the chain's settling time after their created_at.
    since = job.last_success_at - timedelta(seconds=checkpoints.SETTLE_SECONDS)
    still_open = await repo.open_drifts(conn)
    drifted = [d.subject for d in still_open if d.invariant in ACCOUNT_INVARIANTS]
    chain_drifted = any(d.invariant == CHECKPOINT_CHAIN for d in still_open)
    return Plan(
        False,
        frozenset(await repo.accounts_changed_since(conn, since) + drifted),
        chain_drifted or not await checkpoints.totals_match(conn),
    )


async def reconcile(
    conn: AsyncConnection,
    now: datetime,
    settings: Settings,
    outbox: Outbox,
    *,
    planned: Plan,
    chain_break: ChainBreak | None,
    written: list[Checkpoint],
) -> Reconciliation:
    """Check what ``planned`` says in one snapshot (the caller's transaction, which must
    not have read yet), with the chain's break found link by link before (None: whole or
    not re-derived), and record what drifted and what is gone."""
    await repo.read_one_snapshot(conn)
    violations = await check(conn, now, settings, planned.accounts)
    violations = sorted(violations + chain_violations(chain_break))
    still_open = {(d.invariant, d.subject): d for d in await repo.open_drifts(conn)}
    found = []
    for violation in violations:
        if still_open.pop((violation.invariant, violation.subject), None) is None:
            found.append(await _record(conn, violation, now, outbox))
    resolved = list(still_open.values())  # the plan checked every open drift again: gone
    await repo.resolve_drifts(conn, (drift.id for drift in resolved), now)
    for drift in resolved:
        log.info("%s of %s is gone (drift %s)", drift.invariant, drift.subject, drift.id)
    return Reconciliation(written, violations, found, resolved, planned.full)


async def _record(
    conn: AsyncConnection, violation: Violation, now: datetime, outbox: Outbox
) -> Drift:
    """A drift found: its row, its log line, its webhook and its audit record."""
    drift = Drift(
        ids.new_id("drift"), violation.invariant, violation.subject, violation.detail, now, None
    )
    await repo.insert_drift(conn, drift)
    log.error(
        "invariant %s broken at %s: %s (drift %s)",
        drift.invariant,
        drift.subject,
        drift.detail,
        drift.id,
    )
    data = drift_view(drift)
    account = drift.subject if drift.invariant in ACCOUNT_INVARIANTS else None
    await statements.queue(
        conn, await outbox.after_event(conn, "ledger.drift_detected", account, data, now)
    )
    await audit.record(
        conn,
        actor=ACTOR,
        action="drift.detected",
        target=drift.subject,
        before=None,
        after=data,
        now=now,
    )
    return drift


def drift_view(drift: Drift) -> dict[str, str | None]:
    """A drift as webhooks and the audit log show it."""
    return {
        "drift_id": drift.id,
        "invariant": drift.invariant,
        "subject": drift.subject,
        "detail": drift.detail,
        "detected_at": format_timestamp(drift.detected_at),
    }


async def resolve_account_drifts(conn: AsyncConnection, account_id: str, now: datetime) -> None:
    """Close the open drifts of an account just rebuilt from its history."""
    await repo.resolve_drifts(
        conn,
        (
            drift.id
            for drift in await repo.open_drifts(conn)
            if drift.subject == account_id and drift.invariant in ACCOUNT_INVARIANTS
        ),
        now,
    )


async def health(conn: AsyncConnection, now: datetime, settings: Settings) -> Health:
    """The figures a metrics scrape shows, read from the database."""
    found, still_open = await repo.drift_counts(conn)
    overdue = await repo.count_holds_past(conn, hold_deadline(now, settings))
    return Health(found, still_open, overdue, await repo.job_state(conn))
