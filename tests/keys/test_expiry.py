"""API keys with an expiry: refused with 401 ``key_expired`` from that moment, cache or not."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from creditsd.api.app import create_app
from creditsd.api.auth import KeyCache
from creditsd.inprocess import Ledger
from creditsd.keys import service as keys
from creditsd.kit import db
from creditsd.kit.errors import InvalidRequest
from tests.conftest import Clock, LedgerFactory, audit_trail, body, client_for

HOUR = timedelta(hours=1)


async def create_expiring(ledger: Ledger, expires_in: timedelta | None) -> tuple[keys.ApiKey, str]:
    return await db.run(
        ledger.engine,
        lambda conn: keys.create_key(
            conn, "app1", "app", ledger.now(), actor="test", expires_in=expires_in
        ),
    )


async def test_a_key_works_until_it_expires_then_is_refused_saying_so(
    ledger: Ledger, clock: Clock
) -> None:
    key, secret = await create_expiring(ledger, HOUR)
    assert key.expires_at == clock.now + HOUR
    async with client_for(ledger, secret) as client:
        assert (await client.get("/v1/accounts/u")).status_code == 200
        clock.advance(HOUR.total_seconds() - 1)
        assert (await client.get("/v1/accounts/u")).status_code == 200
        clock.advance(1)  # the cache still holds the key: it must not outlive its expiry
        refused = await client.get("/v1/accounts/u")
        assert refused.status_code == 401
        error = body(refused)["error"]
        assert error["code"] == "key_expired"
        assert "expired" in error["message"] and secret not in error["message"]
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        clock.advance(10)
        assert body(await client.get("/v1/accounts/u"))["error"]["code"] == "key_expired"


async def test_a_cached_key_is_refused_the_moment_it_expires(ledger: Ledger, clock: Clock) -> None:
    app = create_app(ledger, sweep=False)
    app.state.key_cache = KeyCache(
        60, keys.authenticate, clock=lambda: 0.0
    )  # the cache's own time stands still
    _key, secret = await create_expiring(ledger, HOUR)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://t",
        headers={"Authorization": f"Bearer {secret}"},
    ) as client:
        assert (await client.get("/v1/accounts/u")).status_code == 200
        clock.advance(HOUR.total_seconds())
        refused = await client.get("/v1/accounts/u")
    assert (refused.status_code, body(refused)["error"]["code"]) == (401, "key_expired")
    await app.state.stripe.close()


async def test_with_no_cache_an_expired_key_is_refused_too(
    make_ledger: LedgerFactory, clock: Clock
) -> None:
    ledger = await make_ledger(server={"key_cache_seconds": 0})
    _key, secret = await create_expiring(ledger, HOUR)
    clock.advance(2 * HOUR.total_seconds())
    async with client_for(ledger, secret) as client:
        refused = await client.post("/v1/charges", json={"account_id": "u", "amount": 1})
    assert (refused.status_code, body(refused)["error"]["code"]) == (401, "key_expired")


async def test_a_key_without_an_expiry_never_expires(ledger: Ledger, clock: Clock) -> None:
    key, secret = await create_expiring(ledger, None)
    assert key.expires_at is None
    clock.advance(timedelta(days=365 * 20).total_seconds())
    async with client_for(ledger, secret) as client:
        assert (await client.get("/v1/accounts/u")).status_code == 200


async def test_the_expiry_is_audited_and_listed(ledger: Ledger, clock: Clock) -> None:
    key, _secret = await create_expiring(ledger, timedelta(days=30))
    (listed,) = await db.run(ledger.engine, keys.list_keys, readonly=True)
    assert listed.expires_at == clock.now + timedelta(days=30)
    async with db.transaction(ledger.engine) as conn:
        (created,) = await audit_trail(conn, key.id)
    assert created.after["expires_at"] == (clock.now + timedelta(days=30)).isoformat()


@pytest.mark.parametrize(
    "expires_in",
    [timedelta(0), timedelta(seconds=-1), -HOUR, keys.MAX_LIFETIME + timedelta(seconds=1)],
)
async def test_an_expiry_out_of_bounds_is_refused(ledger: Ledger, expires_in: timedelta) -> None:
    with pytest.raises(InvalidRequest, match="expires_in"):
        await create_expiring(ledger, expires_in)
    assert await db.run(ledger.engine, keys.list_keys, readonly=True) == []


@pytest.mark.parametrize(
    ("text", "lifetime"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("1d", timedelta(days=1))],
)
def test_lifetimes_are_written_in_hours_or_days(text: str, lifetime: timedelta) -> None:
    assert keys.parse_lifetime(text) == lifetime


@pytest.mark.parametrize(
    "text", ["", "30", "d", "-1d", "1.5d", "30 d", "1w", "3M", "٣d", "9" * 12 + "d"]
)
def test_a_lifetime_that_is_not_hours_or_days_is_refused(text: str) -> None:
    with pytest.raises(InvalidRequest, match="like 12h or 30d"):
        keys.parse_lifetime(text)


async def test_a_key_is_live_by_its_id_until_it_expires_or_is_revoked(
    ledger: Ledger, clock: Clock
) -> None:
    expiring, _secret = await create_expiring(ledger, HOUR)
    lasting, _other = await create_expiring(ledger, None)

    async def live(key_id: str) -> keys.ApiKey | None:
        return await db.run(ledger.engine, lambda conn: keys.live_key(conn, key_id, ledger.now()))

    assert await live(expiring.id) == expiring
    clock.advance(HOUR.total_seconds())
    assert await live(expiring.id) is None
    await db.run(
        ledger.engine, lambda conn: keys.revoke_key(conn, lasting.id, clock.now, actor="t")
    )
    assert await live(lasting.id) is None
    assert await live("key_unknown") is None
