"""The simulation's power: three bugs creditsd once had, put back one at a time into the
running code ("mutants"), are each caught within the CI budget of seeds, by the check
that names them; the seed that caught one passes once it is gone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.integrity.models import BALANCE_MATCHES_TRANSFERS
from creditsd.ledger import posting
from creditsd.ledger.models import Transfer
from creditsd.stripe import refunds as stripe_refunds
from creditsd.stripe import repository as stripe_repo
from tests.sim.run import CI_SEEDS, Lab, first_failure


def replayed_credit_stays(patch: pytest.MonkeyPatch) -> None:
    """A replayed grant mints credits on an account below zero.

    Before the posting engine (848e82c; tests in ef13092), a transfer moved the balance
    first and, meeting its key already stored, took the move back with a guarded debit,
    which an account below zero refused: the credit stayed, with no transfer for it.
    """
    replay = posting._Batch._replay

    def minting(batch: Any, entry: posting._Entry, found: Any, stored: str) -> posting.EntryOutcome:
        outcome = replay(batch, entry, found, stored)
        if isinstance(entry, posting._Posting) and isinstance(outcome, Transfer):
            credited = batch.accounts.get(entry.credit_account_id)
            if credited is not None and credited.balance < 0:
                credited.move(entry.amount, 0)
        return outcome

    patch.setattr(posting._Batch, "_replay", minting)


def lapsed_lot_spendable(patch: pytest.MonkeyPatch) -> None:
    """An expired promotion is spent behind a hold: a debit that is not a capture spends
    what an open hold keeps of a lot past its expiry (fixed in 4779da0; test 9e9582b)."""
    spend_order = posting._spend_order

    def any_debit_as_a_capture(
        lots: list[Any], now: datetime, entry: posting._Posting
    ) -> list[Any]:
        return spend_order(lots, now, replace(entry, hold_id=entry.hold_id or "any"))

    patch.setattr(posting, "_spend_order", any_debit_as_a_capture)


def early_refund_lost(patch: pytest.MonkeyPatch) -> None:
    """A refund or dispute that Stripe delivers before its purchase is lost: acknowledged,
    never applied, so the purchase grants in full (fixed on branch stripe-edges, f90aa7f;
    tests 908d46d): the event is no longer kept for its purchase."""

    async def forgetting(conn: AsyncConnection, payment_id: str, _event_id: str) -> Any:
        return await stripe_repo.get_payment(conn, payment_id, lock=True)

    patch.setattr(stripe_refunds, "_payment_or_keep", forgetting)


@dataclass(frozen=True)
class Mutant:
    put_back: Callable[[pytest.MonkeyPatch], None]
    caught_by: str  # the check whose name the report must give


MUTANTS = {
    "replayed grant minting credits below zero": Mutant(
        replayed_credit_stays, BALANCE_MATCHES_TRANSFERS
    ),
    "expired promotion spent behind a hold": Mutant(lapsed_lot_spendable, "lapsed lot spent"),
    "refund before its purchase lost": Mutant(early_refund_lost, "stripe"),
}


@pytest.mark.parametrize("name", list(MUTANTS))
async def test_a_bug_put_back_is_caught_within_the_ci_budget(lab: Lab, name: str) -> None:
    mutant = MUTANTS[name]
    with pytest.MonkeyPatch.context() as patch:
        mutant.put_back(patch)
        caught = await first_failure(lab, range(CI_SEEDS))
    assert caught is not None, f"{name}: no seed of {CI_SEEDS} failed"
    print(f"{name}: caught by {caught.report}")  # shown with -s
    assert f"\n  {mutant.caught_by}:" in caught.report
    assert await first_failure(lab, [caught.seed]) is None
