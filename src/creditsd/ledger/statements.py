"""The posting engine's statements, chosen once per database.

:class:`Statements` is portable SQLAlchemy Core (what SQLite runs): many-row inserts and
one statement per changed row, which cost nothing in-process. :class:`PostgresStatements`
replaces the per-row ones by one set-based statement over ``unnest`` arrays, so a batch
of any size is the same few round trips. :func:`of` is where creditsd chooses by database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from operator import attrgetter
from typing import TYPE_CHECKING, Any, NamedTuple

import asyncpg
from sqlalchemy import (
    Table,
    and_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd import jsonio
from creditsd.db import RetryTransaction, is_sqlite
from creditsd.ledger.models import ExpiredHold, Hold, LotPart, Metadata, Transfer
from creditsd.tables import (
    account_names,
    accounts,
    holds,
    lot_spends,
    lots,
    outbox,
    proxy_keys,
    transfers,
)

if TYPE_CHECKING:
    from creditsd.ledger.posting import _Account

_A = accounts.c
_T = transfers.c
_H = holds.c
_L = lots.c
_S = lot_spends.c
_P = proxy_keys.c
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
)

_LOCK = (
    select(
        account_names.c.name,
        _A.id,
        _A.balance,
        _A.held,
        _A.overdraft_limit,
        _A.debt,
        _A.status,
        _A.lots_expire_at,
        # Whether it has holds to close: SQLite's writers run one at a time, so what this
        # reads cannot change before the engine would close them.
        select(_H.id)
        .where(
            _H.account_id == _A.id,
            _H.status == "open",
            _H.expires_at <= bindparam("now"),
        )
        .exists()
        .label("holds_due"),
    )
    .join(accounts, _A.id == account_names.c.account_id)
    .where(account_names.c.name.in_(bindparam("names", expanding=True)))
    .order_by(_A.id)
    .with_for_update(of=accounts, key_share=True)
)
# The accounts of the holds a batch names (a hold's account never changes), locked alike.
_NAMED = holds.alias("named")
_LOCK_BY_HOLD = (
    select(_NAMED.c.account_id, _NAMED.c.id, *_LOCK.selected_columns[1:])
    .select_from(_NAMED.join(accounts, _A.id == _NAMED.c.account_id))
    .where(_NAMED.c.id.in_(bindparam("hold_ids", expanding=True)))
    .order_by(_A.id)
    .with_for_update(of=accounts, key_share=True)
)
_LIVE_LOTS = (
    select(_L.id, _L.account_id, _L.source, _L.remaining, _L.priority, _L.expires_at)
    .where(_L.account_id.in_(bindparam("account_ids", expanding=True)), LIVE)
    .order_by(_L.account_id, _L.id)
)
_UPDATE_ACCOUNT = (
    update(accounts)
    .where(_A.id == bindparam("b_id"))
    .values(
        balance=bindparam("b_balance"),
        held=bindparam("b_held"),
        debt=bindparam("b_debt"),
        lots_expire_at=bindparam("b_lots_expire_at"),
        updated_at=bindparam("b_now"),
    )
)
_SETTLE_HOLD = (
    update(holds)
    .where(_H.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        captured=bindparam("b_captured"),
        expires_at=bindparam("b_expires_at"),
        updated_at=bindparam("b_updated_at"),
    )
)
_KEY_SPENT = update(proxy_keys).where(_P.id == bindparam("b_id")).values(spent=bindparam("b_spent"))
_KEYS = select(_P.id, _P.account_id, _P.spend_limit, _P.spent).add_columns(
    select(func.coalesce(func.sum(_H.amount - _H.captured), 0))
    .where(
        _H.proxy_key_id == _P.id,
        _H.status == "open",
        _H.expires_at > bindparam("now"),
    )
    .scalar_subquery()
    .label("held"),
    _P.expires_at,
    _P.revoked_at,
)
_LOWER_LOT = update(lots).where(_L.id == bindparam("b_id")).values(remaining=bindparam("b_left"))
_EXPIRE_HOLDS = (
    update(holds)
    .where(
        or_(
            _H.account_id.in_(bindparam("b_account_ids", expanding=True)),
            _H.id.in_(bindparam("b_hold_ids", expanding=True)),
        ),
        _H.status == "open",
        _H.expires_at <= bindparam("b_now"),
    )
    .values(status="expired", updated_at=bindparam("b_now"))
    .returning(_H.id, _H.account_id, _H.amount - _H.captured)
)


Message = dict[str, Any]  # an outbox row: every column _PG_MESSAGE_FIELDS names


@dataclass(frozen=True, slots=True)
class Written:
    """What a batch stores after its claim, in one statement on PostgreSQL."""

    now: datetime
    holds: Sequence[tuple[Hold, str]]  # new holds, each with its fingerprint: claims too
    transfers: Sequence[tuple[Transfer, str]]  # each with its fingerprint: the claims
    settled: Sequence[Hold]  # stored holds the batch changed, as they are now
    keys: Sequence[tuple[str, int]]  # (proxy key id, what it has spent now)
    accounts: Sequence[_Account]
    lowered: list[tuple[str, int]]  # (lot id, what is left in it)
    lots: list[dict[str, Any]]  # new lots, every column
    spends: list[dict[str, Any]]  # transfer_id, lot_id, amount
    messages: list[Message]  # for the outbox


@dataclass(frozen=True, slots=True)
class Wanted:
    """What a batch reads once its accounts are locked."""

    holding: list[str]  # accounts whose holds past expiry are to be closed (named ones too)
    lot_owners: list[str]  # accounts whose live lots are loaded
    transfer_keys: list[tuple[str, str]]  # (app, key) to find stored transfers under
    hold_keys: list[tuple[str, str]]  # (app, key) to find stored holds under
    hold_ids: list[str]  # the holds the batch names
    key_ids: list[str]  # proxy keys paying for new holds (those of named holds come too)


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

    expired: list[ExpiredHold]
    live: list[LiveLot]
    transfers: dict[tuple[str, str], tuple[Transfer, str]]
    holds_by_key: dict[tuple[str, str], tuple[Hold, str]]
    named: list[Hold]
    keys: list[Key]


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


class Statements:
    """The engine's reads and writes in portable SQL."""

    insert_or_skip: Callable[[Table], Any] = staticmethod(sqlite.insert)

    def __init__(self) -> None:
        # Built once per database: the inserts that claim idempotency keys.
        self._insert_transfers = (
            self.insert_or_skip(transfers)
            .on_conflict_do_nothing(index_elements=[_T.app, _T.idempotency_key])
            .returning(_T.id)
        )
        self._insert_holds = (
            self.insert_or_skip(holds)
            .on_conflict_do_nothing(index_elements=[_H.app, _H.idempotency_key])
            .returning(_H.id)
        )

    async def lock_accounts(
        self, conn: AsyncConnection, names: list[str], hold_ids: list[str], now: datetime
    ) -> list[Locked]:
        """Every named account that exists and the account of every named hold, rows
        locked in id order (SQLite's one writer holds them all at once)."""
        found = []
        if names:
            rows = await conn.execute(_LOCK, {"names": names, "now": now})
            found += [Locked(row[0], None, *row[1:]) for row in rows]
        if hold_ids:
            rows = await conn.execute(_LOCK_BY_HOLD, {"hold_ids": hold_ids, "now": now})
            found += [Locked._make(row) for row in rows]
        return found

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

    async def expire_holds(
        self, conn: AsyncConnection, account_ids: list[str], hold_ids: list[str], now: datetime
    ) -> list[ExpiredHold]:
        """Close the open holds past their expiry of these (locked) accounts, and those of
        these holds (of locked accounts)."""
        rows = await conn.execute(
            _EXPIRE_HOLDS, {"b_account_ids": account_ids, "b_hold_ids": hold_ids, "b_now": now}
        )
        return sorted(
            (ExpiredHold(hold_id, owner, int(left)) for hold_id, owner, left in rows),
            key=lambda hold: hold.hold_id,
        )

    async def live_lots(self, conn: AsyncConnection, account_ids: list[str]) -> list[LiveLot]:
        """The live lots of these accounts, oldest first."""
        rows = await conn.execute(_LIVE_LOTS, {"account_ids": account_ids})
        return [LiveLot._make(row) for row in rows]

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

    async def holds_by_key(
        self, conn: AsyncConnection, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[Hold, str]]:
        """The stored holds under these ``(app, key)`` pairs, with their fingerprints."""
        rows = await conn.execute(select(*HOLD_COLUMNS, _H.fingerprint).where(_by_key(_H, keys)))
        return {
            (row.app, row.idempotency_key): (hold_from_row(row, replayed=True), row.fingerprint)
            for row in rows
        }

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

    async def insert_transfers(
        self, conn: AsyncConnection, made: Sequence[tuple[Transfer, str]]
    ) -> None:
        """Insert transfers; a key already taken reruns the transaction."""
        rows = [_transfer_row(transfer, print_) for transfer, print_ in made]
        inserted = (await conn.execute(self._insert_transfers, rows)).all()
        if len(inserted) != len(rows):
            raise RetryTransaction("an idempotency key was claimed concurrently")

    async def insert_holds(self, conn: AsyncConnection, made: Sequence[tuple[Hold, str]]) -> None:
        """Insert the batch's new holds: the claim of their keys."""
        rows = [
            {**{column.key: getattr(hold, column.key) for column in HOLD_COLUMNS}, "fingerprint": f}
            for hold, f in made
        ]
        if len((await conn.execute(self._insert_holds, rows)).all()) != len(rows):
            raise RetryTransaction("an idempotency key was claimed concurrently")

    async def read(self, conn: AsyncConnection, wanted: Wanted, now: datetime) -> Found:
        """Close the expired holds of ``wanted.holding`` (locked accounts) and the named
        ones; then read the rest of what a batch wants."""
        closing = wanted.holding or wanted.hold_ids
        expired = (
            await self.expire_holds(conn, wanted.holding, wanted.hold_ids, now) if closing else []
        )
        live = await self.live_lots(conn, wanted.lot_owners) if wanted.lot_owners else []
        stored, held = wanted.transfer_keys, wanted.hold_keys
        named: list[Hold] = []
        if wanted.hold_ids:
            rows = await conn.execute(select(*HOLD_COLUMNS).where(_H.id.in_(wanted.hold_ids)))
            named = [hold_from_row(row) for row in rows]
        key_ids = {*wanted.key_ids, *(hold.proxy_key_id for hold in named if hold.proxy_key_id)}
        keys = []
        if key_ids:
            rows = await conn.execute(_KEYS.where(_P.id.in_(sorted(key_ids))), {"now": now})
            keys = [Key._make(row) for row in rows]
        return Found(
            expired=expired,
            live=live,
            transfers=await self.transfers_by_key(conn, stored) if stored else {},
            holds_by_key=await self.holds_by_key(conn, held) if held else {},
            named=named,
            keys=keys,
        )

    async def write(self, conn: AsyncConnection, batch: Written) -> None:
        """Insert the batch's transfers (the claim of their keys: one taken since the batch
        looked, by a concurrent request for another account, reruns the transaction, which
        then finds it), then store account figures, lot remainders, new lots, lot spends
        and outbox messages. New holds go first: their keys are claims too."""
        if batch.holds:
            await self.insert_holds(conn, batch.holds)
        if batch.transfers:
            await self.insert_transfers(conn, batch.transfers)
        if batch.settled:
            await conn.execute(_SETTLE_HOLD, [_settled_row(hold) for hold in batch.settled])
        if batch.keys:
            spent = [{"b_id": key_id, "b_spent": spent} for key_id, spent in batch.keys]
            await conn.execute(_KEY_SPENT, spent)
        if batch.accounts:
            rows = [_account_row(account, batch.now) for account in batch.accounts]
            await conn.execute(_UPDATE_ACCOUNT, rows)
        if batch.lowered:
            lowered = [{"b_id": lot_id, "b_left": left} for lot_id, left in batch.lowered]
            await conn.execute(_LOWER_LOT, lowered)
        if batch.lots:
            await conn.execute(lots.insert(), batch.lots)
        if batch.spends:
            await conn.execute(lot_spends.insert(), batch.spends)
        if batch.messages:
            await conn.execute(outbox.insert(), batch.messages)


async def queue(conn: AsyncConnection, messages: list[Message]) -> None:
    """Write outbox messages of a change the engine did not make (in its transaction)."""
    if messages:
        await conn.execute(outbox.insert(), messages)


class PostgresStatements(Statements):
    """PostgreSQL: constant SQL run on asyncpg itself (prepared once per connection, inside
    the transaction SQLAlchemy began), each batch's rows passed as arrays to ``unnest``.
    A batch is four statements: the lock, one read (expired holds closed, lots, stored
    keys, named holds and their keys), one write (the transfers, then, only if every key
    was claimed, everything else, outbox messages included), the commit."""

    insert_or_skip = staticmethod(postgresql.insert)

    async def lock_accounts(
        self, conn: AsyncConnection, names: list[str], hold_ids: list[str], now: datetime
    ) -> list[Locked]:
        rows = await (await _driver(conn)).fetch(_PG_LOCK, names, hold_ids)
        return [Locked._make(row) for row in rows]

    async def read(self, conn: AsyncConnection, wanted: Wanted, now: datetime) -> Found:
        found = Found([], [], {}, {}, [], [])
        if not any(
            (
                wanted.holding,
                wanted.lot_owners,
                wanted.transfer_keys,
                wanted.hold_keys,
                wanted.hold_ids,
                wanted.key_ids,
            )
        ):  # a hold opening: nothing to read
            return found
        rows = await (await _driver(conn)).fetch(
            _PG_READ,
            wanted.lot_owners,
            [app for app, _ in wanted.transfer_keys],
            [key for _, key in wanted.transfer_keys],
            wanted.holding,
            now,
            wanted.hold_ids,
            [app for app, _ in wanted.hold_keys],
            [key for _, key in wanted.hold_keys],
            wanted.key_ids,
        )
        for kind, *row in rows:
            if kind == "lot":
                found.live.append(LiveLot._make(row[:-1]))
            elif kind == "expired":
                found.expired.append(ExpiredHold(row[0], row[1], int(row[3])))
            elif kind == "key":
                values = jsonio.loads(row[-1])
                for name in ("expires_at", "revoked_at"):
                    if values[name] is not None:
                        values[name] = datetime.fromisoformat(values[name])
                found.keys.append(Key(**values))
            elif kind == "transfer":
                values = jsonio.loads(row[-1])
                print_ = values.pop("fingerprint")
                values["created_at"] = datetime.fromisoformat(values["created_at"])
                found.transfers[values["app"], values["idempotency_key"]] = (
                    Transfer(**values, replayed=True),
                    print_,
                )
            else:  # a hold named by id or stored under a key
                values = jsonio.loads(row[-1])
                print_ = values.pop("fingerprint")
                for name in ("expires_at", "created_at", "updated_at"):
                    values[name] = datetime.fromisoformat(values[name])
                hold = Hold(**values)
                if hold.id in wanted.hold_ids:
                    found.named.append(hold)
                if (hold.app, hold.idempotency_key) in wanted.hold_keys:
                    found.holds_by_key[hold.app, hold.idempotency_key] = (
                        replace(hold, replayed=True),
                        print_,
                    )
        found.expired.sort(key=lambda hold: hold.hold_id)
        return found

    async def write(self, conn: AsyncConnection, batch: Written) -> None:
        made = batch.transfers
        # Rows read in C (attrgetter), then turned into columns (zip).
        rows = [_pg_transfer_values(transfer) for transfer, _ in made]
        columns = list(zip(*rows, strict=True)) or [()] * len(_PG_TRANSFER_FIELDS)
        messages = ([message[name] for message in batch.messages] for name in _PG_MESSAGE_FIELDS)
        moved = batch.accounts
        opened = ([getattr(hold, name) for hold, _ in batch.holds] for name in _PG_HOLD_FIELDS[:-1])
        claimed = await (await _driver(conn)).fetchval(
            _PG_WRITE,
            *_pg_arrays(_PG_TRANSFER_FIELDS, columns),
            [print_ for _, print_ in made],
            batch.now,
            len(made),
            [account.id for account in moved],
            [account.balance for account in moved],
            [account.held for account in moved],
            [account.debt for account in moved],
            [account.lots_expire_at for account in moved],
            [lot_id for lot_id, _ in batch.lowered],
            [left for _, left in batch.lowered],
            *([lot[name] for lot in batch.lots] for name in _PG_LOT_FIELDS),
            *([spend[name] for spend in batch.spends] for name in _PG_SPEND_FIELDS),
            *_pg_arrays(_PG_MESSAGE_FIELDS, messages),
            *_pg_arrays(_PG_HOLD_FIELDS, [*opened, [print_ for _, print_ in batch.holds]]),
            len(batch.holds),
            *([getattr(hold, name) for hold in batch.settled] for name in _SETTLED_FIELDS),
            [key_id for key_id, _ in batch.keys],
            [spent for _, spent in batch.keys],
        )
        if not claimed:
            raise RetryTransaction("an idempotency key was claimed concurrently")


def _pg_arrays(fields: Sequence[str], columns: Iterable[Sequence[Any]]) -> list[Sequence[Any]]:
    """Each column as its array parameter, JSON columns as their text."""
    return [
        list(map(_PG_CONVERT[name], column)) if name in _PG_CONVERT else column
        for name, column in zip(fields, columns, strict=True)
    ]


class _Driver:
    """The asyncpg connection under a SQLAlchemy one, inside the transaction it began, its
    errors raised as SQLAlchemy's (so retries and error answers treat them alike)."""

    def __init__(self, raw: asyncpg.Connection) -> None:
        self._raw = raw

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        with _as_sqlalchemy_errors(sql):
            return await self._raw.fetch(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        with _as_sqlalchemy_errors(sql):
            return await self._raw.fetchval(sql, *args)


async def _driver(conn: AsyncConnection) -> _Driver:
    pooled = await conn.get_raw_connection()
    adapter: Any = pooled.dbapi_connection
    if adapter._transaction is None:
        # SQLAlchemy's asyncpg adapter sends BEGIN with its first statement, and ours go to
        # asyncpg itself: begin as the adapter would (its one round trip), or each of them
        # would commit on its own. SQLAlchemy commits or rolls it back as usual.
        dbapi_error = conn.dialect.loaded_dbapi.Error
        try:
            await adapter._start_transaction()
        except dbapi_error as error:  # the adapter's own, which SQLAlchemy would wrap
            raise DBAPIError.instance(
                "BEGIN", None, error, dbapi_error, connection_invalidated=True
            ) from error
    raw = pooled.driver_connection
    assert isinstance(raw, asyncpg.Connection)
    return _Driver(raw)


@contextmanager
def _as_sqlalchemy_errors(sql: str) -> Iterator[None]:
    try:
        yield
    except asyncpg.PostgresConnectionError as error:
        raise InterfaceError(sql, None, error, connection_invalidated=True) from error
    except asyncpg.PostgresError as error:
        integrity = str(getattr(error, "sqlstate", "")).startswith("23")
        raise (IntegrityError if integrity else OperationalError)(sql, None, error) from error
    except TimeoutError:
        raise  # the server stopped answering: not a dropped connection to retry on
    except (asyncpg.InterfaceError, asyncpg.InternalClientError, OSError) as error:
        raise InterfaceError(sql, None, error, connection_invalidated=True) from error


def _to_json(value: Any) -> str | None:
    """A JSON column's text (any exact JSON will do: nothing is hashed over it)."""
    return None if value is None else jsonio.render(value).decode()


# A statement that waited for a lock sees the holds as they were before it waited (only the
# locked rows are read again): every account that holds anything may have holds due. The
# accounts of named holds come by the hold (a hold's account never changes).
_PG_LOCK = """
SELECT w.name, w.hold_id, a.id, a.balance, a.held, a.overdraft_limit, a.debt, a.status,
    a.lots_expire_at, TRUE AS holds_due
FROM (
    SELECT name, NULL::text AS hold_id, account_id FROM account_names WHERE name = ANY($1::text[])
    UNION ALL
    SELECT account_id, id, account_id FROM holds WHERE id = ANY($2::text[])
) AS w JOIN accounts a ON a.id = w.account_id
ORDER BY a.id
FOR NO KEY UPDATE OF a
"""
_HOLD_FIELDS = ", ".join(f"h.{column.key}" for column in HOLD_COLUMNS)
# The holds past expiry closed (it runs after the lock: it sees every hold committed before),
# then, each row saying its kind: live lots, closed holds (what they released), and as JSON
# in the last column: stored transfers and holds (replays: rare), the holds the batch names
# (as they were before this statement closed any), and the proxy keys paying for new or
# named holds, locked, each with what its open, unexpired holds reserve.
_PG_READ = f"""
WITH expired AS (
    UPDATE holds SET status = 'expired', updated_at = $5::timestamptz
    WHERE (account_id = ANY($4::text[]) OR id = ANY($6::text[]))
        AND status = 'open' AND expires_at <= $5::timestamptz
    RETURNING id, account_id, amount - captured AS released
), paying AS (
    SELECT id, account_id, spend_limit, spent, expires_at, revoked_at FROM proxy_keys
    WHERE id = ANY($9::text[])
        OR id IN (SELECT proxy_key_id FROM holds WHERE id = ANY($6::text[]))
    ORDER BY id
    FOR NO KEY UPDATE
)
SELECT 'lot' AS kind, id, account_id, source, remaining, priority, expires_at,
    NULL::text AS stored
FROM lots WHERE account_id = ANY($1::text[]) AND remaining > 0
UNION ALL
SELECT 'expired', id, account_id, NULL, released, NULL, NULL, NULL FROM expired
UNION ALL
SELECT 'transfer', NULL, NULL, NULL, NULL, NULL, NULL, row_to_json(found)::text
FROM (
    SELECT {", ".join(f"t.{column.key}" for column in TRANSFER_COLUMNS)}, t.fingerprint
    FROM transfers t JOIN unnest($2::text[], $3::text[]) AS k(app, key)
        ON t.app = k.app AND t.idempotency_key = k.key
) AS found
UNION ALL
SELECT 'hold', NULL, NULL, NULL, NULL, NULL, NULL, row_to_json(named)::text
FROM (
    SELECT {_HOLD_FIELDS}, h.fingerprint FROM holds h WHERE h.id = ANY($6::text[])
    UNION ALL
    SELECT {_HOLD_FIELDS}, h.fingerprint
    FROM holds h JOIN unnest($7::text[], $8::text[]) AS k(app, key)
        ON h.app = k.app AND h.idempotency_key = k.key
) AS named
UNION ALL
SELECT 'key', NULL, NULL, NULL, NULL, NULL, NULL, row_to_json(keyed)::text
FROM (
    SELECT p.id, p.account_id, p.spend_limit, p.spent,
        (SELECT coalesce(sum(h.amount - h.captured), 0) FROM holds h
         WHERE h.proxy_key_id = p.id AND h.status = 'open' AND h.expires_at > $5::timestamptz
        ) AS held,
        p.expires_at, p.revoked_at
    FROM paying p
) AS keyed
"""  # noqa: S608 - built once, from the tables' own column names
# Every transfer column but created_at (one value for the batch), then the fingerprint.
_PG_TRANSFER_FIELDS = [column.key for column in TRANSFER_COLUMNS if column.key != "created_at"]
_pg_transfer_values = attrgetter(*_PG_TRANSFER_FIELDS)
_PG_CONVERT: dict[str, Callable[[Any], Any]] = {
    "metadata": _to_json,
    "pricing": _to_json,
    "payload": _to_json,
}
_PG_BIGINT = {"amount", *(name for name in _PG_TRANSFER_FIELDS if name.endswith("_after"))}
_PG_LOT_FIELDS = (
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
_PG_LOT_TYPES = (
    "text",
    "text",
    "text",
    "int8",
    "int8",
    "int4",
    "timestamptz",
    "text",
    "text",
    "timestamptz",
)
_PG_SPEND_FIELDS = ("transfer_id", "lot_id", "amount")
_SETTLED_FIELDS = ("id", "status", "captured", "expires_at", "updated_at")
_PG_HOLD_FIELDS = (*(column.key for column in HOLD_COLUMNS), "fingerprint")
_PG_HOLD_TYPES = tuple(
    "int8"
    if name in {"amount", "captured"}
    else "timestamptz"
    if name in {"expires_at", "created_at", "updated_at"}
    else "text"
    for name in _PG_HOLD_FIELDS
)
_PG_MESSAGE_FIELDS = (
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
_PG_MESSAGE_TYPES = (
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "int4",
    "timestamptz",
    "timestamptz",
)


def _pg_write() -> str:
    """Every write of a batch in one statement.

    The new holds and transfers go first: their unique keys are the claims. Everything else
    is written only if every one was inserted (data-modifying parts see each other's
    RETURNING, not their rows); the statement answers whether they were. A part whose
    arrays are empty does nothing, and foreign keys are checked once the whole statement
    has run.
    """
    numbers = iter(range(1, 100))

    def arrays(*types: str) -> str:
        return ", ".join(f"${next(numbers)}::{kind}[]" for kind in types)

    fields = [*_PG_TRANSFER_FIELDS, "fingerprint"]
    transfer_arrays = arrays(*("int8" if name in _PG_BIGINT else "text" for name in fields))
    now, count = next(numbers), next(numbers)
    values = ", ".join(f"v.{name}::json" if name in _PG_CONVERT else f"v.{name}" for name in fields)
    account_arrays = arrays("text", "int8", "int8", "int8", "timestamptz")
    lowered_arrays = arrays("text", "int8")
    lot_arrays = arrays(*_PG_LOT_TYPES)
    spend_arrays = arrays("text", "text", "int8")
    message_arrays = arrays(*_PG_MESSAGE_TYPES)
    message_values = ", ".join(
        f"v.{name}::json" if name in _PG_CONVERT else f"v.{name}" for name in _PG_MESSAGE_FIELDS
    )
    hold_arrays = arrays(*_PG_HOLD_TYPES)
    holds = next(numbers)
    settled_arrays = arrays("text", "text", "int8", "timestamptz", "timestamptz")
    key_arrays = arrays("text", "int8")
    hold_values = ", ".join(
        f"v.{name}::json" if name in _PG_CONVERT else f"v.{name}" for name in _PG_HOLD_FIELDS
    )
    return f"""
WITH opened AS (
    INSERT INTO holds ({", ".join(_PG_HOLD_FIELDS)})
    SELECT {hold_values}
    FROM unnest({hold_arrays}) AS v({", ".join(_PG_HOLD_FIELDS)})
    ON CONFLICT (app, idempotency_key) DO NOTHING
    RETURNING 1
), inserted AS (
    INSERT INTO transfers ({", ".join(fields)}, created_at)
    SELECT {values}, ${now}::timestamptz
    FROM unnest({transfer_arrays}) AS v({", ".join(fields)})
    ON CONFLICT (app, idempotency_key) DO NOTHING
    RETURNING 1
), claimed AS (
    SELECT (SELECT count(*) FROM inserted) = ${count}::int8
        AND (SELECT count(*) FROM opened) = ${holds}::int8 AS every
), moved AS (
    UPDATE accounts SET balance = v.balance, held = v.held, debt = v.debt,
        lots_expire_at = v.lots_expire_at, updated_at = ${now}::timestamptz
    FROM unnest({account_arrays}) AS v(id, balance, held, debt, lots_expire_at), claimed
    WHERE accounts.id = v.id AND claimed.every
    RETURNING 1
), lowered AS (
    UPDATE lots SET remaining = v.remaining
    FROM unnest({lowered_arrays}) AS v(id, remaining), claimed
    WHERE lots.id = v.id AND claimed.every
    RETURNING 1
), filled AS (
    INSERT INTO lots ({", ".join(_PG_LOT_FIELDS)})
    SELECT v.* FROM unnest({lot_arrays}) AS v({", ".join(_PG_LOT_FIELDS)}), claimed
    WHERE claimed.every
    RETURNING 1
), spent AS (
    INSERT INTO lot_spends ({", ".join(_PG_SPEND_FIELDS)})
    SELECT v.* FROM unnest({spend_arrays}) AS v({", ".join(_PG_SPEND_FIELDS)}), claimed
    WHERE claimed.every
    RETURNING 1
), queued AS (
    INSERT INTO outbox ({", ".join(_PG_MESSAGE_FIELDS)})
    SELECT {message_values}
    FROM unnest({message_arrays}) AS v({", ".join(_PG_MESSAGE_FIELDS)}), claimed
    WHERE claimed.every
    RETURNING 1
), settled AS (
    UPDATE holds SET status = v.status, captured = v.captured, expires_at = v.expires_at,
        updated_at = v.updated_at
    FROM unnest({settled_arrays}) AS v(id, status, captured, expires_at, updated_at), claimed
    WHERE holds.id = v.id AND claimed.every
    RETURNING 1
), charged AS (
    UPDATE proxy_keys SET spent = v.spent
    FROM unnest({key_arrays}) AS v(id, spent), claimed
    WHERE proxy_keys.id = v.id AND claimed.every
    RETURNING 1
)
SELECT every FROM claimed
"""  # noqa: S608 - built once, from the tables' own column names


_PG_WRITE = _pg_write()


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


def _transfer_row(transfer: Transfer, print_: str) -> dict[str, Any]:
    row = {column.key: getattr(transfer, column.key) for column in TRANSFER_COLUMNS}
    row["fingerprint"] = print_
    return row


def _settled_row(hold: Hold) -> dict[str, Any]:
    return {
        "b_id": hold.id,
        "b_status": hold.status,
        "b_captured": hold.captured,
        "b_expires_at": hold.expires_at,
        "b_updated_at": hold.updated_at,
    }


def _account_row(account: _Account, now: datetime) -> dict[str, Any]:
    return {
        "b_id": account.id,
        "b_balance": account.balance,
        "b_held": account.held,
        "b_debt": account.debt,
        "b_lots_expire_at": account.lots_expire_at,
        "b_now": now,
    }


_PORTABLE = Statements()
_POSTGRES = PostgresStatements()


def of(conn: AsyncConnection) -> Statements:
    """The statements for the database behind ``conn``."""
    return _PORTABLE if is_sqlite(conn.dialect) else _POSTGRES


def insert_or_skip(conn: AsyncConnection) -> Callable[[Table], Any]:
    """This database's ``INSERT … ON CONFLICT DO NOTHING`` constructor."""
    return of(conn).insert_or_skip
