"""The posting engine's SQLite statements, run on sqlite3 itself: every value stored and
read as SQLAlchemy stores and reads it, errors as SQLAlchemy's, one trip per step of a
batch, the indexes still used."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Column, func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.inprocess import Ledger
from creditsd.kit import db, ids
from creditsd.kit.db import RetryTransaction
from creditsd.kit.errors import RuleViolated
from creditsd.ledger import posting, statements
from creditsd.ledger.commands import CaptureHold, Command, OpenHold
from creditsd.ledger.models import REVENUE, Hold, Transfer
from creditsd.ledger.service import Charge
from creditsd.ledger.statements import (
    HOLD_COLUMNS,
    TRANSFER_COLUMNS,
    LiveLot,
    Wanted,
    Written,
    hold_from_row,
)
from creditsd.ledger.statements import sqlite as sqlite_statements
from creditsd.tables import accounts, holds, lot_spends, lots, outbox, proxy_keys, transfers

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])  # what PostgreSQL runs is apart
SECOND = timedelta(seconds=1)


def _hold(now: datetime, tag: str, proxy_key_id: str | None = None) -> Hold:
    return Hold(
        id=ids.new_id("hold"),
        account_id="u",
        amount=50_000,
        captured=0,
        status="open",
        expires_at=now.replace(microsecond=0) + timedelta(minutes=10),  # stored with .000000
        app="app",
        idempotency_key=f"hold-{tag}",
        description="résumé, 10 €",
        metadata={"rate": Decimal("0.10"), "tags": ["a", "é"], "big": 2**63 - 1},
        created_at=now,
        updated_at=now,
        pricing={"estimate": Decimal("5.0000"), "model": "openai/gpt-4o-mini"},
        proxy_key_id=proxy_key_id,
    )


def _transfer(now: datetime, tag: str, hold: Hold) -> Transfer:
    return Transfer(
        id=ids.new_id("tr"),
        kind="capture",
        debit_account_id="u",
        credit_account_id=REVENUE,
        amount=39,
        app="app",
        idempotency_key=f"capture-{tag}",
        hold_id=hold.id,
        description=None,
        metadata={"exact": Decimal("-0.000001"), "none": None},
        debit_balance_after=9_999_961,
        debit_available_after=9_999_961,
        credit_balance_after=None,
        credit_available_after=None,
        created_at=now,
        pricing={"lines": [{"unit_price": Decimal("0.0015"), "quantity": 1200}]},
        proxy_key_id=hold.proxy_key_id,
    )


def _lot(now: datetime, transfer: Transfer) -> dict[str, Any]:
    return {
        "id": ids.new_id("lot"),
        "account_id": "u",
        "source": "promotion",
        "amount": 700,
        "remaining": 650,
        "priority": 1,
        "expires_at": now + timedelta(days=30, microseconds=7),
        "transfer_id": transfer.id,
        "reference": None,
        "created_at": now,
    }


def _message(now: datetime, tag: str) -> dict[str, Any]:
    return {
        "destination": "gateway",
        "message_id": f"msg-{tag}",
        "event_type": "usage",
        "account_id": "u",
        "payload": {"amount": Decimal("0.0039"), "text": "ünïcode"},
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def _written(now: datetime, **changed: Any) -> Written:
    nothing: dict[str, Any] = {
        "holds": [],
        "transfers": [],
        "settled": [],
        "keys": [],
        "accounts": [],
        "lowered": [],
        "lots": [],
        "spends": [],
        "messages": [],
        "windows": [],
    }
    return Written(now=now, **{**nothing, **changed})


def _stored(ledger: Ledger, sql: str, *ids_: str) -> list[Any]:
    """Rows as SQLite itself keeps them, read past SQLAlchemy."""
    with sqlite3.connect(str(make_url(ledger.settings.database.url).database)) as raw:
        return raw.execute(sql, ids_).fetchall()


async def test_either_path_reads_what_the_other_wrote(ledger: Ledger) -> None:
    await ledger.grant("u", 1000 * 10_000)
    now = ledger.now()
    key_id = ids.new_id("pk")
    raw_hold, sa_hold = _hold(now, "raw", key_id), _hold(now, "sa", key_id)
    raw_transfer, sa_transfer = _transfer(now, "raw", raw_hold), _transfer(now, "sa", sa_hold)
    raw_lot, sa_lot = _lot(now, raw_transfer), _lot(now, sa_transfer)
    raw_settled = replace(raw_hold, captured=39, status="captured", updated_at=now + SECOND)
    lots_expire_at = now + timedelta(days=1)

    async def write(conn: AsyncConnection) -> None:
        await conn.execute(
            proxy_keys.insert().values(
                id=key_id, account_id="u", app="app", secret_hash="h", hint="pk-…", created_at=now
            )
        )
        await statements.of(conn).write(
            conn,
            _written(
                now,
                holds=[(raw_hold, "print-h")],
                transfers=[(raw_transfer, "print-t")],
                lots=[raw_lot],
                spends=[{"transfer_id": raw_transfer.id, "lot_id": raw_lot["id"], "amount": 50}],
                messages=[_message(now, "raw")],
            ),
        )
        await statements.of(conn).write(conn, _written(now, settled=[raw_settled]))
        await conn.execute(holds.insert(), _row(sa_hold, HOLD_COLUMNS, "print-h"))
        await conn.execute(transfers.insert(), _row(sa_transfer, TRANSFER_COLUMNS, "print-t"))
        await conn.execute(lots.insert(), sa_lot)
        await statements.queue(conn, [_message(now, "sa")])
        await conn.execute(
            update(accounts).where(accounts.c.id == "u").values(lots_expire_at=lots_expire_at)
        )

    await db.run(ledger.engine, write)

    async def through_sqlalchemy(conn: AsyncConnection) -> list[Any]:
        found: list[Any] = []
        for hold in (raw_settled, sa_hold):
            row = (await conn.execute(select(*HOLD_COLUMNS).where(holds.c.id == hold.id))).one()
            found.append(hold_from_row(row))
        for made in (raw_transfer, sa_transfer):
            query = select(*TRANSFER_COLUMNS).where(transfers.c.id == made.id)
            found.append(Transfer(**(await conn.execute(query)).one()._asdict()))
        for lot in (raw_lot, sa_lot):
            row = (await conn.execute(select(lots).where(lots.c.id == lot["id"]))).one()
            found.append(row._asdict())
        query = select(*(outbox.c[name] for name in _message(now, "")))
        found += [row._asdict() for row in await conn.execute(query.order_by(outbox.c.id))]
        spent = select(lot_spends.c.amount).where(lot_spends.c.lot_id == raw_lot["id"])
        found.append((await conn.execute(spent)).scalar_one())
        return found

    assert await db.run(ledger.engine, through_sqlalchemy, readonly=True) == [
        raw_settled,
        sa_hold,
        raw_transfer,
        sa_transfer,
        raw_lot,
        sa_lot,
        _message(now, "raw"),
        _message(now, "sa"),
        50,
    ]

    wanted = Wanted(
        holding=[],
        lot_owners=["u"],
        transfer_keys=[("app", "capture-raw"), ("app", "capture-sa")],
        hold_keys=[("app", "hold-sa")],
        hold_ids=[raw_hold.id, sa_hold.id],
        key_ids=[],
    )

    async def through_sqlite(conn: AsyncConnection) -> Any:
        sql = statements.of(conn)
        assert isinstance(sql, statements.SqliteStatements)
        return await sql.lock_accounts(conn, ["u"], [], now), await sql.read(conn, wanted, now)

    (locked,), found = await db.run(ledger.engine, through_sqlite, dry_run=True)
    assert locked.lots_expire_at == lots_expire_at
    assert found.transfers == {
        ("app", "capture-raw"): (raw_transfer, "print-t"),
        ("app", "capture-sa"): (sa_transfer, "print-t"),
    }
    assert found.holds_by_key == {("app", "hold-sa"): (sa_hold, "print-h")}
    assert sorted(found.named, key=lambda hold: hold.id) == sorted(
        [raw_settled, sa_hold], key=lambda hold: hold.id
    )
    assert [lot for lot in found.live if lot.id in {raw_lot["id"], sa_lot["id"]}] == [
        LiveLot(*(lot[name] for name in LiveLot._fields))
        for lot in sorted((raw_lot, sa_lot), key=lambda lot: lot["id"])
    ]
    # The open one (SQLAlchemy's) reserves its whole amount on the key.
    assert [(key.id, key.held) for key in found.keys] == [(key_id, sa_hold.amount)]

    # Stored alike, to the letter: timestamps as the UTC time's text, integers as integers.
    # (JSON text may differ in its escapes: it is read back, not compared.)
    times = "SELECT expires_at, created_at, typeof(amount), typeof(captured) FROM holds"
    both = _stored(ledger, f"{times} WHERE id IN (?, ?)", raw_hold.id, sa_hold.id)
    assert both[0] == both[1]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", both[0][0])
    lot_times = "SELECT expires_at, created_at, typeof(remaining) FROM lots WHERE id IN (?, ?)"
    both = _stored(ledger, lot_times, raw_lot["id"], sa_lot["id"])
    assert both[0] == both[1]


def _row(value: Hold | Transfer, columns: Iterable[Column[Any]], print_: str) -> dict[str, Any]:
    """What SQLAlchemy inserts for a hold or transfer."""
    return {column.key: getattr(value, column.key) for column in columns} | {"fingerprint": print_}


async def test_a_key_taken_since_the_batch_looked_stops_its_write_and_reruns(
    ledger: Ledger,
) -> None:
    await ledger.grant("u", 100, idempotency_key="taken")
    now = ledger.now()
    hold = _hold(now, "new")
    taken = replace(_transfer(now, "x", hold), app="local", idempotency_key="taken")
    lot = _lot(now, taken)

    async def work(conn: AsyncConnection) -> int:
        batch = _written(now, holds=[(hold, "p")], transfers=[(taken, "p")], lots=[lot])
        with pytest.raises(RetryTransaction):
            await statements.of(conn).write(conn, batch)
        query = select(func.count()).select_from(lots).where(lots.c.id == lot["id"])
        return int((await conn.execute(query)).scalar_one())

    assert await db.run(ledger.engine, work, dry_run=True) == 0  # nothing past the claims


async def test_a_broken_check_is_the_rule_it_broke(ledger: Ledger) -> None:
    """As db.run answers SQLAlchemy's statements: 409 rule_violated, naming the rule."""
    await ledger.grant("u", 100)
    (lot_id,) = _stored(ledger, "SELECT id FROM lots")
    batch = _written(ledger.now(), lowered=[(lot_id[0], 101)])
    with pytest.raises(RuleViolated) as broken:
        await db.run(ledger.engine, lambda conn: statements.of(conn).write(conn, batch))
    assert broken.value.details == {"rule": "ck_lots_remaining"}


async def test_a_batch_is_one_trip_a_step_whatever_its_size(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a", "b", "c"):
        await ledger.grant(name, 1000)
    opened = [await ledger.open_hold(name, 100) for name in ("a", "b")]
    trips = 0
    execute = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal trips
        trips += 1
        return await execute(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    async def post(entries: list[Command]) -> int:
        """The trips the engine makes for a batch (its transaction's BEGIN and COMMIT apart)."""

        async def work(conn: AsyncConnection) -> int:
            nonlocal trips
            trips = 0
            outcomes = await posting.post(conn, entries, ledger.policy, ledger.now())
            assert not any(isinstance(outcome, Exception) for outcome in outcomes), outcomes
            return trips

        return await db.run(ledger.engine, work)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    batch: list[Command] = [
        *(
            Charge(account_id=name, amount=10, app="t", idempotency_key=name).movement()
            for name in "abc"
        ),
        *(
            CaptureHold(hold_id=hold.id, amount=30, app="t", idempotency_key=f"capture:{hold.id}")
            for hold in opened
        ),
        OpenHold(
            account_id="c", amount=50, expires_in=60, app="t", idempotency_key="h", fresh_key=True
        ),
    ]
    assert await post(batch) == 3  # the lock, the read, the write
    fresh = OpenHold(
        account_id="c", amount=50, expires_in=60, app="t", idempotency_key="h2", fresh_key=True
    )
    assert await post([fresh]) == 2  # nothing to read


# The tables whose full scans a batch must never make.
_SCANNED = re.compile(r"SCAN (accounts|account_names|holds|transfers|lots|proxy_keys)\b")


async def test_the_planner_still_uses_the_indexes(ledger: Ledger) -> None:
    """Lists passed to ``json_each`` still search by index; live lots by their partial
    index; what a proxy key's holds reserve by the key's own."""
    plans = {}
    with sqlite3.connect(str(make_url(ledger.settings.database.url).database)) as raw:
        reads = (sql for sql, _ in sqlite_statements._SQLITE_READS)
        for sql in (sqlite_statements._SQLITE_LOCK, *reads):
            parameters = dict.fromkeys(("names", "now", *sqlite_statements._WANTED), "[]")
            plan = [row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {sql}", parameters)]
            assert not any(map(_SCANNED.match, plan)), (sql, plan)
            plans[sql] = " / ".join(plan)
    joined = "\n".join(plans.values())
    assert "USING INDEX ix_lots_spend_order (account_id=?)" in joined
    assert "USING INDEX ix_holds_proxy_key_id_status (proxy_key_id=? AND status=?)" in joined
    assert "USING INDEX sqlite_autoindex_transfers_2 (app=? AND idempotency_key=?)" in joined
    assert "USING INDEX sqlite_autoindex_holds_2 (app=? AND idempotency_key=?)" in joined
