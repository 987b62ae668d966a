"""Group commit: concurrent entries of one process share a batch and its transaction.

Charges and the holds' entries (an opening, a capture, a release, an extension) join; the
other writes (grants, usage batches, the integrations') take a transaction each. While a
batch commits, the entries that arrive queue up; the next free lane writes them as one
batch of the posting engine and commits once, leaving behind the entries of accounts
another lane's batch holds (they would only wait on its row locks): those go with the
next batch after it. So a hot account's entries gather in one lane's batches while many
accounts spread over all lanes. An idle lane takes an entry at once, so a lone request
waits for nobody; an entry nobody waits for (a proxied call's capture, once its client
has the answer) waits a moment for another to start a batch, so the capture of one call
and the hold of the next share a transaction. Each entry keeps its own outcome (the
engine refuses an entry alone, never its batch-mates), and nobody is answered before the
batch has committed.

A batch that fails on a fault (the database down, stalled, or a row locked past
``lock_timeout``) answers every member at once (503,
:class:`~creditsd.kit.errors.Unavailable` or the fault), and with them the entries still
queued that would meet the same fault: all of them when the whole database failed, those
of the batch's accounts when a row lock did. So nobody waits longer than the timeouts of
one transaction. The accounts of a batch a lock failed are then batched one account at a
time until one of their batches commits, so one locked row cannot sink the batches of
others again. A batch that fails for any other reason (a bug) reruns each member alone,
in parallel."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from prometheus_client import Histogram
from sqlalchemy.exc import DBAPIError, IntegrityError

from creditsd.kit import db
from creditsd.kit.errors import Unavailable
from creditsd.ledger import posting
from creditsd.ledger.commands import HoldCommand, Movement, OpenHold

BATCH_SIZES = Histogram(
    "creditsd_group_commit_batch_size",
    "Entries per group-commit transaction in this process.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000),
)

Submitted = Movement | OpenHold | HoldCommand
PATIENCE = 0.002  # seconds a patient entry waits for a batch to join before starting one
_LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL: a row stayed locked past lock_timeout


@dataclass(frozen=True, slots=True)
class _Item:
    entry: Submitted
    future: asyncio.Future[posting.EntryOutcome]

    @property
    def account(self) -> str:
        """What the entry's batch holds: the account it spends from or reserves on, or
        the hold it names (whose account is known only once the batch reads it)."""
        entry = self.entry
        if isinstance(entry, Movement):
            return entry.debit_account_id
        if isinstance(entry, OpenHold):
            return entry.account_id
        return entry.hold_id


class GroupCommit:
    """Writes submitted entries in shared batches, at most ``lanes`` transactions at once."""

    def __init__(
        self,
        database: db.Database,
        policy: posting.Policy,
        *,
        max_batch: int = 200,
        lanes: int = 2,
    ) -> None:
        self._database = database
        self._policy = policy
        self._max_batch = max_batch
        self._lanes = lanes
        self._pending: list[_Item] = []
        self._busy: set[str] = set()  # accounts a running batch holds
        self._suspect: set[str] = set()  # accounts whose batch a lock failed: batched alone
        self._flushing = 0  # lanes running; counted here, not by their tasks, see _flush
        self._waking: asyncio.TimerHandle | None = None  # starts a lane for patient entries
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, entry: Submitted, *, patient: bool = False) -> posting.EntryOutcome:
        """Write ``entry`` in a coming batch; its outcome once that batch has committed,
        its refusal raised. A ``patient`` entry (nobody is waiting for it: a call's
        settlement once its client has the answer) starts no batch of its own for up to
        :data:`PATIENCE` seconds, so it shares the next one another entry starts."""
        loop = asyncio.get_running_loop()
        item = _Item(entry, loop.create_future())
        self._pending.append(item)
        if not patient:
            self._start()
        elif self._waking is None:
            self._waking = loop.call_later(PATIENCE, self._wake)
        return await item.future

    def _start(self) -> None:
        """Start a lane, unless every lane is running (each takes what is pending)."""
        if self._flushing < self._lanes:
            self._flushing += 1
            task = asyncio.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _wake(self) -> None:
        self._waking = None
        if self._pending:
            self._start()

    async def _flush(self) -> None:
        # A lane stops counting the moment it finds nothing to take, with no await in
        # between: an entry submitted after that starts a new lane, and one left behind
        # for a busy account is taken by the lane that holds the account once it is done.
        try:
            while batch := self._take():
                accounts = {item.account for item in batch}
                try:
                    await self._run(batch, accounts)
                finally:
                    self._busy -= accounts
        finally:
            self._flushing -= 1

    def _take(self) -> list[_Item]:
        """Up to ``max_batch`` pending entries, none of an account another batch holds;
        an account under suspicion goes alone."""
        batch: list[_Item] = []
        left: list[_Item] = []
        alone: str | None = None
        for item in self._pending:
            account = item.account
            free = account not in self._busy and len(batch) < self._max_batch
            if free and account in self._suspect:
                free = not batch or alone == account
                alone = account if free else alone
            elif free:
                free = alone is None
            (batch if free else left).append(item)
        self._pending = left
        self._busy |= {item.account for item in batch}
        return batch

    async def _run(self, batch: list[_Item], accounts: set[str]) -> None:
        BATCH_SIZES.observe(len(batch))
        outcomes: list[posting.EntryOutcome | Exception]
        try:
            outcomes = list(await self._write([item.entry for item in batch]))
        except Exception as error:
            if len(batch) == 1 or _is_fault(error):
                outcomes = [error] * len(batch)
                self._fail_queued(error, accounts)
            else:  # an unexpected failure must not sink the batch-mates: each goes alone
                outcomes = list(
                    await asyncio.gather(*(self._write_apart(item.entry) for item in batch))
                )
        else:
            self._suspect -= accounts
        for item, outcome in zip(batch, outcomes, strict=True):
            _answer(item, outcome)

    def _fail_queued(self, fault: Exception, accounts: set[str]) -> None:
        """Answer the queued entries the fault would meet too: every one when the whole
        database failed, those of the batch's accounts when a row lock did (and batch
        those accounts alone from now on)."""
        if not _is_fault(fault):
            return
        if _row_locked(fault):
            if len(accounts) > 1:
                self._suspect |= accounts
            met = [item for item in self._pending if item.account in accounts]
        else:
            met = self._pending
        self._pending = [item for item in self._pending if item not in met]
        for item in met:
            _answer(item, fault)

    async def _write(self, entries: list[Submitted]) -> list[posting.EntryOutcome]:
        return await self._database.write(
            lambda conn, now: posting.post(conn, entries, self._policy, now)
        )

    async def _write_apart(self, entry: Submitted) -> posting.EntryOutcome | Exception:
        try:
            (outcome,) = await self._write([entry])
        except Exception as error:
            return error
        return outcome


def _answer(item: _Item, outcome: posting.EntryOutcome | Exception) -> None:
    if item.future.done():  # the caller gave up waiting
        return
    if isinstance(outcome, Exception):
        item.future.set_exception(outcome)
    else:
        item.future.set_result(outcome)


def _is_fault(error: Exception) -> bool:
    """Whether a failure is the database's (down, stalled, busy), not a batch's own."""
    if isinstance(error, IntegrityError):
        return False
    return isinstance(error, (Unavailable, *db.OUTAGES))


def _row_locked(error: Exception) -> bool:
    """Whether a fault was a PostgreSQL row lock outlasting ``lock_timeout`` (SQLite's one
    write lock is the whole database's)."""
    cause = error.__cause__ if isinstance(error, Unavailable) else error
    return isinstance(cause, DBAPIError) and (
        getattr(cause.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE
    )
