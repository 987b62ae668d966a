"""The posting engine's statements on SQLite: constant SQL run on the sqlite3 connection on
aiosqlite's thread, lists passed as JSON arrays to ``json_each``."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields, replace
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from typing import Any

from sqlalchemy import JSON, Table
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.kit import jsonio
from creditsd.kit import sqlite as sqlite_driver
from creditsd.kit.db import RetryTransaction
from creditsd.ledger.limits import Counted, HeldBy, SpendLimit, StoredControls
from creditsd.ledger.models import ExpiredHold, Hold, Transfer
from creditsd.ledger.statements.shared import (
    HOLD_FIELDS,
    LIMIT_FIELDS,
    LOT_FIELDS,
    MESSAGE_FIELDS,
    SETTLED_FIELDS,
    SPEND_FIELDS,
    TRANSFER_COLUMNS,
    WINDOW_FIELDS,
    Found,
    Key,
    LiveLot,
    Locked,
    Statements,
    Wanted,
    Written,
    to_json,
)
from creditsd.tables import (
    Timestamp,
    accounts,
    holds,
    limit_windows,
    lot_spends,
    lots,
    outbox,
    proxy_keys,
    spend_limits,
    transfers,
)


class SqliteStatements(Statements):
    """SQLite: constant SQL run on the sqlite3 connection itself, on aiosqlite's thread,
    inside the transaction SQLAlchemy began (``BEGIN IMMEDIATE``: the batch writes alone),
    one trip there per step of a batch: the lock, one read (expired holds closed, lots,
    stored keys, named holds and their keys, spend controls), one write (the claims,
    then, only if every key was claimed, everything else). SQLite runs a batch's
    statements in a small part of what a trip each and SQLAlchemy's work on each would
    cost. Lists go to ``json_each`` as one JSON array each, so the SQL never changes with
    their length; values are stored and read as SQLAlchemy stores and reads them here
    (:class:`_SqliteColumns`), so either reads what the other wrote."""

    insert_or_skip = staticmethod(sqlite.insert)

    async def lock_accounts(
        self, conn: AsyncConnection, names: list[str], hold_ids: list[str], now: datetime
    ) -> list[Locked]:
        lists = {"names": to_json(names), "hold_ids": to_json(hold_ids)}
        parameters = {**lists, "now": _time_text(now)}
        rows = await sqlite_driver.run(conn, sqlite_driver.fetch, _SQLITE_LOCK, parameters)
        return [
            Locked._make((*row[:8], _time_value(row[8]), bool(row[9]), bool(row[10]), *row[11:15]))
            for row in rows
        ]

    async def read(self, conn: AsyncConnection, wanted: Wanted, now: datetime) -> Found:
        expired, live, stored, kept, named, keys, members, limits, held = await sqlite_driver.run(
            conn, _sqlite_read, wanted, _time_text(now)
        )
        found = Found(
            expired=[ExpiredHold(*row) for row in sorted(expired)],
            live=[LiveLot._make((*row[:5], _time_value(row[5]))) for row in live],
            named=[_sqlite_hold(row)[0] for row in named],
            keys=[Key._make((*row[:5], *map(_time_value, row[5:]))) for row in keys],
            controls=_controls(members, limits, held),
        )
        for row in stored:
            values = _SQLITE_TRANSFERS.read(row)
            print_ = values.pop("fingerprint")
            found.transfers[values["app"], values["idempotency_key"]] = (
                Transfer(**values, replayed=True),
                print_,
            )
        for hold, print_ in map(_sqlite_hold, kept):
            found.holds_by_key[hold.app, hold.idempotency_key] = (
                replace(hold, replayed=True),
                print_,
            )
        return found

    async def write(self, conn: AsyncConnection, batch: Written) -> None:
        claims = (
            (
                _SQLITE_INSERT_HOLDS,
                [_SQLITE_HOLDS.stored((*_hold_values(hold), f)) for hold, f in batch.holds],
            ),
            (
                _SQLITE_INSERT_TRANSFERS,
                [_SQLITE_TRANSFERS.stored((*_transfer_values(t), f)) for t, f in batch.transfers],
            ),
        )
        rest = (
            (
                _SQLITE_SETTLE,
                [_SQLITE_SETTLED.stored(_settled_values(hold)) for hold in batch.settled],
            ),
            (_SQLITE_KEY_SPENT, batch.keys),
            (
                _SQLITE_MOVE,
                [_SQLITE_MOVED.stored((*_moved_values(a), batch.now)) for a in batch.accounts],
            ),
            (_SQLITE_LOWER_LOT, batch.lowered),
            (_SQLITE_INSERT_LOTS, [_SQLITE_LOTS.stored(_lot_values(lot)) for lot in batch.lots]),
            (_SQLITE_INSERT_SPENDS, [_spend_values(spend) for spend in batch.spends]),
            (
                _SQLITE_INSERT_MESSAGES,
                [_SQLITE_MESSAGES.stored(_message_values(message)) for message in batch.messages],
            ),
            (_SQLITE_COUNT_WINDOWS, [_SQLITE_WINDOWS.stored(row) for row in batch.windows]),
        )
        if not await sqlite_driver.run(conn, _sqlite_write, claims, rest):
            raise RetryTransaction("an idempotency key was claimed concurrently")


def _controls(members: list[Any], limits: list[Any], held: list[Any]) -> StoredControls:
    """The spend controls a read found, from their rows."""
    controls = StoredControls(
        members=[(account_id, member) for account_id, member in members],
        held=[HeldBy._make(row) for row in held],
    )
    for row in limits:
        values = _SQLITE_LIMITS.read(row[: len(LIMIT_FIELDS)])
        controls.limits.append(SpendLimit(**values))
        start, spent, warned = row[len(LIMIT_FIELDS) :]
        if (started := _time_value(start)) is not None:
            controls.counted.append(Counted(values["id"], started, spent, warned))
    return controls


def _time_text(value: datetime | None) -> str | None:
    """A timestamp as ``tables.Timestamp`` stores it on SQLite: the UTC time in
    SQLAlchemy's DATETIME text, no offset (``2026-01-02 09:30:00.000000``), which sorts."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _time_value(text: str | None) -> datetime | None:
    """A timestamp SQLite stores as text, aware in UTC, as ``tables.Timestamp`` reads it."""
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


def _json_value(text: str | None) -> Any:
    """A JSON column's value, numbers exact, as the engine's deserializer reads it."""
    return None if text is None else jsonio.loads(text)


def _conversion(kind: Any) -> tuple[Callable[[Any], Any], Callable[[Any], Any]] | None:
    """How SQLAlchemy stores a value of a column's type on SQLite and reads it back, for
    the types whose values it changes."""
    if isinstance(kind, Timestamp):
        return _time_text, _time_value
    if isinstance(kind, JSON):
        return to_json, _json_value
    return None


class _SqliteColumns:
    """Some columns of one table, stored and read by SQL run on sqlite3 as SQLAlchemy
    stores and reads them on SQLite (a timestamp as the text of its UTC time, JSON as its
    text, NULL for None, the rest as it is), so that each reads what the other wrote."""

    def __init__(self, table: Table, names: Sequence[str]) -> None:
        self.table = table
        self.names = tuple(names)
        changed = [
            (index, name, conversion)
            for index, name in enumerate(self.names)
            if (conversion := _conversion(table.c[name].type)) is not None
        ]
        self._stored = [(index, store) for index, _, (store, _) in changed]
        self._read = [(name, read) for _, name, (_, read) in changed]

    def stored(self, values: Iterable[Any]) -> list[Any]:
        """A row's values (in the order of ``names``) as SQLite keeps them."""
        row = list(values)
        for index, store in self._stored:
            row[index] = store(row[index])
        return row

    def read(self, row: Sequence[Any]) -> dict[str, Any]:
        """A stored row (in the order of ``names``), by name."""
        values = dict(zip(self.names, row, strict=True))
        for name, read in self._read:
            values[name] = read(values[name])
        return values

    def insert(self, then: str = "") -> str:
        """``INSERT INTO lot_spends (transfer_id, lot_id, amount) VALUES (?, ?, ?)``."""
        columns, values = ", ".join(self.names), ", ".join("?" * len(self.names))
        return f"INSERT INTO {self.table.name} ({columns}) VALUES ({values}){then}"  # noqa: S608

    def update(self) -> str:
        """The row whose first column is the first value set to the others:
        ``UPDATE lots SET remaining = ?2 WHERE id = ?1``."""
        key, *names = self.names
        values = ", ".join(f"{name} = ?{index}" for index, name in enumerate(names, 2))
        return f"UPDATE {self.table.name} SET {values} WHERE {key} = ?1"  # noqa: S608

    def select(self, alias: str) -> str:
        """``h.id, h.account_id, …`` for ``alias`` h."""
        return ", ".join(f"{alias}.{name}" for name in self.names)


_SQLITE_HOLDS = _SqliteColumns(holds, HOLD_FIELDS)
_SQLITE_TRANSFERS = _SqliteColumns(
    transfers, (*(column.key for column in TRANSFER_COLUMNS), "fingerprint")
)
_SQLITE_SETTLED = _SqliteColumns(holds, SETTLED_FIELDS)
_SQLITE_MOVED = _SqliteColumns(
    accounts, ("id", "balance", "held", "debt", "lots_expire_at", "runway_warned", "updated_at")
)
_SQLITE_LOTS = _SqliteColumns(lots, LOT_FIELDS)
_SQLITE_MESSAGES = _SqliteColumns(outbox, MESSAGE_FIELDS)
_SQLITE_LIMITS = _SqliteColumns(spend_limits, LIMIT_FIELDS)
_SQLITE_WINDOWS = _SqliteColumns(limit_windows, WINDOW_FIELDS)
_hold_values = attrgetter(*HOLD_FIELDS[:-1])
_transfer_values = attrgetter(*_SQLITE_TRANSFERS.names[:-1])
_settled_values = attrgetter(*SETTLED_FIELDS)
_moved_values = attrgetter(*_SQLITE_MOVED.names[:-1])
_lot_values = itemgetter(*LOT_FIELDS)
_spend_values = itemgetter(*SPEND_FIELDS)
_message_values = itemgetter(*MESSAGE_FIELDS)

# SQLite's writers run one at a time (BEGIN IMMEDIATE), so reading the rows locks them,
# and whether an account has holds due cannot change before the engine closes them.
_SQLITE_LOCK = """
SELECT w.name, w.hold_id, a.id, a.balance, a.held, a.overdraft_limit, a.debt, a.status,
    a.lots_expire_at,
    EXISTS (
        SELECT 1 FROM holds h
        WHERE h.account_id = a.id AND h.status = 'open' AND h.expires_at <= :now
    ) AS holds_due,
    a.spend_controls, a.time_zone, a.runway_burn, a.runway_warned, a.auto_topup_below
FROM (
    SELECT name, NULL AS hold_id, account_id FROM account_names
    WHERE name IN (SELECT value FROM json_each(:names))
    UNION ALL
    SELECT account_id, id, account_id FROM holds
    WHERE id IN (SELECT value FROM json_each(:hold_ids))
) AS w JOIN accounts a ON a.id = w.account_id
ORDER BY a.id
"""
# A batch's reads in order, each with the lists of Wanted that make it wanted; their
# parameters are named after Wanted's fields. The holds past expiry are closed first (what
# each released), so the named holds are read as they are now.
_SQLITE_READS = (
    (
        """
UPDATE holds SET status = 'expired', updated_at = :now
WHERE (account_id IN (SELECT value FROM json_each(:holding))
        OR id IN (SELECT value FROM json_each(:hold_ids)))
    AND status = 'open' AND expires_at <= :now
RETURNING id, account_id, amount - captured
""",
        ("holding", "hold_ids"),
    ),
    (
        """
SELECT id, account_id, source, remaining, priority, expires_at FROM lots
WHERE account_id IN (SELECT value FROM json_each(:lot_owners)) AND remaining > 0
ORDER BY account_id, id
""",
        ("lot_owners",),
    ),
    (
        f"""
SELECT {_SQLITE_TRANSFERS.select("t")}
FROM json_each(:transfer_keys) AS k
JOIN transfers t ON t.app = k.value ->> 0 AND t.idempotency_key = k.value ->> 1
""",  # noqa: S608 - built once, from the tables' own column names
        ("transfer_keys",),
    ),
    (
        f"""
SELECT {_SQLITE_HOLDS.select("h")}
FROM json_each(:hold_keys) AS k
JOIN holds h ON h.app = k.value ->> 0 AND h.idempotency_key = k.value ->> 1
""",  # noqa: S608 - built once, from the tables' own column names
        ("hold_keys",),
    ),
    (
        f"""
SELECT {_SQLITE_HOLDS.select("h")} FROM holds h
WHERE h.id IN (SELECT value FROM json_each(:hold_ids))
""",  # noqa: S608 - built once, from the tables' own column names
        ("hold_ids",),
    ),
    # The proxy keys paying for new or named holds, each with what its open, unexpired
    # holds reserve (found by the key: ``+`` keeps the planner off the expiry index, which
    # would walk every open hold).
    (
        """
SELECT p.id, p.account_id, p.spend_limit, p.spent,
    (SELECT coalesce(sum(h.amount - h.captured), 0) FROM holds h
     WHERE h.proxy_key_id = p.id AND h.status = 'open' AND +h.expires_at > :now) AS held,
    p.expires_at, p.revoked_at
FROM proxy_keys p
WHERE p.id IN (SELECT value FROM json_each(:key_ids))
    OR p.id IN (
        SELECT proxy_key_id FROM holds WHERE id IN (SELECT value FROM json_each(:hold_ids))
    )
ORDER BY p.id
""",
        ("key_ids", "hold_ids"),
    ),
    # The spend controls of the locked accounts that have them: the members the batch
    # names, the limits (each with its latest window that has started, by the batch's
    # instant or, set by a clock running ahead, by the limit's), and what open, unexpired
    # holds reserve by spender.
    (
        """
SELECT account_id, member_id FROM members
WHERE account_id IN (SELECT value FROM json_each(:controlled))
    AND member_id IN (SELECT value FROM json_each(:members))
""",
        ("members",),
    ),
    (
        f"""
SELECT {_SQLITE_LIMITS.select("l")}, w.window_start, w.spent, w.warned
FROM spend_limits l LEFT JOIN limit_windows w
    ON w.account_id = l.account_id AND w.limit_id = l.id AND w.window_start = (
        SELECT max(window_start) FROM limit_windows
        WHERE account_id = l.account_id AND limit_id = l.id
            AND window_start <= max(:now, l.since)
    )
WHERE l.account_id IN (SELECT value FROM json_each(:controlled))
""",  # noqa: S608 - built once, from the tables' own column names
        ("controlled",),
    ),
    (
        """
SELECT account_id, member_id, app, proxy_key_id, sum(amount - captured) FROM holds
WHERE account_id IN (SELECT value FROM json_each(:controlled))
    AND status = 'open' AND expires_at > :now
GROUP BY account_id, member_id, app, proxy_key_id
""",
        ("controlled",),
    ),
)
_WANTED = tuple(wanted.name for wanted in fields(Wanted))
_CLAIM = " ON CONFLICT (app, idempotency_key) DO NOTHING"
_SQLITE_INSERT_HOLDS = _SQLITE_HOLDS.insert(_CLAIM)
_SQLITE_INSERT_TRANSFERS = _SQLITE_TRANSFERS.insert(_CLAIM)
_SQLITE_SETTLE = _SQLITE_SETTLED.update()
_SQLITE_KEY_SPENT = _SqliteColumns(proxy_keys, ("id", "spent")).update()
_SQLITE_MOVE = _SQLITE_MOVED.update()
_SQLITE_LOWER_LOT = _SqliteColumns(lots, ("id", "remaining")).update()
_SQLITE_INSERT_LOTS = _SQLITE_LOTS.insert()
_SQLITE_INSERT_SPENDS = _SqliteColumns(lot_spends, SPEND_FIELDS).insert()
_SQLITE_INSERT_MESSAGES = _SQLITE_MESSAGES.insert()
_SQLITE_COUNT_WINDOWS = _SQLITE_WINDOWS.insert(
    " ON CONFLICT (account_id, limit_id, window_start) DO UPDATE"
    " SET spent = spent + excluded.spent, warned = max(warned, excluded.warned)"
)


def _sqlite_read(raw: sqlite3.Connection, wanted: Wanted, now: str | None) -> list[list[Any]]:
    """Every read of a batch in one trip to SQLite's thread, each only when wanted."""
    lists = {name: getattr(wanted, name) for name in _WANTED}
    parameters = {name: to_json(values) for name, values in lists.items()} | {"now": now}
    return [
        sqlite_driver.fetch(raw, sql, parameters) if any(map(lists.get, needs)) else []
        for sql, needs in _SQLITE_READS
    ]


def _sqlite_write(
    raw: sqlite3.Connection,
    claims: Iterable[tuple[str, Sequence[Any]]],
    rest: Iterable[tuple[str, Sequence[Any]]],
) -> bool:
    """A batch's writes in one trip to SQLite's thread: the claims first (new holds, then
    transfers), the rest only if they inserted every row; whether they did."""
    for sql, rows in claims:
        if rows and sqlite_driver.execute_many(raw, sql, rows) < len(rows):
            return False
    for sql, rows in rest:
        if rows:
            sqlite_driver.execute_many(raw, sql, rows)
    return True


def _sqlite_hold(row: Sequence[Any]) -> tuple[Hold, str]:
    """A stored hold and its fingerprint."""
    values = _SQLITE_HOLDS.read(row)
    print_ = values.pop("fingerprint")
    return Hold(**values), print_
