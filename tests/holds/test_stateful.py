"""Hypothesis interleaves holds with charges, grants of lots that expire, overdraft changes,
the sweeper and time, alone and in concurrent bursts, in every engine mode (SQLite and
PostgreSQL, group commit on and off). After every step: the ledger sums to zero, every
balance and held figure equals its history, nothing is overdrawn, no lot past its
expiry was spent but by its lapse or by a hold's capture, and every hold was resolved
at most once, its captures adding up to what it says it captured."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.inprocess import Ledger
from creditsd.kit import db
from creditsd.kit.errors import CreditsError
from creditsd.ledger.errors import (
    HoldExceeded,
    HoldNotOpen,
    InsufficientCredits,
    OverdraftInUse,
)
from creditsd.ledger.models import Hold
from creditsd.tables import holds, lot_spends, lots, transfers
from tests.conftest import Clock, make_settings

ACCOUNTS = ("a", "b")
amounts = st.integers(min_value=1, max_value=60)
accounts = st.sampled_from(ACCOUNTS)
spends = st.one_of(amounts, st.none())  # None: all the account may spend, overdraft included


@dataclass
class ModelHold:
    """What the model knows of a hold: its account and how it was resolved."""

    id: str
    account: str
    amount: int
    resolved: str | None = None  # captured or released, once a request did it


class HoldsMachine(RuleBasedStateMachine):
    """Random holds, captures, releases, extensions, charges, expiring grants, overdraft
    changes, sweeps and time on two accounts."""

    ledger: Ledger
    loop: asyncio.AbstractEventLoop
    clock: Clock

    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.prefix = uuid.uuid4().hex[:8]
        self.known: dict[str, ModelHold] = {}
        self.resolved: dict[str, str] = {}  # each hold's status once it left open

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def id(self, account: str) -> str:
        return f"{self.prefix}-{account}"

    def available(self, account: str) -> int:
        return int(self.run(self.ledger.get_account(self.id(account))).available)

    @initialize(limit=st.sampled_from([0, 50]))
    def start(self, limit: int) -> None:
        """Both accounts open, often with an overdraft (spending past their lots)."""
        for account in ACCOUNTS:
            self.run(self.ledger.open_account(self.id(account), overdraft_limit=limit))

    @rule(
        account=accounts,
        amount=amounts,
        source=st.sampled_from(["promotion", "adjustment", "purchase"]),
        lifetime=st.sampled_from([None, 15, 45]),
    )
    def grant(self, account: str, amount: int, source: str, lifetime: int | None) -> None:
        expires = None if lifetime is None else self.clock.now + timedelta(seconds=lifetime)
        self.run(self.ledger.grant(self.id(account), amount, source=source, expires_at=expires))

    @rule(account=accounts, amount=spends)
    def charge(self, account: str, amount: int | None) -> None:
        available = self.available(account)
        amount = amount or max(available, 1)
        attempt = self.ledger.charge(self.id(account), amount, idempotency_key=uuid.uuid4().hex)
        if amount > available:
            with pytest.raises(InsufficientCredits):
                self.run(attempt)
            return
        self.run(attempt)

    @rule(account=accounts, limit=st.sampled_from([0, 20, 50]))
    def overdraft(self, account: str, limit: int) -> None:
        found = self.run(self.ledger.get_account(self.id(account)))
        attempt = self.ledger.open_account(self.id(account), overdraft_limit=limit)
        if found.available - found.overdraft_limit + limit < 0:
            with pytest.raises(OverdraftInUse):
                self.run(attempt)
            return
        self.run(attempt)

    @rule(target=holds, account=accounts, amount=spends, expires_in=st.sampled_from([10, 40]))
    def open_hold(self, account: str, amount: int | None, expires_in: int) -> Any:
        available = self.available(account)
        amount = amount or max(available, 1)
        attempt = self.ledger.open_hold(self.id(account), amount, expires_in=expires_in)
        if amount > available:
            with pytest.raises(InsufficientCredits):
                self.run(attempt)
            return multiple()
        hold = self.run(attempt)
        self.known[hold.id] = ModelHold(hold.id, account, amount)
        return self.known[hold.id]

    @rule(hold=holds, amount=amounts, final=st.booleans())
    def capture(self, hold: ModelHold, amount: int, final: bool) -> None:
        before = self.run(self.ledger.get_hold(hold.id))
        attempt = self.ledger.capture_hold(
            hold.id, amount, final=final, idempotency_key=uuid.uuid4().hex
        )
        if before.status_at(self.clock.now) != "open":
            with pytest.raises(HoldNotOpen):
                self.run(attempt)
            return
        reserved = before.amount - before.captured
        if not final and amount > reserved:
            with pytest.raises(HoldExceeded):
                self.run(attempt)
            return
        if final and reserved + max(self.available(hold.account), 0) == 0:
            with pytest.raises(InsufficientCredits):  # nothing at all it could charge
                self.run(attempt)
            return
        assert hold.resolved is None
        settled, transfer = self.run(attempt)
        assert transfer.amount <= amount
        if final:
            hold.resolved = "captured"
            assert settled.status == "captured"

    @rule(hold=holds)
    def release(self, hold: ModelHold) -> None:
        before = self.run(self.ledger.get_hold(hold.id))
        if before.status == "captured":
            with pytest.raises(HoldNotOpen):
                self.run(self.ledger.release_hold(hold.id))
            return
        released = self.run(self.ledger.release_hold(hold.id))
        if before.status_at(self.clock.now) == "open":
            assert hold.resolved is None
            hold.resolved = "released"
            assert released.status == "released"
        else:  # already released or expired: left as it was
            assert released.status == before.status_at(self.clock.now)

    @rule(hold=holds, seconds=st.sampled_from([10, 40]))
    def extend(self, hold: ModelHold, seconds: int) -> None:
        before = self.run(self.ledger.get_hold(hold.id))
        attempt = self.ledger.extend_hold(hold.id, seconds)
        if before.status_at(self.clock.now) != "open":
            with pytest.raises(HoldNotOpen):
                self.run(attempt)
            return
        assert self.run(attempt).expires_at == self.clock.now + timedelta(seconds=seconds)

    @rule(
        work=st.lists(
            st.tuples(st.sampled_from(["charge", "hold", "capture", "release"]), accounts, amounts),
            min_size=2,
            max_size=6,
        )
    )
    def burst(self, work: list[tuple[str, str, int]]) -> None:
        """Several requests at once: only the invariants can say what must hold."""
        open_ = [hold for hold in self.known.values() if hold.resolved is None]

        async def one(n: int, kind: str, account: str, amount: int) -> object:
            if kind == "charge":
                return await self.ledger.charge(self.id(account), amount)
            if kind == "hold":
                return await self.ledger.open_hold(self.id(account), amount, expires_in=40)
            if not open_:
                return None
            hold = open_[n % len(open_)]
            if kind == "capture":
                return await self.ledger.capture_hold(hold.id, amount)
            return await self.ledger.release_hold(hold.id)

        async def together() -> list[object]:
            return await asyncio.gather(
                *(one(n, *step) for n, step in enumerate(work)), return_exceptions=True
            )

        done = self.run(together())
        for outcome in done:
            if isinstance(outcome, BaseException):
                assert isinstance(outcome, CreditsError), outcome
        for hold in self.known.values():  # what the burst resolved, as the ledger says
            status = self.run(self.ledger.get_hold(hold.id)).status
            if status in {"captured", "released"}:
                hold.resolved = hold.resolved or status
                assert hold.resolved == status
        for outcome in done:  # the holds the burst opened
            if isinstance(outcome, Hold) and outcome.id not in self.known:
                account = next(a for a in ACCOUNTS if self.id(a) == outcome.account_id)
                self.known[outcome.id] = ModelHold(outcome.id, account, outcome.amount)

    @rule(seconds=st.sampled_from([5, 20]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def sweep(self) -> None:
        self.run(self.ledger.expire_holds())
        self.run(self.ledger.expire_lots())
        for account in ACCOUNTS:  # what is left past expiry is only what open holds keep
            found = self.run(self.ledger.get_account(self.id(account)))
            due = self.run(db.run(self.ledger.engine, partial(self._due, account=account)))
            assert due <= found.held

    async def _due(self, conn: AsyncConnection, *, account: str) -> int:
        query = select(func.coalesce(func.sum(lots.c.remaining), 0)).where(
            lots.c.account_id == self.id(account),
            lots.c.expires_at <= self.clock.now,
        )
        return int((await conn.execute(query)).scalar_one())

    @invariant()
    def every_figure_equals_its_history(self) -> None:
        for account in ACCOUNTS:
            found = self.run(self.ledger.get_account(self.id(account)))
            assert found.available >= 0
            if found.created_at is not None:
                assert self.run(self.ledger.verify_account(self.id(account))).valid
        assert self.run(self.ledger.ledger_total()) == 0

    @invariant()
    def no_lot_is_spent_past_its_expiry_but_by_its_lapse_or_a_capture(self) -> None:
        spent_late = self.run(db.run(self.ledger.engine, self._spent_late))
        assert spent_late <= {"expiry", "capture"}, spent_late

    async def _spent_late(self, conn: AsyncConnection) -> set[str]:
        query = (
            select(transfers.c.kind)
            .join(lot_spends, lot_spends.c.transfer_id == transfers.c.id)
            .join(lots, lots.c.id == lot_spends.c.lot_id)
            .where(
                lots.c.account_id.in_([self.id(account) for account in ACCOUNTS]),
                transfers.c.created_at >= lots.c.expires_at,
            )
            .distinct()
        )
        return set((await conn.execute(query)).scalars())

    @invariant()
    def every_hold_is_resolved_at_most_once(self) -> None:
        """Once a hold leaves ``open`` its status never changes again, and its captures
        add up to what it says it captured."""
        for hold_id, (status, captured, charged) in self.run(
            db.run(self.ledger.engine, self._holds)
        ).items():
            assert captured == charged
            if status == "open":
                continue
            self.resolved.setdefault(hold_id, status)
            assert self.resolved[hold_id] == status
            model = self.known[hold_id]
            assert model.resolved in {None, status}

    async def _holds(self, conn: AsyncConnection) -> dict[str, tuple[str, int, int]]:
        charged = (
            select(transfers.c.hold_id, func.sum(transfers.c.amount).label("charged"))
            .where(transfers.c.kind == "capture")
            .group_by(transfers.c.hold_id)
            .subquery()
        )
        query = (
            select(holds.c.id, holds.c.status, holds.c.captured, charged.c.charged)
            .outerjoin(charged, charged.c.hold_id == holds.c.id)
            .where(holds.c.id.in_(list(self.known)))
        )
        return {
            row.id: (row.status, int(row.captured), int(row.charged or 0))
            for row in await conn.execute(query)
        }


@pytest.mark.parametrize("group_commit", [True, False], ids=["group", "alone"])
def test_holds_charges_lots_and_time_keep_every_invariant(
    database_url: str, group_commit: bool
) -> None:
    loop = asyncio.new_event_loop()
    clock = Clock()
    settings_ = make_settings(database_url, ledger={"group_commit": str(group_commit).lower()})
    ledger = loop.run_until_complete(Ledger.connect(settings_, clock=clock))
    HoldsMachine.ledger, HoldsMachine.loop, HoldsMachine.clock = ledger, loop, clock
    try:
        run_state_machine_as_test(
            HoldsMachine,
            settings=settings(
                max_examples=20,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        loop.run_until_complete(ledger.close())
        loop.close()
