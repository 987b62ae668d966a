"""Group commit: concurrent writes of one process share a database transaction.

A hot account serializes its writers on one row lock, and each commit waits for the disk.
While one batch commits, the writes that arrive queue up; the next transaction runs them
all and commits once. Each write keeps its own outcome: the ledger's writes leave nothing
behind when they fail (see ``guarded_write``), so a refused charge does not disturb the
others in its batch. Nobody is answered before the batch has committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from creditsd import db
from creditsd.errors import CreditsError

Work = Callable[[AsyncConnection, datetime], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class _Item:
    work: Work
    alone: Callable[[], Awaitable[Any]]
    order: str
    future: asyncio.Future[Any]


@dataclass(frozen=True, slots=True)
class _Failed:
    error: CreditsError


class GroupCommit:
    """Runs submitted writes in shared transactions, at most ``lanes`` at a time."""

    def __init__(
        self,
        engine: AsyncEngine,
        clock: Callable[[], datetime],
        *,
        max_batch: int = 100,
        lanes: int = 1,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._max_batch = max_batch
        self._lanes = lanes
        self._pending: list[_Item] = []
        self._flushing = 0  # flushers running; counted here, not by their tasks, see _flush
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, work: Work, *, alone: Callable[[], Awaitable[Any]], order: str) -> Any:
        """Run ``work`` in the next batch; ``order`` (an account id) sets the lock order.

        A batch of one runs ``alone`` instead: the write's own fastest way, so group commit
        costs nothing while there is no crowd to group.
        """
        item = _Item(work, alone, order, asyncio.get_running_loop().create_future())
        self._pending.append(item)
        if self._flushing < self._lanes:
            self._flushing += 1
            task = asyncio.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await item.future

    async def _flush(self) -> None:
        # A flusher stops counting the moment it finds nothing pending, with no await in
        # between: a write submitted after that starts a new flusher and is never stranded.
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._run(batch)
        finally:
            self._flushing -= 1

    async def _run(self, batch: list[_Item]) -> None:
        # One lock order for every batch, so two batches never wait on each other in a cycle.
        batch.sort(key=lambda item: item.order)
        if len(batch) == 1:
            outcomes = [await self._alone(batch[0])]
        else:
            try:
                outcomes = await db.run(self._engine, lambda conn: self._apply(conn, batch))
            except Exception:
                # An unexpected failure must not sink the batch-mates: each runs alone.
                outcomes = [await self._alone(item) for item in batch]
        for item, outcome in zip(batch, outcomes, strict=True):
            if item.future.done():  # the caller gave up waiting
                continue
            if isinstance(outcome, _Failed):
                item.future.set_exception(outcome.error)
            elif isinstance(outcome, BaseException):
                item.future.set_exception(outcome)
            else:
                item.future.set_result(outcome)

    async def _apply(self, conn: AsyncConnection, batch: list[_Item]) -> list[Any]:
        now = self._clock()
        outcomes: list[Any] = []
        for item in batch:
            try:
                outcomes.append(await item.work(conn, now))
            except CreditsError as error:
                outcomes.append(_Failed(error))
        return outcomes

    @staticmethod
    async def _alone(item: _Item) -> Any:
        try:
            return await item.alone()
        except CreditsError as error:
            return _Failed(error)
        except Exception as error:
            return error  # handed to the waiting caller
