"""The posting engine's statements on PostgreSQL: constant SQL run on asyncpg itself, each
batch's rows passed as arrays to ``unnest``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from operator import attrgetter
from typing import Any

import asyncpg
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.kit import jsonio
from creditsd.kit.db import RetryTransaction
from creditsd.ledger.limits import Counted, HeldBy, SpendLimit
from creditsd.ledger.models import ExpiredHold, Hold, Transfer
from creditsd.ledger.statements.shared import (
    HOLD_COLUMNS,
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


class PostgresStatements(Statements):
    """PostgreSQL: constant SQL run on asyncpg itself (prepared once per connection, inside
    the transaction SQLAlchemy began), each batch's rows passed as arrays to ``unnest``.
    A batch is four statements: the lock, one read (expired holds closed, lots, stored
    keys, named holds and their keys, spend controls), one write (the transfers, then,
    only if every key was claimed, everything else, outbox messages and limit windows
    included), the commit."""

    insert_or_skip = staticmethod(postgresql.insert)

    async def lock_accounts(
        self, conn: AsyncConnection, names: list[str], hold_ids: list[str], now: datetime
    ) -> list[Locked]:
        rows = await (await _driver(conn)).fetch(_PG_LOCK, names, hold_ids)
        return [Locked._make(row) for row in rows]

    async def read(self, conn: AsyncConnection, wanted: Wanted, now: datetime) -> Found:
        found = Found()
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
            wanted.controlled,
            wanted.members,
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
            elif kind == "member":
                found.controls.members.append((row[1], row[0]))
            elif kind in _CONTROLS:
                _CONTROLS[kind](found, jsonio.loads(row[-1]))
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
        messages = ([message[name] for message in batch.messages] for name in MESSAGE_FIELDS)
        moved = batch.accounts
        opened = ([getattr(hold, name) for hold, _ in batch.holds] for name in HOLD_FIELDS[:-1])
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
            [account.runway_warned for account in moved],
            [lot_id for lot_id, _ in batch.lowered],
            [left for _, left in batch.lowered],
            *([lot[name] for lot in batch.lots] for name in LOT_FIELDS),
            *([spend[name] for spend in batch.spends] for name in SPEND_FIELDS),
            *_pg_arrays(MESSAGE_FIELDS, messages),
            *_pg_arrays(HOLD_FIELDS, [*opened, [print_ for _, print_ in batch.holds]]),
            len(batch.holds),
            *([getattr(hold, name) for hold in batch.settled] for name in SETTLED_FIELDS),
            [key_id for key_id, _ in batch.keys],
            [spent for _, spent in batch.keys],
            *(list(zip(*batch.windows, strict=True)) or [()] * len(WINDOW_FIELDS)),
        )
        if not claimed:
            raise RetryTransaction("an idempotency key was claimed concurrently")


def _limit(found: Found, values: dict[str, Any]) -> None:
    """A limit the read found, with its latest window that started (if any)."""
    start, spent, warned = (values.pop(name) for name in ("window_start", "spent", "warned"))
    values["since"] = datetime.fromisoformat(values["since"])
    limit = SpendLimit(**values)
    found.controls.limits.append(limit)
    if start is not None:
        found.controls.counted.append(
            Counted(limit.id, datetime.fromisoformat(start), int(spent), int(warned))
        )


def _held(found: Found, values: dict[str, Any]) -> None:
    """What open holds of one spender reserve."""
    found.controls.held.append(HeldBy(**values))


_CONTROLS: dict[str, Callable[[Found, dict[str, Any]], None]] = {"limit": _limit, "held": _held}


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


# A statement that waited for a lock sees the holds as they were before it waited (only the
# locked rows are read again): every account that holds anything may have holds due. The
# accounts of named holds come by the hold (a hold's account never changes).
_PG_LOCK = """
SELECT w.name, w.hold_id, a.id, a.balance, a.held, a.overdraft_limit, a.debt, a.status,
    a.lots_expire_at, TRUE AS holds_due, a.spend_controls, a.time_zone, a.runway_burn,
    a.runway_warned, a.auto_topup_below
FROM (
    SELECT name, NULL::text AS hold_id, account_id FROM account_names WHERE name = ANY($1::text[])
    UNION ALL
    SELECT account_id, id, account_id FROM holds WHERE id = ANY($2::text[])
) AS w JOIN accounts a ON a.id = w.account_id
ORDER BY a.id
FOR NO KEY UPDATE OF a
"""
_PG_HOLD_SELECT = ", ".join(f"h.{column.key}" for column in HOLD_COLUMNS)
# The holds past expiry closed (it runs after the lock: it sees every hold committed before),
# then, each row saying its kind: live lots, closed holds (what they released), the members
# the batch names of accounts with spend controls, and as JSON in the last column: stored
# transfers and holds (replays: rare), the holds the batch names (as they were before this
# statement closed any), the proxy keys paying for new or named holds, locked, each with
# what its open, unexpired holds reserve, and the controlled accounts' limits (each with
# its latest window that has started, by the batch's instant or, set by a clock running
# ahead, by the limit's) and what their open, unexpired holds reserve by spender (the
# statement sees the holds it closes as they were: their expiry leaves them out).
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
    SELECT {_PG_HOLD_SELECT}, h.fingerprint FROM holds h WHERE h.id = ANY($6::text[])
    UNION ALL
    SELECT {_PG_HOLD_SELECT}, h.fingerprint
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
UNION ALL
SELECT 'member', member_id, account_id, NULL, NULL, NULL, NULL, NULL FROM members
WHERE account_id = ANY($10::text[]) AND member_id = ANY($11::text[])
UNION ALL
SELECT 'limit', NULL, NULL, NULL, NULL, NULL, NULL, row_to_json(limited)::text
FROM (
    SELECT {", ".join(f"l.{name}" for name in LIMIT_FIELDS)}, w.window_start, w.spent, w.warned
    FROM spend_limits l LEFT JOIN LATERAL (
        SELECT window_start, spent, warned FROM limit_windows
        WHERE account_id = l.account_id AND limit_id = l.id
            AND window_start <= greatest($5::timestamptz, l.since)
        ORDER BY window_start DESC LIMIT 1
    ) AS w ON TRUE
    WHERE l.account_id = ANY($10::text[])
) AS limited
UNION ALL
SELECT 'held', NULL, NULL, NULL, NULL, NULL, NULL, row_to_json(reserved)::text
FROM (
    SELECT account_id, member_id AS member, app, proxy_key_id AS key,
        sum(amount - captured) AS amount
    FROM holds
    WHERE account_id = ANY($10::text[]) AND status = 'open' AND expires_at > $5::timestamptz
    GROUP BY account_id, member_id, app, proxy_key_id
) AS reserved
"""  # noqa: S608 - built once, from the tables' own column names
# Every transfer column but created_at (one value for the batch), then the fingerprint.
_PG_TRANSFER_FIELDS = [column.key for column in TRANSFER_COLUMNS if column.key != "created_at"]
_pg_transfer_values = attrgetter(*_PG_TRANSFER_FIELDS)
_PG_CONVERT: dict[str, Callable[[Any], Any]] = {
    "metadata": to_json,
    "pricing": to_json,
    "payload": to_json,
}
_PG_BIGINT = {"amount", *(name for name in _PG_TRANSFER_FIELDS if name.endswith("_after"))}
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
_PG_HOLD_TYPES = tuple(
    "int8"
    if name in {"amount", "captured"}
    else "timestamptz"
    if name in {"expires_at", "created_at", "updated_at"}
    else "text"
    for name in HOLD_FIELDS
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

    # Numbered in the order PostgresStatements.write passes them.
    fields = [*_PG_TRANSFER_FIELDS, "fingerprint"]
    transfer_arrays = arrays(*("int8" if name in _PG_BIGINT else "text" for name in fields))
    now, count = next(numbers), next(numbers)
    account_arrays = arrays("text", "int8", "int8", "int8", "timestamptz", "int4")
    lowered_arrays = arrays("text", "int8")
    lot_arrays = arrays(*_PG_LOT_TYPES)
    spend_arrays = arrays("text", "text", "int8")
    message_arrays = arrays(*_PG_MESSAGE_TYPES)
    hold_arrays = arrays(*_PG_HOLD_TYPES)
    holds = next(numbers)
    settled_arrays = arrays("text", "text", "int8", "timestamptz", "timestamptz")
    key_arrays = arrays("text", "int8")
    window_arrays = arrays("text", "text", "timestamptz", "int8", "int4")
    parts = [
        _pg_claim(hold_arrays, holds, fields, transfer_arrays, count, now),
        _pg_move_accounts(account_arrays, now),
        _pg_lower_lots(lowered_arrays),
        _pg_fill_lots(lot_arrays),
        _pg_spend_lots(spend_arrays),
        _pg_queue_messages(message_arrays),
        _pg_settle_holds(settled_arrays),
        _pg_charge_keys(key_arrays),
        _pg_count_windows(window_arrays),
    ]
    return f"""
WITH {", ".join(parts)}
SELECT every FROM claimed
"""  # noqa: S608 - built once, from the parts below


def _pg_values(fields: Sequence[str]) -> str:
    """The unnested columns to insert, JSON ones cast to ``json``."""
    return ", ".join(f"v.{name}::json" if name in _PG_CONVERT else f"v.{name}" for name in fields)


def _pg_claim(
    hold_arrays: str, holds: int, fields: Sequence[str], transfer_arrays: str, count: int, now: int
) -> str:
    """The new holds and transfers inserted unless their keys are taken, then ``claimed``:
    whether every one was."""
    return f"""opened AS (
    INSERT INTO holds ({", ".join(HOLD_FIELDS)})
    SELECT {_pg_values(HOLD_FIELDS)}
    FROM unnest({hold_arrays}) AS v({", ".join(HOLD_FIELDS)})
    ON CONFLICT (app, idempotency_key) DO NOTHING
    RETURNING 1
), inserted AS (
    INSERT INTO transfers ({", ".join(fields)}, created_at)
    SELECT {_pg_values(fields)}, ${now}::timestamptz
    FROM unnest({transfer_arrays}) AS v({", ".join(fields)})
    ON CONFLICT (app, idempotency_key) DO NOTHING
    RETURNING 1
), claimed AS (
    SELECT (SELECT count(*) FROM inserted) = ${count}::int8
        AND (SELECT count(*) FROM opened) = ${holds}::int8 AS every
)"""  # noqa: S608 - built once, from the tables' own column names


def _pg_move_accounts(arrays: str, now: int) -> str:
    return f"""moved AS (
    UPDATE accounts SET balance = v.balance, held = v.held, debt = v.debt,
        lots_expire_at = v.lots_expire_at, runway_warned = v.runway_warned,
        updated_at = ${now}::timestamptz
    FROM unnest({arrays}) AS v(id, balance, held, debt, lots_expire_at, runway_warned), claimed
    WHERE accounts.id = v.id AND claimed.every
    RETURNING 1
)"""  # noqa: S608 - built once, from placeholders


def _pg_lower_lots(arrays: str) -> str:
    return f"""lowered AS (
    UPDATE lots SET remaining = v.remaining
    FROM unnest({arrays}) AS v(id, remaining), claimed
    WHERE lots.id = v.id AND claimed.every
    RETURNING 1
)"""  # noqa: S608 - built once, from placeholders


def _pg_fill_lots(arrays: str) -> str:
    return f"""filled AS (
    INSERT INTO lots ({", ".join(LOT_FIELDS)})
    SELECT v.* FROM unnest({arrays}) AS v({", ".join(LOT_FIELDS)}), claimed
    WHERE claimed.every
    RETURNING 1
)"""  # noqa: S608 - built once, from the table's own column names


def _pg_spend_lots(arrays: str) -> str:
    return f"""spent AS (
    INSERT INTO lot_spends ({", ".join(SPEND_FIELDS)})
    SELECT v.* FROM unnest({arrays}) AS v({", ".join(SPEND_FIELDS)}), claimed
    WHERE claimed.every
    RETURNING 1
)"""  # noqa: S608 - built once, from the table's own column names


def _pg_queue_messages(arrays: str) -> str:
    return f"""queued AS (
    INSERT INTO outbox ({", ".join(MESSAGE_FIELDS)})
    SELECT {_pg_values(MESSAGE_FIELDS)}
    FROM unnest({arrays}) AS v({", ".join(MESSAGE_FIELDS)}), claimed
    WHERE claimed.every
    RETURNING 1
)"""  # noqa: S608 - built once, from the table's own column names


def _pg_settle_holds(arrays: str) -> str:
    return f"""settled AS (
    UPDATE holds SET status = v.status, captured = v.captured, expires_at = v.expires_at,
        updated_at = v.updated_at
    FROM unnest({arrays}) AS v(id, status, captured, expires_at, updated_at), claimed
    WHERE holds.id = v.id AND claimed.every
    RETURNING 1
)"""  # noqa: S608 - built once, from placeholders


def _pg_charge_keys(arrays: str) -> str:
    return f"""charged AS (
    UPDATE proxy_keys SET spent = v.spent
    FROM unnest({arrays}) AS v(id, spent), claimed
    WHERE proxy_keys.id = v.id AND claimed.every
    RETURNING 1
)"""  # noqa: S608 - built once, from placeholders


def _pg_count_windows(arrays: str) -> str:
    """What the batch spent added to each limit window's counter (a new window starts
    one); a window's warnings only ever go up."""
    return f"""counted AS (
    INSERT INTO limit_windows ({", ".join(WINDOW_FIELDS)})
    SELECT v.* FROM unnest({arrays}) AS v({", ".join(WINDOW_FIELDS)}), claimed
    WHERE claimed.every
    ON CONFLICT (account_id, limit_id, window_start) DO UPDATE
    SET spent = limit_windows.spent + excluded.spent,
        warned = greatest(limit_windows.warned, excluded.warned)
    RETURNING 1
)"""  # noqa: S608 - built once, from the table's own column names


_PG_WRITE = _pg_write()
