"""Group commit: concurrent postings of one process share a batch and its transaction.

A posting here is a transfer or a hold's opening (a reservation): both are entries of the
posting engine, written set-based, so a batch of many costs the statements of one.

While a batch commits, the postings that arrive queue up; the next free lane writes them
as one batch of the posting engine and commits once, leaving behind the postings of
accounts another lane's batch holds (they would only wait on its row locks): those go
with the next batch after it. So a hot account's postings gather in one lane's batches
while many accounts spread over all lanes. An idle lane takes a posting at once, so a
lone request waits for nobody. Each posting
keeps its own outcome (the engine refuses a posting alone, never its batch-mates), and
nobody is answered before the batch has committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncEngine

from creditsd import db
from creditsd.ledger import posting
from creditsd.ledger.models import Hold, Transfer

BATCH_SIZES = Histogram(
    "creditsd_group_commit_batch_size",
    "Postings per group-commit transaction in this process.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000),
)


Submitted = posting.Posting | posting.Reservation


@dataclass(frozen=True, slots=True)
class _Item:
    entry: Submitted
    future: asyncio.Future[Transfer | Hold]

    @property
    def account(self) -> str:
        """The account the entry spends from, which its batch holds."""
        if isinstance(self.entry, posting.Posting):
            return self.entry.debit_account_id
        return self.entry.hold.account_id


class GroupCommit:
    """Writes submitted postings in shared batches, at most ``lanes`` transactions at once."""

    def __init__(
        self,
        engine: AsyncEngine,
        policy: posting.Policy,
        clock: Callable[[], datetime],
        *,
        max_batch: int = 200,
        lanes: int = 2,
    ) -> None:
        self._engine = engine
        self._policy = policy
        self._clock = clock
        self._max_batch = max_batch
        self._lanes = lanes
        self._pending: list[_Item] = []
        self._busy: set[str] = set()  # accounts a running batch holds
        self._flushing = 0  # lanes running; counted here, not by their tasks, see _flush
        self._tasks: set[asyncio.Task[None]] = set()

    async def transfer(self, entry: posting.Posting) -> Transfer:
        """Write ``entry`` in a coming batch; its transfer once that batch has committed."""
        made = await self._submit(entry)
        assert isinstance(made, Transfer)
        return made

    async def reserve(self, entry: posting.Reservation) -> Hold:
        """Open ``entry``'s hold in a coming batch; the hold once that batch has committed."""
        opened = await self._submit(entry)
        assert isinstance(opened, Hold)
        return opened

    async def _submit(self, entry: Submitted) -> Transfer | Hold:
        item = _Item(entry, asyncio.get_running_loop().create_future())
        self._pending.append(item)
        if self._flushing < self._lanes:
            self._flushing += 1
            task = asyncio.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await item.future

    async def _flush(self) -> None:
        # A lane stops counting the moment it finds nothing to take, with no await in
        # between: a posting submitted after that starts a new lane, and one left behind
        # for a busy account is taken by the lane that holds the account once it is done.
        try:
            while batch := self._take():
                accounts = {item.account for item in batch}
                try:
                    await self._run(batch)
                finally:
                    self._busy -= accounts
        finally:
            self._flushing -= 1

    def _take(self) -> list[_Item]:
        """Up to ``max_batch`` pending postings, none of an account another batch holds."""
        batch: list[_Item] = []
        left: list[_Item] = []
        for item in self._pending:
            free = item.account not in self._busy
            (batch if free and len(batch) < self._max_batch else left).append(item)
        self._pending = left
        self._busy |= {item.account for item in batch}
        return batch

    async def _run(self, batch: list[_Item]) -> None:
        BATCH_SIZES.observe(len(batch))
        outcomes: list[posting.Outcome | Exception]
        try:
            outcomes = list(await self._write([item.entry for item in batch]))
        except Exception as error:
            if len(batch) == 1:
                outcomes = [error]
            else:  # an unexpected failure must not sink the batch-mates: each goes alone
                outcomes = [await self._alone(item.entry) for item in batch]
        for item, outcome in zip(batch, outcomes, strict=True):
            if item.future.done():  # the caller gave up waiting
                continue
            if isinstance(outcome, Transfer | Hold):
                item.future.set_result(outcome)
            else:
                assert isinstance(outcome, BaseException)
                item.future.set_exception(outcome)

    async def _write(self, entries: list[Submitted]) -> list[posting.Outcome]:
        return await db.run(
            self._engine, lambda conn: posting.post(conn, entries, self._policy, self._clock())
        )

    async def _alone(self, entry: Submitted) -> posting.Outcome | Exception:
        try:
            (outcome,) = await self._write([entry])
        except Exception as error:
            return error
        return outcome
