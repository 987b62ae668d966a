"""One model, every mode: the same random operations through SQLite and PostgreSQL, with
group commit on and off, with and without a webhook subscriber, must leave the same
ledger behind: every outcome, every stored figure (debt included), every transfer."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.gateway import service as gateway
from creditsd.inprocess import Ledger
from creditsd.kit import db
from creditsd.kit.errors import CreditsError
from creditsd.ledger.models import Transfer
from creditsd.tables import accounts, lots, transfers
from creditsd.webhooks import service as webhooks
from tests.conftest import Clock, Databases, make_settings

ACCOUNTS = ("a", "b", "c")
MODES = [
    (backend, group, subscriber)
    for backend, group, subscriber in itertools.product(
        ("sqlite", "postgresql"), (True, False), (False, True)
    )
]
amounts = st.integers(min_value=1, max_value=80)
account_names = st.sampled_from(ACCOUNTS)

operations = st.one_of(
    st.tuples(
        st.just("grant"),
        account_names,
        amounts,
        st.sampled_from(["promotion", "purchase", "adjustment"]),
        st.sampled_from([None, 20, 90]),
    ),
    st.tuples(st.just("charge"), account_names, amounts),
    st.tuples(
        st.just("burst"),
        st.lists(
            st.tuples(account_names, amounts), min_size=2, max_size=3, unique_by=lambda x: x[0]
        ),
    ),
    st.tuples(st.just("replay"), st.integers(min_value=0, max_value=30)),
    st.tuples(st.just("hold"), account_names, amounts, st.sampled_from([30, 300])),
    st.tuples(st.just("capture"), st.integers(0, 5), amounts, st.booleans()),
    st.tuples(st.just("release"), st.integers(0, 5)),
    st.tuples(st.just("sync"), account_names, st.integers(min_value=-40, max_value=60)),
    st.tuples(st.just("usage"), account_names, amounts),
    st.tuples(st.just("advance"), st.sampled_from([15, 60])),
    st.tuples(st.just("sweep")),
    st.tuples(st.just("status"), account_names, st.sampled_from(["frozen", "active"])),
)


@dataclass
class Mode:
    """One ledger in one mode, with its own clock."""

    name: str
    ledger: Ledger
    clock: Clock


async def subscribe(ledger: Ledger) -> None:
    """Register a webhook endpoint, so every change writes outbox rows."""
    await db.run(
        ledger.engine,
        lambda conn: webhooks.register(
            conn,
            "http://127.0.0.1:9/hook",
            ["charge.succeeded", "balance.low", "balance.depleted", "grant.expired"],
            None,
            ledger.now(),
            actor="test",
            idempotency_key="subscriber",
        ),
    )
    ledger.outbox.forget()


@pytest.fixture(scope="module")
async def modes(databases: Databases) -> AsyncIterator[list[Mode]]:
    """A ledger per mode, each on a database of its own."""
    opened = []
    start = Clock().now
    for backend, group, subscriber in MODES:
        url = await databases.fresh(backend)
        clock = Clock()
        clock.now = start  # one time for all, so expiries match
        settings_ = make_settings(
            url,
            ledger={"group_commit": str(group).lower()},
            webhooks={"low_balance_threshold": 30},
        )
        ledger = await Ledger.connect(settings_, clock=clock)
        if subscriber:
            await subscribe(ledger)
        name = f"{backend}{'+group' if group else ''}{'+subscriber' if subscriber else ''}"
        opened.append(Mode(name, ledger, clock))
    yield opened
    for mode in opened:
        await mode.ledger.close()


class Driver:
    """Plays operations on one ledger and writes down what each did."""

    def __init__(self, mode: Mode, prefix: str) -> None:
        self.ledger, self.clock, self.prefix = mode.ledger, mode.clock, prefix
        self.holds: list[str] = []
        self.writes: list[tuple[Any, ...]] = []  # the writes that went through: replayable
        self.keys = (f"{prefix}-{n}" for n in itertools.count())

    def id(self, account: str) -> str:
        return f"{self.prefix}-{account}"

    async def play(self, operation: tuple[Any, ...]) -> Any:
        try:
            return await self._play(operation)
        except CreditsError as error:
            return error.code

    async def _play(self, op: tuple[Any, ...]) -> Any:
        ledger, kind = self.ledger, op[0]
        if kind == "grant":
            _, account, amount, source, lifetime = op
            expires = None if lifetime is None else self.clock.now + timedelta(seconds=lifetime)
            key = next(self.keys)
            done = await ledger.grant(
                self.id(account), amount, source=source, expires_at=expires, idempotency_key=key
            )
            self.writes.append(("grant", account, amount, source, expires, key))
            return _seen(done)
        if kind == "charge":
            key = next(self.keys)
            done = await ledger.charge(self.id(op[1]), op[2], idempotency_key=key)
            self.writes.append(("charge", op[1], op[2], key))
            return _seen(done)
        if kind == "burst":
            charges = [(account, amount, next(self.keys)) for account, amount in op[1]]
            together = await asyncio.gather(
                *(
                    ledger.charge(self.id(account), amount, idempotency_key=key)
                    for account, amount, key in charges
                ),
                return_exceptions=True,
            )
            return [
                _seen(one) if isinstance(one, Transfer) else getattr(one, "code", repr(one))
                for one in together
            ]
        if kind == "replay":
            if not self.writes:
                return None
            write = self.writes[op[1] % len(self.writes)]
            if write[0] == "grant":
                _, account, amount, source, expires, key = write
                again = await ledger.grant(
                    self.id(account), amount, source=source, expires_at=expires, idempotency_key=key
                )
            else:
                again = await ledger.charge(self.id(write[1]), write[2], idempotency_key=write[3])
            assert again.replayed
            return _seen(again)
        if kind == "hold":
            hold = await ledger.open_hold(self.id(op[1]), op[2], expires_in=op[3])
            self.holds.append(hold.id)
            return ("hold", hold.amount)
        if kind in {"capture", "release"}:
            if not self.holds:
                return None
            hold_id = self.holds[op[1] % len(self.holds)]
            if kind == "release":
                return (await ledger.release_hold(hold_id)).status
            _, transfer = await ledger.capture_hold(
                hold_id, op[2], final=op[3], idempotency_key=next(self.keys)
            )
            return _seen(transfer)
        if kind in {"sync", "usage"}:
            return await db.run(ledger.engine, lambda conn: self._gateway(conn, op))
        if kind == "advance":
            self.clock.advance(op[1])
            return None
        if kind == "sweep":  # sweeps every account: counts would tell of earlier examples
            await ledger.expire_holds()
            await ledger.expire_lots()
            return None
        await ledger.open_account(self.id(op[1]), status=op[2])
        return op[2]

    async def _gateway(self, conn: AsyncConnection, op: tuple[Any, ...]) -> Any:
        now, policy = self.ledger.now(), self.ledger.policy
        if op[0] == "sync":
            done = await gateway.sync_balance(conn, self.id(op[1]), op[2], policy, now)
            return None if done is None else _seen(done)
        key = next(self.keys)
        units = Decimal(op[2]).scaleb(-self.ledger.money.scale)  # at a dollar a credit
        post = gateway.UsagePost(
            user_id=self.id(op[1]),
            model="usage",
            cost=units,
            gateway_balance_usd=None,
            payload={},
            request_id=key,
        )
        recorded = await gateway.record_usage(
            conn, post, Decimal(1), self.ledger.money, policy, now
        )
        return (recorded.status, recorded.balance)

    async def state(self) -> Any:
        """Every stored figure and every transfer of this example's accounts."""
        ids = [self.id(account) for account in ACCOUNTS]
        return await db.run(self.ledger.engine, lambda conn: _state(conn, ids), readonly=True)


def _seen(transfer: Transfer) -> tuple[Any, ...]:
    """What a caller sees of a transfer, without its random ids."""
    return (
        transfer.kind,
        transfer.amount,
        transfer.debit_balance_after,
        transfer.debit_available_after,
        transfer.credit_balance_after,
        transfer.credit_available_after,
        sorted((part.source, part.amount) for part in transfer.lots),
        transfer.replayed,
    )


async def _state(conn: AsyncConnection, ids: list[str]) -> Any:
    rows = await conn.execute(
        select(
            accounts.c.id,
            accounts.c.balance,
            accounts.c.held,
            accounts.c.debt,
            accounts.c.status,
            accounts.c.lots_expire_at,
        )
        .where(accounts.c.id.in_(ids))
        .order_by(accounts.c.id)
    )
    figures = [tuple(row) for row in rows]
    moved = await conn.execute(
        select(
            transfers.c.kind,
            transfers.c.debit_account_id,
            transfers.c.credit_account_id,
            transfers.c.amount,
            transfers.c.debit_balance_after,
            transfers.c.debit_available_after,
            transfers.c.credit_balance_after,
            transfers.c.credit_available_after,
        )
        .where(or_(transfers.c.debit_account_id.in_(ids), transfers.c.credit_account_id.in_(ids)))
        .order_by(transfers.c.id)
    )
    per_account: dict[str, list[tuple[Any, ...]]] = {}
    for row in moved:
        for side in (row.debit_account_id, row.credit_account_id):
            if side in ids:
                per_account.setdefault(side, []).append(tuple(row))
    held_lots = await conn.execute(
        select(lots.c.account_id, lots.c.source, lots.c.amount, lots.c.remaining, lots.c.expires_at)
        .where(lots.c.account_id.in_(ids))
        .order_by(lots.c.account_id, lots.c.id)  # ids are in the order lots were filled
    )
    return figures, per_account, [tuple(row) for row in held_lots]


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(operations, min_size=5, max_size=30))
async def test_every_mode_leaves_the_same_ledger(
    modes: list[Mode], ops: list[tuple[Any, ...]]
) -> None:
    prefix = uuid.uuid4().hex[:8]
    drivers = [Driver(mode, prefix) for mode in modes]
    funded = [("grant", account, 100, "purchase", None) for account in ACCOUNTS]
    for index, op in enumerate([*funded, *ops]):
        seen = [await driver.play(op) for driver in drivers]
        assert all(outcome == seen[0] for outcome in seen), (index, op, seen)
    states = [await driver.state() for driver in drivers]
    for mode, state in zip(modes, states, strict=True):
        assert state == states[0], (mode.name, ops)
    figures, *_ = states[0]
    for driver in drivers:
        for account_id, *_ in figures:
            verification = await driver.ledger.rebuild_account(account_id)
            assert verification.valid
        assert await driver.state() == states[0]  # a rebuild of a sound ledger changes nothing
