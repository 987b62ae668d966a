"""Clerk as it sends today: its published example payloads, signed with ``svix``, replayed.

The payloads in ``payloads/`` follow the examples of Clerk's webhook event catalog
(user, subscription and subscription item events); the catalog gives no example for
``paymentAttempt.*``, so those two are built field for field from its schema.
"""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd import inbox
from creditsd.inprocess import Ledger
from creditsd.kit import db
from tests.clerk.conftest import (
    PAYLOADS,
    PUBLISHED_FREE,
    PUBLISHED_PAYER,
    PUBLISHED_PRO,
    PUBLISHED_USER,
    deliver,
    published,
)
from tests.conftest import Clock, body, client_for, create_key

CREDIT = 10_000
KINDS = sorted(path.name.removesuffix(".json") for path in PAYLOADS.glob("*.json"))


async def kept_events(ledger: Ledger) -> list[inbox.StoredEvent]:
    """What the inbox holds from Clerk."""

    async def read(conn: AsyncConnection) -> list[inbox.StoredEvent]:
        return [event async for page in inbox.pages(conn, "clerk") for event in page]

    return await db.run(ledger.engine, read)


def with_unknown_fields(event: dict[str, Any]) -> dict[str, Any]:
    """The event as a later Clerk might send it: fields nobody here has heard of."""
    event = copy.deepcopy(event)
    event["delivery_hint"] = {"region": "eu-west-1"}
    event["data"]["brand_new_field"] = [1, {"nested": True}]
    for item in event["data"].get("items", []):
        item["credits_per_seat"] = None
    return event


@pytest.mark.parametrize("kind", KINDS)
async def test_each_published_event_is_accepted_and_kept_whole_unknown_fields_included(
    billing_ledger: Ledger, billing_api: httpx.AsyncClient, clock: Clock, kind: str
) -> None:
    event = with_unknown_fields(published(kind, clock.now))
    response = await deliver(billing_api, event, message_id=f"msg_{kind}")
    assert response.status_code == 200, response.text
    assert body(response)["type"] == kind
    (kept,) = await kept_events(billing_ledger)
    assert (kept.event_id, kept.type, kept.payload) == (f"msg_{kind}", kind, event)
    assert kept.handled_at is not None


async def test_a_new_user_on_the_default_free_plan_whose_period_never_ends_fails_nothing(
    billing_ledger: Ledger, billing_api: httpx.AsyncClient, clock: Clock
) -> None:
    created = published("subscription.created", clock.now)
    item = published("subscriptionItem.active", clock.now)
    assert created["data"]["items"][0]["period_end"] is None
    assert item["data"]["period_end"] is None
    await deliver(billing_api, published("user.created"))
    for event in (created, item):
        response = await deliver(billing_api, event, message_id=f"msg_{event['type']}")
        assert (response.status_code, body(response)["outcome"]) == (200, "handled")
    details = {kept.event_id: kept.detail for kept in await kept_events(billing_ledger)}
    assert details["msg_subscriptionItem.active"]["open_ended"] == [PUBLISHED_FREE]  # type: ignore[index]

    account = await billing_ledger.get_account(PUBLISHED_USER)
    assert account.by_source == {"signup": 100 * CREDIT}  # a period with no end grants nothing

    upgraded = await deliver(billing_api, published("subscription.updated", clock.now))
    assert body(upgraded)["outcome"] == "handled"
    account = await billing_ledger.get_account(PUBLISHED_USER)
    assert account.by_source == {"signup": 100 * CREDIT, "subscription": 5_000 * CREDIT}


async def test_the_older_shape_with_only_a_payer_id_finds_the_account_the_payer_was_seen_with(
    billing_ledger: Ledger, billing_api: httpx.AsyncClient, clock: Clock
) -> None:
    await deliver(billing_api, published("subscription.created", clock.now))  # payer object
    older = published("subscription.active", clock.now)
    del older["data"]["payer"]
    assert older["data"]["payer_id"] == PUBLISHED_PAYER
    response = await deliver(billing_api, older)
    assert (response.status_code, body(response)["outcome"]) == (200, "handled")

    account = await billing_ledger.get_account(PUBLISHED_USER)
    assert account.by_source == {"signup": 100 * CREDIT, "subscription": 5_000 * CREDIT}
    assert account.aliases == (PUBLISHED_PAYER,)


async def test_a_payer_id_never_seen_with_an_account_opens_none_and_is_kept(
    billing_ledger: Ledger, billing_api: httpx.AsyncClient, clock: Clock
) -> None:
    older = published("subscription.active", clock.now)
    del older["data"]["payer"]
    response = await deliver(billing_api, older)
    assert (response.status_code, body(response)["outcome"]) == (200, "unknown_account")
    assert await billing_ledger.count_accounts() == 0
    (kept,) = await kept_events(billing_ledger)
    assert kept.payload == older


NOT_EVENTS = {
    "no_type": '{"object": "event", "data": {"id": "user_2x"}}',
    "type_not_text": '{"type": 7, "data": {"id": "user_2x"}}',
    "no_data": '{"type": "user.created"}',
    "data_not_object": '{"type": "user.created", "data": ["user_2x"]}',
    "empty_object": "{}",
    "array": "[]",
    "string": '"user.created"',
    "not_json": "user.created user_2x",
}


@pytest.mark.parametrize("payload", NOT_EVENTS.values(), ids=NOT_EVENTS.keys())
async def test_a_correctly_signed_body_that_is_not_an_event_is_400_invalid_event(
    billing_ledger: Ledger, billing_api: httpx.AsyncClient, payload: str
) -> None:
    response = await deliver(billing_api, payload)
    assert response.status_code == 400
    assert body(response)["error"]["code"] == "invalid_event"
    assert await kept_events(billing_ledger) == []
    assert await billing_ledger.count_accounts() == 0


ODD_SUBSCRIPTIONS = {
    "payer_not_object": {"payer": "cpayer_x"},
    "items_null": {"items": None},
    "item_not_object": {"items": ["csub_item_x"]},
    "period_start_missing": {"items": [{"status": "active", "plan_id": PUBLISHED_PRO}]},
    "period_not_a_number": {
        "items": [
            {"status": "active", "plan_id": PUBLISHED_PRO, "period_start": "soon", "period_end": 1}
        ]
    },
    "plan_not_object": {"items": [{"status": "active", "plan": "pro"}]},
}


@pytest.mark.parametrize("change", ODD_SUBSCRIPTIONS.values(), ids=ODD_SUBSCRIPTIONS.keys())
async def test_a_subscription_of_an_unexpected_shape_is_kept_and_grants_nothing(
    billing_ledger: Ledger, billing_api: httpx.AsyncClient, clock: Clock, change: dict[str, Any]
) -> None:
    event = published("subscription.active", clock.now)
    event["data"].update(change)
    response = await deliver(billing_api, event)
    assert response.status_code == 200, response.text
    assert len(await kept_events(billing_ledger)) == 1
    assert "subscription" not in (await billing_ledger.get_account(PUBLISHED_USER)).by_source


async def test_the_primary_email_is_kept_in_metadata_beside_what_the_app_set(
    billing_ledger: Ledger, billing_api: httpx.AsyncClient
) -> None:
    app_key = await create_key(billing_ledger, "app")
    async with client_for(billing_ledger, app_key) as app:
        opened = await app.put(
            f"/v1/accounts/{PUBLISHED_USER}", json={"metadata": {"tier": "gold", "seats": 3}}
        )
        assert opened.status_code in {200, 201}, opened.text

        async def metadata() -> Any:
            return body(await app.get(f"/v1/accounts/{PUBLISHED_USER}"))["metadata"]

        created = published("user.created")
        assert body(await deliver(billing_api, created))["outcome"] == "exists"
        assert await metadata() == {"tier": "gold", "seats": 3, "clerk_email": "john@example.com"}

        updated = published("user.updated")  # a second address, now the primary one
        assert body(await deliver(billing_api, updated))["outcome"] == "updated"
        assert await metadata() == {
            "tier": "gold",
            "seats": 3,
            "clerk_email": "john.doe@work.example",
        }

        phone_only = copy.deepcopy(updated)
        phone_only["data"].update(primary_email_address_id=None, email_addresses=[])
        await deliver(billing_api, phone_only)
        assert await metadata() == {"tier": "gold", "seats": 3}


async def test_a_new_user_gets_the_email_with_the_account(
    billing_ledger: Ledger, billing_api: httpx.AsyncClient
) -> None:
    assert body(await deliver(billing_api, published("user.created")))["outcome"] == "created"
    account = await billing_ledger.get_account(PUBLISHED_USER)
    assert (account.metadata, account.balance) == (
        {"clerk_email": "john@example.com"},
        100 * CREDIT,
    )


async def test_an_update_for_a_user_without_an_account_opens_none(
    billing_ledger: Ledger, billing_api: httpx.AsyncClient
) -> None:
    response = await deliver(billing_api, published("user.updated"))
    assert (response.status_code, body(response)["outcome"]) == (200, "unknown_account")
    assert await billing_ledger.count_accounts() == 0


async def test_an_email_the_metadata_cannot_hold_is_left_out_not_refused(
    billing_ledger: Ledger, billing_api: httpx.AsyncClient
) -> None:
    full = {f"key{i}": i for i in range(50)}
    await billing_ledger.open_account(PUBLISHED_USER, metadata=full)
    response = await deliver(billing_api, published("user.updated"))
    assert (response.status_code, body(response)["outcome"]) == (200, "updated")
    assert (await billing_ledger.get_account(PUBLISHED_USER)).metadata == full
