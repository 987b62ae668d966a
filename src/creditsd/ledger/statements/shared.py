"""What the posting engine's statements share on either database: the columns and fields a
batch reads and writes, the values that carry them (:class:`Wanted`, :class:`Found`,
:class:`Written`, …) and :class:`Statements`, their portable part in SQLAlchemy Core."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import Table, and_, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.kit import jsonio
from creditsd.ledger.limits import StoredControls
from creditsd.ledger.models import ExpiredHold, Hold, LotPart, Metadata, Transfer
from creditsd.tables import account_names, accounts, holds, lot_spends, lots, transfers

_A = accounts.c
_T = transfers.c
_H = holds.c
_L = lots.c
_S = lot_spends.c
# Written out, not bound: only a literal lets the planner use the partial indexes on live lots.
LIVE = _L.remaining > literal_column("0")

TRANSFER_COLUMNS = (
    _T.id,
    _T.kind,
    _T.debit_account_id,
    _T.credit_account_id,
    _T.amount,
    _T.app,
    _T.idempotency_key,
    _T.hold_id,
    _T.description,
    _T.metadata,
    _T.debit_balance_after,
    _T.debit_available_after,
    _T.credit_balance_after,
    _T.credit_available_after,
    _T.created_at,
    _T.pricing,
    _T.proxy_key_id,
    _T.member_id,
)
HOLD_COLUMNS = (
    _H.id,
    _H.account_id,
    _H.amount,
    _H.captured,
    _H.status,
    _H.expires_at,
    _H.app,
    _H.idempotency_key,
    _H.description,
    _H.metadata,
    _H.created_at,
    _H.updated_at,
    _H.pricing,
    _H.proxy_key_id,
    _H.member_id,
)
# The columns a batch writes, as both databases' statements name them.
HOLD_FIELDS = (*(column.key for column in HOLD_COLUMNS), "fingerprint")
SETTLED_FIELDS = ("id", "status", "captured", "expires_at", "updated_at")
LOT_FIELDS = (
    "id",
    "account_id",
    "source",
    "amount",
    "remaining",
    "priority",
    "expires_at",
    "transfer_id",
    "reference",
    "created_at",
)
SPEND_FIELDS = ("transfer_id", "lot_id", "amount")
WINDOW_FIELDS = ("account_id", "limit_id", "window_start", "spent", "warned")
LIMIT_FIELDS = ("id", "account_id", "scope", "subject", "period", "amount", "mode", "since")
MESSAGE_FIELDS = (
    "destination",
    "message_id",
    "event_type",
    "account_id",
    "payload",
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
)


Message = dict[str, Any]  # an outbox row: every column MESSAGE_FIELDS names


class MovedAccount(Protocol):
    """An account's figures as a batch leaves them, to be stored."""

    id: str
    balance: int
    held: int
    debt: int
    lots_expire_at: datetime | None
    runway_warned: int | None


@dataclass(frozen=True, slots=True)
class Written:
    """What a batch stores after its claim, in one trip to the database."""

    now: datetime
    holds: Sequence[tuple[Hold, str]]  # new holds, each with its fingerprint: claims too
    transfers: Sequence[tuple[Transfer, str]]  # each with its fingerprint: the claims
    settled: Sequence[Hold]  # stored holds the batch changed, as they are now
    keys: Sequence[tuple[str, int]]  # (proxy key id, what it has spent now)
    accounts: Sequence[MovedAccount]
    lowered: list[tuple[str, int]]  # (lot id, what is left in it)
    lots: list[dict[str, Any]]  # new lots, every column
    spends: list[dict[str, Any]]  # transfer_id, lot_id, amount
    messages: list[Message]  # for the outbox
    # What the batch spent per limit window, to add to its counter (a new window starts
    # one), and the highest percentage warned of, as WINDOW_FIELDS name them.
    windows: list[tuple[str, str, datetime, int, int]]


@dataclass(frozen=True, slots=True)
class Wanted:
    """What a batch reads once its accounts are locked."""

    holding: list[str]  # accounts whose holds past expiry are to be closed (named ones too)
    lot_owners: list[str]  # accounts whose live lots are loaded
    transfer_keys: list[tuple[str, str]]  # (app, key) to find stored transfers under
    hold_keys: list[tuple[str, str]]  # (app, key) to find stored holds under
    hold_ids: list[str]  # the holds the batch names
    key_ids: list[str]  # proxy keys paying for new holds (those of named holds come too)
    controlled: list[str] = field(default_factory=list)  # accounts with spend controls
    members: list[str] = field(default_factory=list)  # the members the batch names

    @classmethod
    def controls(cls, account_ids: list[str], members: list[str]) -> Wanted:
        """Only the spend controls of these accounts (and which of ``members`` they have)."""
        return cls([], [], [], [], [], [], controlled=account_ids, members=members)

    def empty(self) -> bool:
        """Nothing to read (a hold opened under a fresh key), so no trip to the database."""
        return not any(
            (
                self.holding,
                self.lot_owners,
                self.transfer_keys,
                self.hold_keys,
                self.hold_ids,
                self.key_ids,
                self.controlled,
            )
        )


class Key(NamedTuple):
    """A proxy key a batch locked, and what its open, unexpired holds reserve."""

    id: str
    account_id: str
    spend_limit: int | None
    spent: int
    held: int
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Found:
    """What a batch read: the holds it closed, live lots, what is stored under its keys
    (each with its fingerprint), the holds it names as they were, and their keys."""

    expired: list[ExpiredHold] = field(default_factory=list)
    live: list[LiveLot] = field(default_factory=list)
    transfers: dict[tuple[str, str], tuple[Transfer, str]] = field(default_factory=dict)
    holds_by_key: dict[tuple[str, str], tuple[Hold, str]] = field(default_factory=dict)
    named: list[Hold] = field(default_factory=list)
    keys: list[Key] = field(default_factory=list)
    controls: StoredControls = field(default_factory=StoredControls)


class Locked(NamedTuple):
    """An account row the batch locked, and the name (or the hold) it was asked for by."""

    name: str
    hold_id: str | None
    id: str
    balance: int
    held: int
    overdraft_limit: int
    debt: int
    status: str
    lots_expire_at: datetime | None
    holds_due: bool  # it may have open holds past their expiry
    spend_controls: bool  # it has members or spend limits
    time_zone: str | None  # its limits' windows' (None: UTC)
    runway_burn: int | None  # its spend per day as last worked out (None: unknown)
    runway_warned: int | None  # the lowest runway level told of (None: none)
    auto_topup_below: int | None  # auto top-up is due below this (None: not armed)


class LiveLot(NamedTuple):
    """A lot with credit left."""

    id: str
    account_id: str
    source: str
    remaining: int
    priority: int
    expires_at: datetime | None


def hold_from_row(row: Any, *, replayed: bool = False) -> Hold:
    """A hold from its stored row (its fingerprint left out)."""
    values = row._asdict()
    values.pop("fingerprint", None)
    return Hold(**values, replayed=replayed)


class Statements(ABC):
    """The engine's statements on one database: a batch's lock, read and write, which each
    database runs its own way, and what both share, in portable SQLAlchemy Core."""

    insert_or_skip: Callable[[Table], Any]  # this database's INSERT … ON CONFLICT DO NOTHING

    @abstractmethod
    async def lock_accounts(
        self, conn: AsyncConnection, names: list[str], hold_ids: list[str], now: datetime
    ) -> list[Locked]:
        """Every named account that exists and the account of every named hold, rows
        locked in id order, each with the name (or the hold) it was asked for by."""

    @abstractmethod
    async def read(self, conn: AsyncConnection, wanted: Wanted, now: datetime) -> Found:
        """Close the expired holds of ``wanted.holding`` (locked accounts) and the named
        ones; then read the rest of what a batch wants."""

    @abstractmethod
    async def write(self, conn: AsyncConnection, batch: Written) -> None:
        """Store a batch: its new holds and transfers first (their unique keys are the
        claims: one taken since the batch looked, by a concurrent request for another
        account, reruns the transaction, which then finds it), then, only if every key
        was claimed, the holds and keys that changed, account figures, lot remainders,
        new lots, lot spends and outbox messages."""

    async def insert_account(
        self,
        conn: AsyncConnection,
        account_id: str,
        overdraft_limit: int,
        metadata: Metadata | None,
        now: datetime,
    ) -> bool:
        """Insert a customer account; False when one with this id already exists."""
        result = await conn.execute(
            self.insert_or_skip(accounts)
            .values(
                id=account_id,
                kind="customer",
                balance=0,
                held=0,
                overdraft_limit=overdraft_limit,
                metadata=metadata,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=[_A.id])
            .returning(_A.id)
        )
        return result.first() is not None

    async def insert_name(self, conn: AsyncConnection, name: str, account_id: str) -> bool:
        """Give an account another name; False when the name is taken."""
        result = await conn.execute(
            self.insert_or_skip(account_names)
            .values(name=name, account_id=account_id)
            .on_conflict_do_nothing(index_elements=[account_names.c.name])
            .returning(account_names.c.name)
        )
        return result.first() is not None

    async def transfers_by_key(
        self, conn: AsyncConnection, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[Transfer, str]]:
        """The stored transfers under these ``(app, key)`` pairs, with their fingerprints."""
        rows = await conn.execute(
            select(*TRANSFER_COLUMNS, _T.fingerprint).where(_by_key(_T, keys))
        )
        found = {}
        for row in rows:
            values = row._asdict()
            print_ = str(values.pop("fingerprint"))
            found[row.app, row.idempotency_key] = (Transfer(**values, replayed=True), print_)
        return found

    async def lot_parts(
        self, conn: AsyncConnection, transfer_ids: list[str]
    ) -> dict[str, list[LotPart]]:
        """Per transfer, the lots it spent from or the lot it filled, oldest lot first."""
        if not transfer_ids:
            return {}
        spent = (
            select(_S.transfer_id, _S.lot_id, _L.source, _S.amount, _L.expires_at)
            .join(lots, _L.id == _S.lot_id)
            .where(_S.transfer_id.in_(transfer_ids))
        )
        filled = select(_L.transfer_id, _L.id, _L.source, _L.amount, _L.expires_at).where(
            _L.transfer_id.in_(transfer_ids)
        )
        found: dict[str, list[LotPart]] = {}
        for query in (spent, filled):
            for transfer_id, lot_id, source, amount, expires_at in await conn.execute(query):
                found.setdefault(transfer_id, []).append(
                    LotPart(lot_id, source, amount, expires_at)
                )
        for parts in found.values():
            parts.sort(key=lambda part: part.lot_id)
        return found


def _by_key(columns: Any, keys: Iterable[tuple[str, str]]) -> Any:
    """``(app, idempotency_key) IN …`` grouped by app, so the unique index serves it."""
    by_app: dict[str, list[str]] = {}
    for app, key in keys:
        by_app.setdefault(app, []).append(key)
    return or_(
        *(
            and_(columns.app == app, columns.idempotency_key.in_(keys))
            for app, keys in by_app.items()
        )
    )


def to_json(value: Any) -> str | None:
    """A JSON column's text (any exact JSON will do: nothing is hashed over it)."""
    return None if value is None else jsonio.render(value).decode()
