"""Proxy keys through the SDK, against the real app in-process: minted for an account or
one of its members, listed, revoked; a mint is never retried."""

from __future__ import annotations

from decimal import Decimal

import pytest
from fastapi import FastAPI

from creditsd.client import Limit, NotFoundError, TransportError
from creditsd.inprocess import Ledger
from tests.client.conftest import Connect
from tests.client.test_async import LosesAnswers
from tests.conftest import create_key


async def test_a_key_minted_for_a_member_shows_it_when_listed_and_revoked(
    ledger: Ledger, connect: Connect
) -> None:
    chat = connect(await create_key(ledger, "app", "chat"))
    await chat.put_member("org:acme", "ada", limits=[Limit(10, "day")])
    key = await chat.mint_proxy_key(
        "org:acme", member="ada", limit="2.5", expires_in=3600, name="laptop", rate_limit=30
    )
    assert key.secret is not None and key.secret.startswith("cdp_")
    assert (key.account_id, key.member, key.app, key.name) == ("org:acme", "ada", "chat", "laptop")
    assert (key.limit, key.spent, key.held, key.rate_limit) == (
        Decimal("2.5"),
        Decimal(0),
        Decimal(0),
        30,
    )
    assert key.expires_at is not None and key.revoked_at is None
    wallet_key = await chat.mint_proxy_key("org:acme")
    assert (wallet_key.member, wallet_key.limit, wallet_key.expires_at) == (None, None, None)

    page = await chat.list_proxy_keys("org:acme", limit=1)
    assert [(k.id, k.member, k.secret) for k in page.data] == [(wallet_key.id, None, None)]
    every = [k.id async for k in chat.iter_proxy_keys("org:acme", page_size=1)]
    assert every == [wallet_key.id, key.id]
    revoked = await chat.revoke_proxy_key(key.id)
    assert (revoked.member, revoked.revoked_at is not None) == ("ada", True)

    with pytest.raises(NotFoundError) as stranger:
        await chat.mint_proxy_key("org:acme", member="ad4")
    assert stranger.value.code == "member_not_found"


async def test_a_mint_whose_answer_was_lost_is_not_retried_and_is_listed(
    ledger: Ledger, connect: Connect, app: FastAPI
) -> None:
    secret = await create_key(ledger, "app", "chat")
    transport = LosesAnswers(app, drops=1)
    with pytest.raises(TransportError):
        await connect(secret, transport=transport).mint_proxy_key("user_1")
    assert len(transport.requests) == 1
    assert "Idempotency-Key" not in transport.requests[0].headers
    (lost,) = (await connect(secret).list_proxy_keys("user_1")).data
    assert lost.secret is None
