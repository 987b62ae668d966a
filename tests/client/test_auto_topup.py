"""Auto top-up through the SDK, against the real app selling packs through the fake Stripe:
a rule set and read back in credits, a card saved, an attempt queued, refusals typed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from fastapi import FastAPI

from creditsd.api.app import create_app
from creditsd.client import (
    AutoTopup,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from creditsd.inprocess import Ledger
from tests.client.conftest import Connect
from tests.conftest import LedgerFactory, client_for, create_key
from tests.stripe.conftest import PACKS, URLS, deliver, fake, stripe_settings
from tests.stripe.fake import FakeStripe

__all__ = ["fake"]

D = Decimal
CREDIT = 10_000


@pytest.fixture
async def ledger(make_ledger: LedgerFactory, fake: FakeStripe) -> Ledger:
    """A ledger selling the test packs through the fake Stripe."""
    return await make_ledger(stripe=stripe_settings(fake), packs=PACKS)


@pytest.fixture
async def app(ledger: Ledger) -> AsyncIterator[FastAPI]:
    """The API over the shop, its Stripe connections closed after."""
    made = create_app(ledger, sweep=False)
    yield made
    await made.state.stripe.close()


async def save_card(ledger: Ledger, fake: FakeStripe, session_id: str) -> None:
    """The customer saves a card in the session; Stripe tells creditsd."""
    completed = fake.complete_setup(session_id, last4="4242", fingerprint="fp_ada")
    async with client_for(ledger, await create_key(ledger, "app", "stripe-side")) as api:
        delivered = await deliver(api, fake.event("checkout.session.completed", completed))
    assert delivered.json()["outcome"] == "card_saved", delivered.text


async def test_a_rule_a_saved_card_and_an_attempt(
    ledger: Ledger, connect: Connect, fake: FakeStripe
) -> None:
    web = connect(await create_key(ledger, "app", "web"))
    await ledger.grant("ada", 150 * CREDIT)
    with pytest.raises(NotFoundError) as none_yet:
        await web.get_auto_topup("ada")
    assert none_yet.value.code == "auto_topup_not_found"

    rule = await web.set_auto_topup(
        "ada", threshold=100, target_balance="500.5", monthly_cap=D(5000)
    )
    assert isinstance(rule, AutoTopup)
    assert (rule.enabled, rule.threshold, rule.target_balance, rule.monthly_cap) == (
        True,
        D(100),
        D("500.5"),
        D(5000),
    )
    assert (rule.state, rule.card, rule.last_attempt, rule.month_total) == (
        "awaiting_card",
        None,
        None,
        D(0),
    )

    session = await web.create_auto_topup_card_session("ada", **URLS, idempotency_key="card-1")
    assert session.account_id == "ada" and session.url is not None
    again = await web.create_auto_topup_card_session("ada", **URLS, idempotency_key="card-1")
    assert again.id == session.id
    await save_card(ledger, fake, session.id)

    await ledger.charge("ada", 100 * CREDIT)  # 50 left, below 100: 450.5 to buy
    shown = await web.get_auto_topup("ada")
    assert shown.state == "active"
    assert shown.card is not None
    assert (shown.card.brand, shown.card.last4, shown.card.fingerprint) == (
        "visa",
        "4242",
        "fp_ada",
    )
    assert shown.card.consented_by == f"web (checkout {session.id})"
    assert shown.card.consented_rule["target_balance"] == 5_005_000  # minor units, as stored
    assert shown.last_attempt is not None
    assert (shown.last_attempt.status, shown.last_attempt.credits) == ("queued", D("450.5"))
    assert shown.month_total == D("450.5")

    off = await web.set_auto_topup("ada", enabled=False, threshold=100, pack="1k", monthly_cap=5000)
    assert (off.state, off.pack, off.target_balance) == ("off", "1k", None)
    assert off.card == shown.card  # turning it off keeps the card for turning it on again


async def test_refusals_are_typed_and_floats_never_leave(ledger: Ledger, connect: Connect) -> None:
    web = connect(await create_key(ledger, "app", "web"))
    reader = connect(await create_key(ledger, "read", "dashboard"))
    await ledger.open_account("bo")
    with pytest.raises(TypeError, match="float"):
        await web.set_auto_topup("bo", threshold=0.1, target_balance=10, monthly_cap=100)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="exactly one"):
        await web.set_auto_topup("bo", threshold=1, target_balance=10, pack="1k", monthly_cap=100)
    with pytest.raises(TypeError, match="exactly one"):
        await web.set_auto_topup("bo", threshold=1, monthly_cap=100)

    with pytest.raises(ValidationError) as at_threshold:
        await web.set_auto_topup("bo", threshold=10, target_balance=10, monthly_cap=100)
    assert at_threshold.value.code == "invalid_auto_topup"
    with pytest.raises(ValidationError) as unknown:
        await web.set_auto_topup("bo", threshold=10, pack="nope", monthly_cap=100)
    assert unknown.value.code == "unknown_pack"
    with pytest.raises(ValidationError) as too_fine:
        await web.set_auto_topup("bo", threshold="0.00001", pack="1k", monthly_cap=100)
    assert too_fine.value.code == "invalid_amount"

    with pytest.raises(NotFoundError) as no_rule:
        await web.create_auto_topup_card_session("bo", **URLS)
    assert no_rule.value.code == "auto_topup_not_found"
    with pytest.raises(PermissionDeniedError):
        await reader.set_auto_topup("bo", threshold=1, pack="1k", monthly_cap=100)
    await web.set_auto_topup("bo", threshold=1, pack="1k", monthly_cap=100)
    assert (await reader.get_auto_topup("bo")).pack == "1k"
    with pytest.raises(NotFoundError) as nobody:
        await reader.get_auto_topup("nobody")
    assert nobody.value.code == "account_not_found"
