"""Every query of reconciliation: the figures it compares, its drifts, checkpoints and lease."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.integrity.models import Checkpoint, Drift, JobState
from creditsd.kit.db import is_sqlite
from creditsd.tables import (
    accounts,
    holds,
    integrity_checkpoints,
    integrity_drifts,
    lots,
    outbox,
    scheduled_jobs,
    transfer_digests,
    transfers,
)

PAGE = 1000
RECONCILE = "reconcile"  # the scheduled job's row

_A, _H, _L, _T = accounts.c, holds.c, lots.c, transfers.c
_C, _D, _G, _J = integrity_checkpoints.c, integrity_drifts.c, transfer_digests.c, scheduled_jobs.c


# The figures compared


async def customer_totals(conn: AsyncConnection, now: datetime) -> tuple[int, int, int]:
    """Summed over customer accounts: stored held, what its open holds reserve, and what
    the lots should hold (see :func:`lot_figures`): the stored balance, or what its lots
    past expiry keep when that is more."""
    past = (
        select(_L.account_id, func.sum(_L.remaining).label("kept"))
        .where(_L.remaining > 0, _L.expires_at <= now)
        .group_by(_L.account_id)
        .subquery()
    )
    kept = func.coalesce(past.c.kept, 0)
    backed = case((kept > _A.balance, kept), else_=_A.balance)
    held, balances = (
        await conn.execute(
            select(func.coalesce(func.sum(_A.held), 0), func.coalesce(func.sum(backed), 0))
            .select_from(accounts.outerjoin(past, past.c.account_id == _A.id))
            .where(_A.kind == "customer")
        )
    ).one()
    reserved = (
        await conn.execute(
            select(func.coalesce(func.sum(_H.amount - _H.captured), 0)).where(_H.status == "open")
        )
    ).scalar_one()
    return int(held), int(reserved), int(balances)


async def lot_total(conn: AsyncConnection) -> int:
    """What every live lot has left."""
    query = select(func.coalesce(func.sum(_L.remaining), 0)).where(_L.remaining > 0)
    return int((await conn.execute(query)).scalar_one())


async def lot_figures(
    conn: AsyncConnection, account_ids: list[str], now: datetime
) -> dict[str, tuple[int, int]]:
    """What the lots of each account given have left, and how much of it is in lots past
    their expiry at ``now`` (accounts without lots left out)."""
    past = case((_L.expires_at <= now, _L.remaining), else_=0)
    rows = await conn.execute(
        select(_L.account_id, func.sum(_L.remaining), func.sum(past))
        .where(_L.account_id.in_(account_ids), _L.remaining > 0)
        .group_by(_L.account_id)
    )
    return {account_id: (int(left), int(kept)) for account_id, left, kept in rows}


async def accounts_changed_since(conn: AsyncConnection, since: datetime) -> list[str]:
    """Customer accounts a transfer created since ``since`` touched."""
    sides = (
        select(_T.debit_account_id.label("id"))
        .where(_T.created_at >= since)
        .union(select(_T.credit_account_id.label("id")).where(_T.created_at >= since))
    )
    return sorted(
        account_id
        for account_id in (await conn.execute(sides)).scalars()
        if not account_id.startswith("@")
    )


async def holds_past(conn: AsyncConnection, moment: datetime) -> list[tuple[str, datetime]]:
    """Open holds that expired before ``moment``: ``(id, expires_at)``."""
    rows = await conn.execute(
        select(_H.id, _H.expires_at)
        .where(_H.status == "open", _H.expires_at < moment)
        .order_by(_H.expires_at, _H.id)
    )
    return [(hold_id, expires_at) for hold_id, expires_at in rows]


async def count_holds_past(conn: AsyncConnection, moment: datetime) -> int:
    """How many open holds expired before ``moment``."""
    query = select(func.count()).where(_H.status == "open", _H.expires_at < moment)
    return int((await conn.execute(query)).scalar_one())


async def holds_over_captured(conn: AsyncConnection) -> list[tuple[str, int, int, int]]:
    """Holds whose captures took more than they reserved before the final capture (all of
    them, for a hold no final capture settled): ``(id, amount, captured, before final)``."""
    final = (
        select(_T.amount)
        .where(_T.hold_id == _H.id, _T.kind == "capture")
        .order_by(_T.created_at.desc(), _T.id.desc())
        .limit(1)
        .correlate(holds)
        .scalar_subquery()
    )
    before = _H.captured - case((_H.status == "captured", func.coalesce(final, 0)), else_=0)
    rows = await conn.execute(
        select(_H.id, _H.amount, _H.captured, before)
        .where(_H.captured > _H.amount, before > _H.amount)
        .order_by(_H.id)
    )
    return [
        (hold_id, int(amount), int(captured), int(early))
        for hold_id, amount, captured, early in rows
    ]


async def repeated_lots(
    conn: AsyncConnection, source: str
) -> list[tuple[str, str, datetime | None, int]]:
    """Lots of one source that grants filled and that share an account, a reference and an
    expiry (a payment's or a period's): ``(account, reference, expires_at, how many)``.

    A reversal (a won dispute's) puts credits back into a lot of its payment's reference
    and is no second grant."""
    rows = await conn.execute(
        select(_L.account_id, _L.reference, _L.expires_at, func.count())
        .select_from(lots.outerjoin(transfers, _T.id == _L.transfer_id))
        .where(
            _L.source == source,
            _L.reference.is_not(None),
            func.coalesce(_T.kind, "") != "reversal",
        )
        .group_by(_L.account_id, _L.reference, _L.expires_at)
        .having(func.count() > 1)
        .order_by(_L.account_id, _L.reference, _L.expires_at)
    )
    return [
        (account, reference, expires, int(count)) for account, reference, expires, count in rows
    ]


async def pending_since(conn: AsyncConnection, moment: datetime) -> list[tuple[str, datetime]]:
    """Outbox messages still pending that were written before ``moment``."""
    rows = await conn.execute(
        select(outbox.c.message_id, outbox.c.created_at)
        .where(outbox.c.status == "pending", outbox.c.created_at < moment)
        .order_by(outbox.c.id)
    )
    return [(message_id, created_at) for message_id, created_at in rows]


# The checkpoint chain


def _checkpoint(row: Any) -> Checkpoint:
    return Checkpoint(
        row.number, row.version, row.until, int(row.transfers), int(row.total), row.digest
    )


async def last_checkpoint(conn: AsyncConnection) -> Checkpoint | None:
    """The chain's head."""
    row = (
        await conn.execute(select(integrity_checkpoints).order_by(_C.number.desc()).limit(1))
    ).first()
    return None if row is None else _checkpoint(row)


async def checkpoints(conn: AsyncConnection) -> list[Checkpoint]:
    """The whole chain, oldest first."""
    rows = await conn.execute(select(integrity_checkpoints).order_by(_C.number))
    return [_checkpoint(row) for row in rows]


async def insert_checkpoint(conn: AsyncConnection, checkpoint: Checkpoint, now: datetime) -> None:
    """Add a link to the chain (the number's key refuses a second writer)."""
    await conn.execute(
        insert(integrity_checkpoints).values(
            number=checkpoint.number,
            version=checkpoint.version,
            until=checkpoint.until,
            transfers=checkpoint.transfers,
            total=checkpoint.total,
            digest=checkpoint.digest,
            created_at=now,
        )
    )


async def insert_digests(
    conn: AsyncConnection, checkpoint: int, digests: list[tuple[str, str]]
) -> None:
    """Keep each transfer's digest beside its checkpoint."""
    if digests:
        await conn.execute(
            insert(transfer_digests),
            [
                {"transfer_id": transfer_id, "checkpoint": checkpoint, "digest": digest}
                for transfer_id, digest in digests
            ],
        )


async def digests_of(conn: AsyncConnection, checkpoint: int) -> dict[str, str]:
    """The digests kept for one checkpoint's transfers, by transfer id."""
    rows = await conn.execute(select(_G.transfer_id, _G.digest).where(_G.checkpoint == checkpoint))
    return {str(transfer_id): str(digest) for transfer_id, digest in rows}


async def transfer_rows(
    conn: AsyncConnection,
    since: datetime | None,
    until: datetime,
    after: tuple[datetime, str] | None,
) -> list[Any]:
    """A page of the transfers created in ``[since, until)``, in ``(created_at, id)`` order,
    after the given position."""
    query = select(transfers).where(_T.created_at < until)
    if since is not None:
        query = query.where(_T.created_at >= since)
    if after is not None:
        moment, transfer_id = after
        # The range first, so the planner walks the created_at index from ``moment``.
        query = query.where(
            _T.created_at >= moment, or_(_T.created_at > moment, _T.id > transfer_id)
        )
    return list(await conn.execute(query.order_by(_T.created_at, _T.id).limit(PAGE)))


async def chained_totals(conn: AsyncConnection) -> tuple[int, int]:
    """How many transfers the chain covers, and their amounts summed."""
    count, total = (
        await conn.execute(
            select(func.coalesce(func.sum(_C.transfers), 0), func.coalesce(func.sum(_C.total), 0))
        )
    ).one()
    return int(count), int(total)


async def transfer_totals(conn: AsyncConnection, until: datetime) -> tuple[int, int]:
    """How many transfers were created before ``until``, and their amounts summed."""
    count, total = (
        await conn.execute(
            select(func.count(), func.coalesce(func.sum(_T.amount), 0)).where(_T.created_at < until)
        )
    ).one()
    return int(count), int(total)


# Drifts


def _drift(row: Any) -> Drift:
    return Drift(row.id, row.invariant, row.subject, row.detail, row.detected_at, row.resolved_at)


async def open_drifts(conn: AsyncConnection) -> list[Drift]:
    """Drifts found and not yet gone, oldest first."""
    rows = await conn.execute(
        select(integrity_drifts).where(_D.resolved_at.is_(None)).order_by(_D.detected_at, _D.id)
    )
    return [_drift(row) for row in rows]


async def insert_drift(conn: AsyncConnection, drift: Drift) -> None:
    """Record a drift just found."""
    await conn.execute(
        insert(integrity_drifts).values(
            id=drift.id,
            invariant=drift.invariant,
            subject=drift.subject,
            detail=drift.detail,
            detected_at=drift.detected_at,
        )
    )


async def resolve_drifts(conn: AsyncConnection, drift_ids: Iterable[str], now: datetime) -> None:
    """Mark drifts gone."""
    wanted = list(drift_ids)
    if wanted:
        await conn.execute(
            update(integrity_drifts).where(_D.id.in_(wanted)).values(resolved_at=now)
        )


async def drift_counts(conn: AsyncConnection) -> tuple[dict[str, int], dict[str, int]]:
    """Per invariant: drifts ever found, and drifts open."""
    rows = await conn.execute(
        select(
            _D.invariant,
            func.count(),
            func.count().filter(_D.resolved_at.is_(None)),
        ).group_by(_D.invariant)
    )
    found: dict[str, int] = {}
    still: dict[str, int] = {}
    for invariant, count, open_count in rows:
        found[invariant], still[invariant] = int(count), int(open_count)
    return found, still


# The scheduled job


async def take_lease(conn: AsyncConnection, owner: str, now: datetime, until: datetime) -> bool:
    """Lease the reconciliation to ``owner`` unless another holds it; whether it did."""
    taken = await conn.execute(
        update(scheduled_jobs)
        .where(
            _J.name == RECONCILE,
            or_(_J.lease_until.is_(None), _J.lease_until <= now, _J.lease_owner == owner),
        )
        .values(lease_owner=owner, lease_until=until)
    )
    return taken.rowcount == 1


async def end_lease(
    conn: AsyncConnection,
    owner: str,
    *,
    succeeded_at: datetime | None,
    duration_ms: int,
    full: bool,
) -> None:
    """Give the lease back, noting a successful run."""
    values: dict[str, Any] = {"lease_owner": None, "lease_until": None}
    if succeeded_at is not None:
        values |= {"last_success_at": succeeded_at, "last_duration_ms": duration_ms}
        if full:
            values["last_full_at"] = succeeded_at
    await conn.execute(
        update(scheduled_jobs).where(_J.name == RECONCILE, _J.lease_owner == owner).values(values)
    )


async def job_row(conn: AsyncConnection) -> Any:
    """The reconciliation job's row."""
    return (await conn.execute(select(scheduled_jobs).where(_J.name == RECONCILE))).one()


async def job_state(conn: AsyncConnection) -> JobState:
    """How the last successful run went."""
    row = await job_row(conn)
    return JobState(row.last_success_at, row.last_duration_ms)


async def read_one_snapshot(conn: AsyncConnection) -> None:
    """Make the rest of the transaction read one snapshot (PostgreSQL's REPEATABLE READ;
    a SQLite transaction already does), so figures read by different statements agree
    while writers commit. It must be the transaction's first statement."""
    if not is_sqlite(conn.dialect):
        await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
