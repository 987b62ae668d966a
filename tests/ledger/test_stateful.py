"""Hypothesis drives the ledger with random operations and compares it with a tiny model."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from creditsd.inprocess import Ledger
from creditsd.ledger.errors import (
    HoldExceeded,
    HoldNotOpen,
    IdempotencyConflict,
    InsufficientCredits,
)
from tests.conftest import Clock, make_settings
from tests.ledger.test_modes import subscribe

ACCOUNTS = ("a", "b")
amounts = st.integers(min_value=1, max_value=60)


@dataclass
class ModelHold:
    """What the model knows of a hold."""

    id: str
    account: str
    amount: int
    captured: int
    expires_at: float
    status: str = "open"

    def live(self, now: float) -> bool:
        return self.status == "open" and now < self.expires_at


@dataclass
class ModelCharge:
    """A charge the model saw succeed, so it can be replayed."""

    key: str
    account: str
    amount: int
    transfer_id: str


class LedgerMachine(RuleBasedStateMachine):
    """Random grants, charges, replays, holds and time; balances must match the model."""

    ledger: Ledger
    loop: asyncio.AbstractEventLoop
    clock: Clock

    charges = Bundle("charges")
    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.prefix = uuid.uuid4().hex[:8]
        self.balance = dict.fromkeys(ACCOUNTS, 0)
        self.open_holds: dict[str, ModelHold] = {}
        self.elapsed = 0.0

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def id(self, account: str) -> str:
        return f"{self.prefix}-{account}"

    def held(self, account: str) -> int:
        return sum(
            h.amount - h.captured
            for h in self.open_holds.values()
            if h.account == account and h.live(self.elapsed)
        )

    def available(self, account: str) -> int:
        return self.balance[account] - self.held(account)

    @rule(
        account=st.sampled_from(ACCOUNTS),
        amount=amounts,
        source=st.sampled_from(["promotion", "adjustment", "purchase"]),
    )
    def grant(self, account: str, amount: int, source: str) -> None:
        self.run(self.ledger.grant(self.id(account), amount, source=source))
        self.balance[account] += amount

    @rule(target=charges, account=st.sampled_from(ACCOUNTS), amount=amounts)
    def charge(self, account: str, amount: int) -> Any:
        key = uuid.uuid4().hex
        if amount > self.available(account):
            with pytest.raises(InsufficientCredits):
                self.run(self.ledger.charge(self.id(account), amount, idempotency_key=key))
            return multiple()  # nothing for the bundle
        transfer = self.run(self.ledger.charge(self.id(account), amount, idempotency_key=key))
        self.balance[account] -= amount
        assert transfer.debit_balance_after == self.balance[account]
        return ModelCharge(key, account, amount, transfer.id)

    @rule(charge=charges)
    def replay(self, charge: ModelCharge) -> None:
        again = self.run(
            self.ledger.charge(self.id(charge.account), charge.amount, idempotency_key=charge.key)
        )
        assert again.id == charge.transfer_id and again.replayed

    @rule(charge=charges, extra=amounts)
    def conflicting_replay(self, charge: ModelCharge, extra: int) -> None:
        with pytest.raises(IdempotencyConflict):
            self.run(
                self.ledger.charge(
                    self.id(charge.account), charge.amount + extra, idempotency_key=charge.key
                )
            )

    @rule(
        target=holds,
        account=st.sampled_from(ACCOUNTS),
        amount=amounts,
        expires_in=st.sampled_from([10, 60]),
    )
    def open_hold(self, account: str, amount: int, expires_in: int) -> Any:
        if amount > self.available(account):
            with pytest.raises(InsufficientCredits):
                self.run(self.ledger.open_hold(self.id(account), amount, expires_in=expires_in))
            return multiple()
        hold = self.run(self.ledger.open_hold(self.id(account), amount, expires_in=expires_in))
        model = ModelHold(hold.id, account, amount, 0, self.elapsed + expires_in)
        self.open_holds[hold.id] = model
        return model

    @rule(hold=holds, amount=amounts, final=st.booleans())
    def capture(self, hold: ModelHold, amount: int, final: bool) -> None:
        attempt = self.ledger.capture_hold(
            hold.id, amount, final=final, idempotency_key=uuid.uuid4().hex
        )
        remaining = hold.amount - hold.captured
        if not hold.live(self.elapsed):
            with pytest.raises(HoldNotOpen):
                self.run(attempt)
            return
        if not final and amount > remaining:
            with pytest.raises(HoldExceeded):
                self.run(attempt)
            return
        # Past what the account can pay, a final capture is capped ([holds] overrun = "cap").
        charged = min(amount, remaining + self.available(hold.account)) if final else amount
        _, transfer = self.run(attempt)
        assert transfer.amount == charged
        self.balance[hold.account] -= charged
        hold.captured += charged
        if final:
            hold.status = "captured"

    @rule(hold=holds)
    def release(self, hold: ModelHold) -> None:
        if hold.status == "captured":
            with pytest.raises(HoldNotOpen):
                self.run(self.ledger.release_hold(hold.id))
            return
        self.run(self.ledger.release_hold(hold.id))
        if hold.live(self.elapsed):
            hold.status = "released"

    @rule(seconds=st.sampled_from([5, 30]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)
        self.elapsed += seconds

    @precondition(lambda self: self.elapsed > 0)
    @rule()
    def sweep(self) -> None:
        self.run(self.ledger.expire_holds())

    @invariant()
    def balances_match_the_model(self) -> None:
        for account in ACCOUNTS:
            found = self.run(self.ledger.get_account(self.id(account)))
            assert (found.balance, found.held, found.available) == (
                self.balance[account],
                self.held(account),
                self.available(account),
            )
            if found.created_at is not None:  # a read shows an unopened one, stores nothing
                assert self.run(self.ledger.verify_account(self.id(account))).valid
            # every credit is in a lot, and the lots hold exactly the balance
            assert sum(found.by_source.values()) == found.balance
            assert "overdrawn" not in found.by_source

    @invariant()
    def ledger_sums_to_zero(self) -> None:
        assert self.run(self.ledger.ledger_total()) == 0


@pytest.mark.parametrize("group_commit", [True, False], ids=["group", "alone"])
@pytest.mark.parametrize("subscriber", [False, True], ids=["quiet", "subscriber"])
def test_ledger_matches_its_model(database_url: str, group_commit: bool, subscriber: bool) -> None:
    loop = asyncio.new_event_loop()
    clock = Clock()
    settings_ = make_settings(database_url, ledger={"group_commit": str(group_commit).lower()})
    ledger = loop.run_until_complete(Ledger.connect(settings_, clock=clock))
    if subscriber:
        loop.run_until_complete(subscribe(ledger))
    LedgerMachine.ledger, LedgerMachine.loop, LedgerMachine.clock = ledger, loop, clock
    try:
        run_state_machine_as_test(
            LedgerMachine,
            settings=settings(
                max_examples=25,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        loop.run_until_complete(ledger.close())
        loop.close()
