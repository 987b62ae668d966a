"""The scheduled reconciliation: one run checks the invariants and records what drifted.

A run chains the transfers settled since the last checkpoint, then checks the
invariants (incrementally, see :mod:`creditsd.integrity.checks`; everything every
``[reconcile] full_pass_seconds``), all in one snapshot. Each drift is recorded once in
the database, with its log line, its ``ledger.drift_detected`` webhook and its audit
record in the same transaction; a drift a later run no longer finds is closed, and one
that comes back after that is a new drift. Repairs stay an operator's act
(``creditsd reconcile --fix``); a rebuild closes the drifts of the account it rebuilt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd import ids
from creditsd.audit import repository as audit
from creditsd.config import Settings
from creditsd.integrity import checkpoints
from creditsd.integrity import repository as repo
from creditsd.integrity.checks import Scope, check, hold_deadline
from creditsd.integrity.models import (
    ACCOUNT_INVARIANTS,
    CHECKPOINT_CHAIN,
    ChainBreak,
    Checkpoint,
    Drift,
    Health,
    Violation,
)
from creditsd.jsonio import format_timestamp
from creditsd.ledger import statements
from creditsd.webhooks.outbox import Outbox

log = logging.getLogger("creditsd.integrity")

ACTOR = "reconcile"  # the audit log's actor for what a run records
LEASE_SECONDS = 900  # a run holds the job this long at most; a crashed one frees it then


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """What one run did: every violation found, the drifts new and closed, the checkpoint
    written (None when no transfer had settled since the last), and whether it checked
    everything."""

    violations: list[Violation]
    found: list[Drift]
    resolved: list[Drift]
    checkpoint: Checkpoint | None
    full: bool


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The checkpoint chain re-derived: where it broke (None: whole), its head, and how
    many transfers it covers."""

    broken: ChainBreak | None
    head: Checkpoint | None
    transfers: int


async def verify_chain(conn: AsyncConnection) -> ChainReport:
    """Re-derive every checkpoint from the stored transfers, in one snapshot."""
    await repo.read_one_snapshot(conn)
    broken = await checkpoints.first_break(conn)
    transfers, _total = await repo.chained_totals(conn)
    return ChainReport(broken, await repo.last_checkpoint(conn), transfers)


async def take_lease(conn: AsyncConnection, owner: str, now: datetime) -> bool:
    """Take the job for ``owner`` unless another process runs it; whether it did."""
    return await repo.take_lease(conn, owner, now, now + timedelta(seconds=LEASE_SECONDS))


async def end_lease(
    conn: AsyncConnection,
    owner: str,
    *,
    finished: Reconciliation | None,
    now: datetime,
    duration_ms: int,
) -> None:
    """Give the job back, noting the run when it succeeded."""
    await repo.end_lease(
        conn,
        owner,
        succeeded_at=None if finished is None else now,
        duration_ms=duration_ms,
        full=finished is not None and finished.full,
    )


async def reconcile(
    conn: AsyncConnection, now: datetime, settings: Settings, outbox: Outbox, *, full: bool = False
) -> Reconciliation:
    """One run, in the caller's transaction (which it makes read one snapshot)."""
    await repo.read_one_snapshot(conn)
    checkpoint = await checkpoints.write_checkpoint(conn, now)
    job = await repo.job_row(conn)
    still_open = {(d.invariant, d.subject): d for d in await repo.open_drifts(conn)}
    full = full or (
        job.last_full_at is None
        or now - job.last_full_at >= timedelta(seconds=settings.reconcile.full_pass_seconds)
    )
    scope = Scope()
    if not full:
        # Transfers may commit up to the chain's settling time after their created_at.
        since = job.last_success_at - timedelta(seconds=checkpoints.SETTLE_SECONDS)
        changed = await repo.accounts_changed_since(conn, since)
        drifted = [subject for invariant, subject in still_open if invariant in ACCOUNT_INVARIANTS]
        scope = Scope(
            accounts=frozenset(changed + drifted),
            whole_chain=any(invariant == CHECKPOINT_CHAIN for invariant, _ in still_open),
        )
    violations = await check(conn, now, settings, scope)
    found = []
    for violation in violations:
        if still_open.pop((violation.invariant, violation.subject), None) is None:
            found.append(await _record(conn, violation, now, outbox))
    resolved = list(still_open.values())  # every open drift was checked again: gone
    await repo.resolve_drifts(conn, (drift.id for drift in resolved), now)
    for drift in resolved:
        log.info("%s of %s is gone (drift %s)", drift.invariant, drift.subject, drift.id)
    return Reconciliation(violations, found, resolved, checkpoint, full)


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
    await statements.queue(conn, await outbox.after_drift(conn, data, account, now))
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
