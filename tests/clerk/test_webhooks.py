"""Clerk webhooks: sign-up grants exactly once, deleted users closed, orgs as accounts."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from creditsd.inprocess import Ledger
from creditsd.ledger.errors import AccountClosed, InsufficientCredits
from tests.clerk.conftest import CLERK_SECRET, deliver, signed
from tests.conftest import body

CREDIT = 10_000


def user_created(user_id: str) -> dict[str, object]:
    return {
        "type": "user.created",
        "object": "event",
        "data": {"id": user_id, "object": "user", "email_addresses": []},
    }


async def test_user_created_replayed_and_racing_a_first_charge_grants_sign_up_once(
    clerk_ledger: Ledger, clerk_api: httpx.AsyncClient
) -> None:
    event = user_created("user_2race")
    payload, headers = signed(event)

    async def charge() -> bool:
        try:
            await clerk_ledger.charge("user_2race", 10 * CREDIT)
        except InsufficientCredits:
            return False
        return True

    replays = [
        clerk_api.post("/webhooks/clerk", content=payload, headers=headers) for _ in range(4)
    ]
    others = [deliver(clerk_api, event) for _ in range(3)]  # Clerk re-sent it as new messages
    results = await asyncio.gather(*replays, *others, *(charge() for _ in range(3)))
    responses = [r for r in results if isinstance(r, httpx.Response)]
    assert all(r.status_code == 200 for r in responses)
    charged = sum(1 for r in results if r is True)

    account = await clerk_ledger.get_account("user_2race")
    assert account.balance == (100 - 10 * charged) * CREDIT
    grants = [t for t in (await clerk_ledger.transactions("user_2race")).items if t.kind == "grant"]
    assert [(t.amount, t.lots[0].source) for t in grants] == [(100 * CREDIT, "signup")]


@pytest.mark.parametrize("tamper", ["body", "wrong_secret", "stale", "missing"])
async def test_a_clerk_webhook_failing_verification_is_refused_and_nothing_happens(
    clerk_ledger: Ledger, clerk_api: httpx.AsyncClient, tamper: str
) -> None:
    event = user_created("user_2tamper")
    payload, headers = signed(event)
    if tamper == "body":
        payload = payload.replace(b"user_2tamper", b"user_2evil")
    elif tamper == "wrong_secret":
        payload, headers = signed(event, secret="whsec_" + "b3RoZXItc2VjcmV0LW9mLXNvbWVvbmU=")
    elif tamper == "stale":
        payload, headers = signed(event, sent_at=datetime.now(UTC) - timedelta(minutes=10))
    else:
        headers = {}
    response = await clerk_api.post("/webhooks/clerk", content=payload, headers=headers)
    assert response.status_code == 400
    assert body(response)["error"]["code"] == "invalid_signature"
    assert CLERK_SECRET not in response.text
    assert (await clerk_ledger.count_accounts()) == 0


async def test_a_deleted_user_keeps_the_ledger_and_spends_nothing_more(
    clerk_ledger: Ledger, clerk_api: httpx.AsyncClient
) -> None:
    await deliver(clerk_api, user_created("user_2gone"))
    await clerk_ledger.charge("user_2gone", 30 * CREDIT)
    deleted = {"type": "user.deleted", "data": {"id": "user_2gone", "deleted": True}}
    assert body(await deliver(clerk_api, deleted))["outcome"] == "closed"

    with pytest.raises(AccountClosed) as refused:
        await clerk_ledger.charge("user_2gone", 1 * CREDIT)
    assert "closed" in refused.value.message
    account = await clerk_ledger.get_account("user_2gone")
    assert (account.status, account.balance) == ("closed", 70 * CREDIT)
    assert len((await clerk_ledger.transactions("user_2gone")).items) == 2
    assert (await clerk_ledger.verify_account("user_2gone")).valid


async def test_an_organization_is_an_account_its_members_are_charged_against(
    clerk_ledger: Ledger, clerk_api: httpx.AsyncClient
) -> None:
    created = {"type": "organization.created", "data": {"id": "org_2acme", "name": "Acme"}}
    assert body(await deliver(clerk_api, created))["outcome"] == "created"
    membership = {
        "type": "organizationMembership.created",
        "data": {"organization": {"id": "org_2acme"}, "public_user_data": {"user_id": "user_2m"}},
    }
    assert body(await deliver(clerk_api, membership))["outcome"] == "ignored"
    await clerk_ledger.charge("org_2acme", 25 * CREDIT, metadata={"member": "user_2m"})
    assert (await clerk_ledger.get_account("org_2acme")).balance == 75 * CREDIT


async def test_clerk_is_refused_when_not_configured(api: httpx.AsyncClient) -> None:
    payload, headers = signed(user_created("user_2x"))
    response = await api.post("/webhooks/clerk", content=payload, headers=headers)
    assert response.status_code == 503
    assert body(response)["error"]["code"] == "clerk_not_configured"
    assert json.loads(response.text)["error"]["message"].endswith("clerk.webhook_secret")
