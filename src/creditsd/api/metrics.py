"""``GET /metrics``: this process's counters and histograms, and figures read at scrape time.

The counters (requests, charges, refusals, group-commit batches) and Python's process
collectors count this process only. The outbox and integrity figures (drifts found and
open, holds overdue, the last reconciliation) are read from the database when the scrape
is made, so every process shows the same ones; the pool's from this process's engine. A
database that does not answer leaves those figures out of that scrape rather than failing
it, so the process's own figures stay visible during an outage.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Depends
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import QueuePool
from starlette.responses import Response

from creditsd.api.auth import LedgerDep, require
from creditsd.api.errors import error_responses
from creditsd.inprocess import Ledger
from creditsd.integrity import INVARIANTS
from creditsd.integrity import service as integrity
from creditsd.integrity.models import Health
from creditsd.kit.errors import Unavailable
from creditsd.webhooks import repository as webhook_repo
from creditsd.webhooks.models import Backlog

log = logging.getLogger("creditsd.api")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus' text format


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one scrape reads: the pool (None when it is not a queue pool), the outbox and
    the integrity figures (None when the database did not answer)."""

    pool_size: int | None
    pool_in_use: int | None
    backlog: Backlog | None
    health: Health | None
    now: datetime


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        found = self._snapshot
        if found.pool_size is not None and found.pool_in_use is not None:
            yield GaugeMetricFamily(
                "creditsd_db_pool_size", "Database connections the pool keeps.", found.pool_size
            )
            yield GaugeMetricFamily(
                "creditsd_db_pool_connections_in_use",
                "Database connections checked out of this process's pool as the scrape began.",
                found.pool_in_use,
            )
        backlog = found.backlog
        if backlog is None:
            return
        messages = GaugeMetricFamily(
            "creditsd_outbox_messages",
            "Outbox messages waiting for delivery (pending) or given up on (dead), all "
            "processes together.",
            labels=["status"],
        )
        messages.add_metric(["pending"], backlog.pending)
        messages.add_metric(["dead"], backlog.dead)
        yield messages
        oldest = backlog.oldest_pending_at
        yield GaugeMetricFamily(
            "creditsd_outbox_oldest_pending_age_seconds",
            "Age of the oldest pending outbox message; 0 when none is pending.",
            0 if oldest is None else max(0.0, (found.now - oldest).total_seconds()),
        )
        if found.health is not None:
            yield from _integrity(found.health)


def _integrity(health: Health) -> Iterator[Metric]:
    """Drifts found and open per invariant (every invariant shown, 0 when none), holds
    overdue, and the last successful reconciliation."""
    found = CounterMetricFamily(
        "creditsd_invariant_violations",
        "Drifts reconciliation found, by invariant, all processes together (each counted "
        "once, however many runs see it).",
        labels=["invariant"],
    )
    still_open = GaugeMetricFamily(
        "creditsd_invariant_drifts_open",
        "Drifts found and not yet gone or repaired, by invariant.",
        labels=["invariant"],
    )
    for invariant in INVARIANTS:
        found.add_metric([invariant], health.found.get(invariant, 0))
        still_open.add_metric([invariant], health.open.get(invariant, 0))
    yield found
    yield still_open
    yield GaugeMetricFamily(
        "creditsd_holds_overdue",
        "Open holds past their expiry that the sweep should have closed by now.",
        health.holds_overdue,
    )
    job = health.job
    if job.last_success_at is not None and job.last_duration_ms is not None:
        yield GaugeMetricFamily(
            "creditsd_reconcile_last_success_timestamp_seconds",
            "When the last successful reconciliation began (Unix time).",
            job.last_success_at.timestamp(),
        )
        yield GaugeMetricFamily(
            "creditsd_reconcile_duration_seconds",
            "How long the last successful reconciliation took.",
            job.last_duration_ms / 1000,
        )


async def snapshot(ledger: Ledger) -> Snapshot:
    """The pool as it is now (before this scrape takes a connection), then the outbox."""
    pool = ledger.engine.pool
    queue = pool if isinstance(pool, QueuePool) else None
    size, in_use = (queue.size(), queue.checkedout()) if queue else (None, None)
    now = ledger.now()

    async def read(conn: AsyncConnection, _now: datetime) -> tuple[Backlog, Health]:
        return (
            await webhook_repo.backlog(conn),
            await integrity.health(conn, now, ledger.settings),
        )

    try:
        backlog, health = await ledger.database.read(read)
    except (DBAPIError, OSError, Unavailable) as exc:
        log.warning(
            "metrics without the database's figures: the database did not answer (%s)",
            type(exc).__name__,
        )
        return Snapshot(size, in_use, None, None, now)
    return Snapshot(size, in_use, backlog, health, now)


def exposition(found: Snapshot) -> bytes:
    """This process's metrics and the scrape's snapshot, in Prometheus' text format."""
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_SnapshotCollector(found))
    return generate_latest(REGISTRY) + generate_latest(scrape)


def router(access: str) -> APIRouter:
    """``GET /metrics`` for ``[server] metrics``: ``open`` to anyone, ``key`` for any API
    key (a read key is enough), ``off`` not served at all."""
    routes = APIRouter(tags=["health"])
    if access == "off":
        return routes
    needs_key = access == "key"

    @routes.get(
        "/metrics",
        response_class=Response,
        dependencies=[Depends(require("read"))] if needs_key else [],
        responses={
            200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus' text format"},
            **(error_responses() if needs_key else {}),
        },
    )
    async def metrics(ledger: LedgerDep) -> Response:
        """Prometheus metrics of this process, the outbox's backlog and the ledger's
        integrity."""
        return Response(exposition(await snapshot(ledger)), media_type=CONTENT_TYPE)

    return routes
