"""The checkpoint chain: tamper evidence over the transfers.

Each checkpoint covers the transfers created in ``[previous until, until)``, in
``(created_at, id)`` order. A transfer's digest is the SHA-256 of a canonical, versioned
serialization of every column of its row (all of them immutable); the checkpoint's digest
is the SHA-256 of its version, its ``until``, the previous checkpoint's digest (64 zeros
for the first), each transfer's digest in order, and their count and sum. Each transfer's
digest is kept too (``transfer_digests``), so a link that no longer matches names the
first transfer to blame.

Transfers may commit out of ``created_at`` order (a transaction takes its clock reading
before it commits), so a checkpoint only covers transfers created at least
:data:`SETTLE_SECONDS` ago: far longer than any transaction may last (each is cut at its
longest wait, about 10 s), with room for clocks of different processes that disagree.

A checkpoint covers at most about :data:`LINK_TRANSFERS` transfers (it ends at the first
moment past that many, so the transfers of one moment share a checkpoint), so that writing
or re-deriving one fits in one short transaction however long the history.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.integrity import repository as repo
from creditsd.integrity.models import ChainBreak, Checkpoint
from creditsd.kit import jsonio

VERSION = 2  # the version new checkpoints are written in
SETTLE_SECONDS = 60
LINK_TRANSFERS = 10_000
GENESIS = "0" * 64
# The columns a transfer's digest covers, by version: a column added to ``transfers`` later
# joins a new version, so the digests of older checkpoints stay derivable.
_FIRST_FIELDS = (
    "id",
    "kind",
    "debit_account_id",
    "credit_account_id",
    "amount",
    "app",
    "idempotency_key",
    "fingerprint",
    "hold_id",
    "description",
    "metadata",
    "debit_balance_after",
    "debit_available_after",
    "credit_balance_after",
    "credit_available_after",
    "created_at",
    "pricing",
    "proxy_key_id",
)
TRANSFER_FIELDS = {1: _FIRST_FIELDS, 2: (*_FIRST_FIELDS, "member_id")}


def transfer_digest(row: Any, version: int) -> str:
    """The SHA-256 of a transfer row's canonical form in a checkpoint ``version``:
    ``["creditsd.transfer", 2, {"amount": 100, "created_at":
    "2026-12-07T10:00:00.000000Z", "id": "tr_…", …}]`` as sorted, compact JSON (timestamps
    in UTC with microseconds, amounts as integers)."""
    fields = {name: row._mapping[name] for name in TRANSFER_FIELDS[version]}
    text = jsonio.canonical(["creditsd.transfer", version, fields])
    return hashlib.sha256(text.encode()).hexdigest()


class _Link:
    """A checkpoint's digest, computed as its transfers stream by."""

    def __init__(self, previous: str, version: int) -> None:
        self._hash = hashlib.sha256(f"creditsd.checkpoint {version}\n{previous}\n".encode())
        self.transfers = 0
        self.total = 0

    def add(self, digest: str, amount: int) -> None:
        self._hash.update(f"{digest}\n".encode())
        self.transfers += 1
        self.total += amount

    def digest(self, until: datetime) -> str:
        closing = self._hash.copy()
        ending = f"{jsonio.format_timestamp(until)}\n{self.transfers} {self.total}\n"
        closing.update(ending.encode())
        return closing.hexdigest()


async def _rows(
    conn: AsyncConnection, since: datetime | None, until: datetime
) -> AsyncIterator[Any]:
    """The transfers of ``[since, until)`` in the chain's order, a page at a time."""
    after: tuple[datetime, str] | None = None
    while page := await repo.transfer_rows(conn, since, until, after):
        for row in page:
            yield row
        after = (page[-1].created_at, page[-1].id)


async def write_checkpoint(conn: AsyncConnection, now: datetime) -> Checkpoint | None:
    """Chain the next transfers settled since the last checkpoint (at most about
    :data:`LINK_TRANSFERS`: call again while it returns a full one); None when there are
    none."""
    head = await repo.last_checkpoint(conn)
    until = now - timedelta(seconds=SETTLE_SECONDS)
    since = head.until if head else None
    if since is not None and until <= since:
        return None
    number = head.number + 1 if head else 1
    link = _Link(head.digest if head else GENESIS, VERSION)
    digests: list[tuple[str, str]] = []
    last: datetime | None = None
    async for row in _rows(conn, since, until):
        if link.transfers >= LINK_TRANSFERS and row.created_at != last:
            until = row.created_at  # the rest is for the next checkpoint
            break
        digest = transfer_digest(row, VERSION)
        link.add(digest, row.amount)
        digests.append((row.id, digest))
        last = row.created_at
    if not link.transfers:
        return None
    await repo.insert_digests(conn, number, digests)
    checkpoint = Checkpoint(number, VERSION, until, link.transfers, link.total, link.digest(until))
    await repo.insert_checkpoint(conn, checkpoint, now)
    return checkpoint


async def check_link(
    conn: AsyncConnection, checkpoint: Checkpoint, previous: Checkpoint | None
) -> ChainBreak | None:
    """Re-derive one checkpoint from the stored transfers, after the one before it; where
    it no longer matches, or None."""
    kept = await repo.digests_of(conn, checkpoint.number)
    link = _Link(previous.digest if previous else GENESIS, checkpoint.version)
    number = checkpoint.number
    found: ChainBreak | None = None
    async for row in _rows(conn, previous.until if previous else None, checkpoint.until):
        digest = transfer_digest(row, checkpoint.version)
        link.add(digest, row.amount)
        stored = kept.pop(row.id, None)
        if found is None and stored != digest:
            detail = (
                f"transfer {row.id} was not there when checkpoint {number} was written"
                if stored is None
                else f"transfer {row.id} no longer matches checkpoint {number}"
            )
            found = ChainBreak(number, row.id, detail)
    if found is not None:
        return found
    if kept:
        missing = min(kept)
        return ChainBreak(
            number,
            missing,
            f"transfer {missing} of checkpoint {number} is gone "
            "(deleted, or its created_at changed)",
        )
    derived = (link.digest(checkpoint.until), link.transfers, link.total)
    if derived != (checkpoint.digest, checkpoint.transfers, checkpoint.total):
        return ChainBreak(number, None, f"checkpoint {number} no longer matches its transfers")
    return None


async def first_break(conn: AsyncConnection) -> ChainBreak | None:
    """Re-derive every checkpoint in the caller's transaction (a small ledger's; a long
    chain is checked one :func:`check_link` per transaction); the first break, or None."""
    previous: Checkpoint | None = None
    for checkpoint in await repo.checkpoints(conn):
        if (broken := await check_link(conn, checkpoint, previous)) is not None:
            return broken
        previous = checkpoint
    return None


async def totals_match(conn: AsyncConnection) -> bool:
    """Whether the checkpointed transfers still count and sum what the chain says: the
    cheap check each run makes (a full re-derivation follows when it fails)."""
    head = await repo.last_checkpoint(conn)
    if head is None:
        return True
    return await repo.chained_totals(conn) == await repo.transfer_totals(conn, head.until)
