"""What a key of each scope may do to accounts other than the one it names (issue 10)."""

from __future__ import annotations

import pytest

from tests.conftest import LedgerFactory, body, client_for, create_key


async def test_only_an_admin_key_attaches_aliases(make_ledger: LedgerFactory) -> None:
    ledger = await make_ledger()
    await ledger.grant("victim", 1_000_000)
    async with client_for(ledger, await create_key(ledger, "app")) as app:
        taken = await app.put("/v1/accounts/ghost", json={"aliases": ["user_victim"]})
        assert taken.status_code == 403, taken.text
        assert "aliases" in body(taken)["error"]["message"]
        plain = await app.put("/v1/accounts/ghost", json={"metadata": {"plan": "pro"}})
        assert plain.status_code == 201, plain.text
    async with client_for(ledger, await create_key(ledger, "admin")) as admin:
        given = await admin.put("/v1/accounts/victim", json={"aliases": ["user_victim"]})
        assert given.status_code == 200, given.text
        assert body(given)["aliases"] == ["user_victim"]
    assert (await ledger.get_account("user_victim")).id == "victim"


async def test_no_key_takes_the_name_of_an_internal_app(make_ledger: LedgerFactory) -> None:
    from creditsd.clerk.service import CLERK_APP
    from creditsd.cli import CLI_APP
    from creditsd.gateway.service import GATEWAY_APP
    from creditsd.inprocess import LOCAL_APP
    from creditsd.kit.errors import InvalidRequest
    from creditsd.ledger.models import INTERNAL_APPS, SYSTEM_APP
    from creditsd.stripe.events import STRIPE_APP

    assert {SYSTEM_APP, STRIPE_APP, CLERK_APP, GATEWAY_APP, LOCAL_APP, CLI_APP} <= INTERNAL_APPS
    ledger = await make_ledger()
    for name in sorted(INTERNAL_APPS):
        with pytest.raises(InvalidRequest, match="reserved"):
            await create_key(ledger, "app", name)
    assert await create_key(ledger, "app", "stripe-checkout")


async def test_no_key_shares_the_idempotency_keys_of_the_cli_s_grants(
    make_ledger: LedgerFactory,
) -> None:
    from creditsd.kit.errors import InvalidRequest

    ledger = await make_ledger()
    await ledger.grant("u", 100, idempotency_key="launch", app="cli", actor="cli")
    with pytest.raises(InvalidRequest, match="reserved"):
        await create_key(ledger, "app", "cli")


async def test_a_key_stored_under_a_reserved_name_is_refused(make_ledger: LedgerFactory) -> None:
    from sqlalchemy import update

    from creditsd.kit import db
    from creditsd.tables import api_keys

    ledger = await make_ledger()
    secret = await create_key(ledger, "app", "legacy")
    await db.run(  # as a key made before names were reserved
        ledger.engine, lambda conn: conn.execute(update(api_keys).values(name="stripe"))
    )
    async with client_for(ledger, secret) as client:
        refused = await client.post("/v1/charges", json={"account_id": "u", "amount": 1})
    assert refused.status_code == 401
    assert "reserved" in body(refused)["error"]["message"]
