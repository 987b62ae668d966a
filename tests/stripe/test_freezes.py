"""A frozen account stays frozen until every freeze on it is lifted: an operator's, each
open dispute's (``dispute_policy = "freeze"``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from creditsd.inprocess import Ledger
from tests.conftest import LedgerFactory, body, client_for, create_key
from tests.stripe.conftest import PACKS, checkout, deliver, stripe_settings
from tests.stripe.fake import FakeStripe
from tests.stripe.test_published_payloads import dispute_of

JSON = dict[str, Any]


@pytest.fixture
async def freezing(make_ledger: LedgerFactory, fake: FakeStripe) -> Ledger:
    """A shop whose disputes freeze the account."""
    return await make_ledger(stripe=stripe_settings(fake, dispute_policy="freeze"), packs=PACKS)


@pytest.fixture
async def admin(freezing: Ledger) -> AsyncIterator[httpx.AsyncClient]:
    """An operator's HTTP client."""
    async with client_for(freezing, await create_key(freezing, "admin", "ops")) as client:
        yield client


async def purchase(api: httpx.AsyncClient, fake: FakeStripe, account: str) -> JSON:
    """A 1k pack bought; its completed Checkout Session."""
    session = fake.complete_session(await checkout(api, account, "1k"))
    granted = await deliver(api, fake.event("checkout.session.completed", session))
    assert body(granted)["outcome"] == "granted"
    return session


async def dispute(api: httpx.AsyncClient, fake: FakeStripe, session: JSON) -> JSON:
    """The cardholder disputes a purchase (the account is frozen); the dispute."""
    disputed = fake.dispute(fake.objects[session["payment_intent"]]["latest_charge"])
    opened = fake.event("charge.dispute.created", dispute_of(fake, disputed, "needs_response"))
    assert body(await deliver(api, opened))["outcome"] == "frozen"
    return disputed


async def win(api: httpx.AsyncClient, fake: FakeStripe, disputed: JSON) -> None:
    won = fake.event("charge.dispute.closed", dispute_of(fake, disputed, "won"))
    assert (await deliver(api, won)).status_code == 200


async def charge(api: httpx.AsyncClient, account: str) -> httpx.Response:
    return await api.post("/v1/charges", json={"account_id": account, "amount": 1})


async def test_an_operators_freeze_of_a_disputed_account_outlasts_the_won_dispute(
    admin: httpx.AsyncClient, fake: FakeStripe
) -> None:
    disputed = await dispute(admin, fake, await purchase(admin, fake, "jo"))
    frozen = await admin.put("/v1/accounts/jo", json={"status": "frozen"})
    assert frozen.status_code == 200, frozen.text

    await win(admin, fake, disputed)
    refused = await charge(admin, "jo")
    assert refused.status_code == 409, refused.text
    assert body(refused)["error"]["code"] == "account_frozen"
    shown = body(await admin.get("/v1/accounts/jo"))
    assert (shown["status"], shown["frozen_by"]) == ("frozen", ["operator"])


async def test_an_account_frozen_by_two_disputes_is_active_once_both_are_won(
    admin: httpx.AsyncClient, fake: FakeStripe
) -> None:
    sessions = [await purchase(admin, fake, "kit") for _ in range(2)]
    first, second = [await dispute(admin, fake, session) for session in sessions]
    await win(admin, fake, first)
    assert (await charge(admin, "kit")).status_code == 409
    shown = body(await admin.get("/v1/accounts/kit"))
    assert (shown["status"], shown["frozen_by"]) == ("frozen", [f"dispute:{second['id']}"])

    await win(admin, fake, second)
    assert (await charge(admin, "kit")).status_code == 201
    shown = body(await admin.get("/v1/accounts/kit"))
    assert (shown["status"], shown["frozen_by"]) == ("active", [])


async def test_an_operators_reactivation_lifts_every_freeze_and_a_lost_dispute_changes_nothing(
    admin: httpx.AsyncClient, fake: FakeStripe
) -> None:
    disputed = await dispute(admin, fake, await purchase(admin, fake, "lu"))
    reactivated = await admin.put("/v1/accounts/lu", json={"status": "active"})
    assert (reactivated.status_code, body(reactivated)["frozen_by"]) == (200, [])
    lost = fake.event("charge.dispute.closed", dispute_of(fake, disputed, "lost"))
    assert body(await deliver(admin, lost))["outcome"] == "not_won"
    assert (await charge(admin, "lu")).status_code == 201


async def test_a_dispute_of_a_closed_account_keeps_it_closed(
    freezing: Ledger, admin: httpx.AsyncClient, fake: FakeStripe
) -> None:
    session = await purchase(admin, fake, "mo")
    await freezing.set_status("mo", "closed", actor="cli:ops")
    disputed = await dispute(admin, fake, session)
    shown = body(await admin.get("/v1/accounts/mo"))
    assert (shown["status"], shown["frozen_by"]) == ("closed", [f"dispute:{disputed['id']}"])
    await win(admin, fake, disputed)
    shown = body(await admin.get("/v1/accounts/mo"))
    assert (shown["status"], shown["frozen_by"]) == ("closed", [])
