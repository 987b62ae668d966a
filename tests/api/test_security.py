"""What a key of each scope may do to accounts other than the one it names (issue 10)."""

from __future__ import annotations

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
