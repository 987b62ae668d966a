"""``GET /metrics``: this process's counters and histograms, and figures read at scrape time.

The counters (requests, charges, refusals, group-commit batches) and Python's process
collectors count this process only. The outbox figures are read from the database when
the scrape is made, so every process shows the same ones; the pool's from this process's
engine. A database that does not answer leaves the outbox figures out of that scrape
rather than failing it, so the process's own figures stay visible during an outage.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Depends
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import QueuePool
from starlette.responses import Response

from creditsd import db
from creditsd.api.auth import LedgerDep, require
from creditsd.api.errors import error_responses
from creditsd.errors import Unavailable
from creditsd.inprocess import Ledger
from creditsd.webhooks import repository as webhook_repo
from creditsd.webhooks.models import Backlog

log = logging.getLogger("creditsd.api")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus' text format


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one scrape reads: the pool (None when it is not a queue pool) and the outbox
    (None when the database did not answer)."""

    pool_size: int | None
    pool_in_use: int | None
    backlog: Backlog | None
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


async def snapshot(ledger: Ledger) -> Snapshot:
    """The pool as it is now (before this scrape takes a connection), then the outbox."""
    pool = ledger.engine.pool
    queue = pool if isinstance(pool, QueuePool) else None
    size, in_use = (queue.size(), queue.checkedout()) if queue else (None, None)
    try:
        backlog = await db.run(ledger.engine, webhook_repo.backlog, readonly=True)
    except (DBAPIError, OSError, Unavailable) as exc:
        log.warning(
            "metrics without the outbox: the database did not answer (%s)", type(exc).__name__
        )
        backlog = None
    return Snapshot(size, in_use, backlog, ledger.now())


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
        """Prometheus metrics of this process, and the outbox's backlog."""
        return Response(exposition(await snapshot(ledger)), media_type=CONTENT_TYPE)

    return routes
