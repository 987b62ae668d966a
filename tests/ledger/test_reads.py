"""Reads never write: an account that does not exist yet is shown as its first write will
create it, and nothing is created until then (issue 10; each failed on main)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from sqlalchemy import text

from creditsd.api.app import create_app
from creditsd.client import AsyncClient
from creditsd.inprocess import Ledger
from creditsd.kit import db
from tests.conftest import Clock, LedgerFactory, body, client_for, create_key
from tests.test_cli import run


async def test_reading_an_unknown_account_creates_nothing(make_ledger: LedgerFactory) -> None:
    ledger = await make_ledger(accounts={"signup_grant": "100"})
    async with client_for(ledger, await create_key(ledger, "read")) as reader:
        shown = await reader.get("/v1/accounts/newcomer")
        history = await reader.get("/v1/accounts/newcomer/transactions")
        verified = await reader.get("/v1/accounts/newcomer/verify")
    assert shown.status_code == 200, shown.text
    account = body(shown)
    assert (account["balance"], account["available"], account["held"]) == (100, 100, 0)
    assert account["balance_by_source"] == {"signup": 100}
    assert account["created_at"] is None and account["updated_at"] is None
    assert history.status_code == 200 and body(history)["data"] == []
    assert verified.status_code == 404
    assert body(verified)["error"]["code"] == "account_not_found"
    assert await ledger.count_accounts() == 0
    assert await ledger.ledger_total() == 0

    # The first write finds what the read showed.
    async with client_for(ledger, await create_key(ledger, "app")) as app:
        charged = await app.post("/v1/charges", json={"account_id": "newcomer", "amount": 10})
        assert charged.status_code == 201, charged.text
        assert body(charged)["balance"] == 90
        after = body(await app.get("/v1/accounts/newcomer"))
    assert after["created_at"] is not None and after["balance_by_source"] == {"signup": 90}
    assert await ledger.count_accounts() == 1


async def test_an_unknown_alias_or_a_system_name_is_still_refused(
    make_ledger: LedgerFactory,
) -> None:
    ledger = await make_ledger(accounts={"signup_grant": "100"})
    async with client_for(ledger, await create_key(ledger, "read")) as reader:
        system = await reader.get("/v1/accounts/@revenue")
    assert system.status_code == 422
    assert await ledger.count_accounts() == 0


async def test_without_auto_create_an_unknown_account_is_a_404(
    make_ledger: LedgerFactory,
) -> None:
    ledger = await make_ledger(accounts={"auto_create": "false", "signup_grant": "100"})
    async with client_for(ledger, await create_key(ledger, "read")) as reader:
        shown = await reader.get("/v1/accounts/newcomer")
    assert shown.status_code == 404


def test_the_cli_shows_an_unknown_account_without_creating_it(database_url: str) -> None:
    code, out, _ = run(database_url, "accounts", "show", "typo")
    assert code == 0, out
    assert "not created yet" in out

    async def accounts() -> int:
        engine = db.create_engine(database_url)
        try:
            async with db.transaction(engine) as conn:
                return int(
                    (
                        await conn.execute(text("SELECT count(*) FROM accounts WHERE id = 'typo'"))
                    ).scalar_one()
                )
        finally:
            await engine.dispose()

    assert asyncio.run(accounts()) == 0


async def test_the_sdk_reads_an_unknown_account(make_ledger: LedgerFactory) -> None:
    ledger = await make_ledger(accounts={"signup_grant": "100"})
    app = create_app(ledger, sweep=False)
    sdk = AsyncClient(
        "http://creditsd.test",
        await create_key(ledger, "read"),
        transport=httpx.ASGITransport(app=app),
    )
    account = await sdk.get_account("newcomer")
    assert account.created_at is None and account.balance == 100
    await sdk.aclose()
    await app.state.stripe.close()


async def test_reading_an_account_with_credits_past_expiry_shows_them_gone_and_writes_nothing(
    make_ledger: LedgerFactory, clock: Clock
) -> None:
    ledger = await make_ledger()
    unit = ledger.money.unit
    await ledger.grant("ada", 30 * unit, reason="paid")
    await ledger.grant("ada", 50 * unit, expires_at=clock.now + timedelta(days=1), reason="promo")
    clock.advance(2 * 86_400)
    transfers_before = await _transfers(ledger)
    async with client_for(ledger, await create_key(ledger, "read")) as reader:
        shown = body(await reader.get("/v1/accounts/ada"))
        history = body(await reader.get("/v1/accounts/ada/transactions"))
    assert (shown["balance"], shown["available"]) == (30, 30)
    assert shown["balance_by_source"] == {"promotion": 30}
    assert [t["kind"] for t in history["data"]] == ["grant", "grant"]
    assert await _transfers(ledger) == transfers_before

    # The next write records the lapse, and finds what the read showed.
    await ledger.charge("ada", 1 * unit)
    assert (await ledger.get_account("ada")).balance == 29 * unit
    recorded = await ledger.transactions("ada")
    assert [t.kind for t in recorded.items] == ["charge", "expiry", "grant", "grant"]


async def _transfers(ledger: Ledger) -> int:
    async with ledger.engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM transfers"))).scalar_one())
