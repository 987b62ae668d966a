"""Proxy keys: an app mints a key for one account (``POST /v1/proxy-keys``), and that
account's client calls ``/openai/v1`` with it through the official ``openai`` SDK; the
key pays only for its own account, never past its spend limit however many calls run at
once, stops at once when revoked or expired, is refused on ``/v1``, and is held to its
requests a minute."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from openai.types.shared_params import FunctionDefinition
from sqlalchemy import select

from creditsd.api.app import create_app
from creditsd.inprocess import Ledger
from creditsd.kit import db, jsonio
from creditsd.pricing.catalog import TokenUse
from creditsd.proxy.service import estimate_input_tokens
from creditsd.tables import proxy_keys
from tests.conftest import Clock, LedgerFactory, audit_trail, body, create_key
from tests.proxy.conftest import MODEL, sdk
from tests.proxy.upstream import UPSTREAM_KEY, Upstream

MESSAGES: list[Any] = [{"role": "user", "content": "Hi"}]
MAX_TOKENS = 1_000
CALL_COST = 450  # USAGE: 1,000 × $0.15/M + 500 × $0.60/M = 0.045 credits


# What :func:`call` holds for: its body as the SDK sends it, and its output cap.
HELD_USE = TokenUse(
    MODEL,
    input_tokens=estimate_input_tokens(
        jsonio.render({"model": MODEL, "messages": MESSAGES, "max_tokens": MAX_TOKENS})
    ),
    output_tokens=MAX_TOKENS,
)


async def estimate(ledger: Ledger) -> int:
    """What a call of ``MESSAGES`` with ``MAX_TOKENS`` is held for, in minor units."""
    return (await ledger.quote(HELD_USE)).amount


async def mint(
    http: httpx.AsyncClient, app_key: str, account_id: str = "user_1", **fields: Any
) -> dict[str, Any]:
    """A new proxy key, as minting answers it (its secret included)."""
    answer = await http.post(
        "/v1/proxy-keys",
        json={"account_id": account_id, **fields},
        headers={"Authorization": f"Bearer {app_key}"},
    )
    assert answer.status_code == 201, answer.text
    return body(answer)  # type: ignore[no-any-return]


async def call(client: openai.AsyncOpenAI) -> str | None:
    """One chat completion; its answer's text."""
    answer = await client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS
    )
    return answer.choices[0].message.content


async def test_a_minted_key_pays_for_its_account_through_the_sdk(
    proxied: Ledger,
    http: httpx.AsyncClient,
    app_key: str,
    upstream: Upstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG", logger="creditsd")
    await proxied.grant("user_1", 10 * proxied.money.unit)
    key = await mint(http, app_key, limit="2.5", name="browser", expires_in=3600)
    assert key["secret"].startswith("cdp_") and key["hint"] == f"cdp_…{key['secret'][-4:]}"
    assert (key["account_id"], key["member"], key["app"], key["name"]) == (
        "user_1",
        None,
        "web",
        "browser",
    )
    assert (key["limit"], key["spent"], key["held"], key["revoked_at"]) == (
        Decimal("2.5"),
        0,
        0,
        None,
    )
    assert key["expires_at"] is not None

    client = sdk(http, key["secret"])  # no X-Creditsd-Account: the key names its account
    assert await call(client) == "Hello!"
    assert MODEL in [model.id async for model in client.models.list()]

    account = await proxied.get_account("user_1")
    assert (account.balance, account.held) == (10 * proxied.money.unit - CALL_COST, 0)
    (capture, *_) = (await proxied.transactions("user_1")).items
    assert (capture.kind, capture.app, capture.proxy_key_id) == ("capture", "web", key["id"])
    history = body(
        await http.get(
            "/v1/accounts/user_1/transactions", headers={"Authorization": f"Bearer {app_key}"}
        )
    )
    assert history["data"][0]["proxy_key_id"] == key["id"]
    held = body(
        await http.get(
            f"/v1/holds/{history['data'][0]['hold_id']}",
            headers={"Authorization": f"Bearer {app_key}"},
        )
    )
    assert (held["status"], held["proxy_key_id"]) == ("captured", key["id"])
    assert upstream.requests[0][0]["Authorization"] == f"Bearer {UPSTREAM_KEY}"

    listed = body(
        await http.get(
            "/v1/proxy-keys?account_id=user_1", headers={"Authorization": f"Bearer {app_key}"}
        )
    )
    (shown,) = listed["data"]
    assert (shown["id"], shown["spent"], shown["held"]) == (key["id"], Decimal("0.045"), 0)
    assert "secret" not in shown
    # Only a digest is kept, and the secret appears in no log line.
    row = await db.run(proxied.engine, lambda conn: _stored(conn, key["id"]), readonly=True)
    assert key["secret"] not in row.values()
    assert key["secret"] not in caplog.text
    records = await db.run(proxied.engine, lambda conn: audit_trail(conn, key["id"]))
    assert [(r.action, r.actor.endswith(":web")) for r in records] == [("proxy_key.create", True)]
    assert records[0].after["spend_limit"] == 25_000


async def _stored(conn: Any, key_id: str) -> dict[str, Any]:
    row = (await conn.execute(select(proxy_keys).where(proxy_keys.c.id == key_id))).one()
    return dict(row._mapping)


async def test_a_revoked_key_is_refused_at_once_and_revoking_is_audited(
    proxied: Ledger, http: httpx.AsyncClient, app_key: str, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    key = await mint(http, app_key)
    client = sdk(http, key["secret"])
    assert await call(client) == "Hello!"
    auth = {"Authorization": f"Bearer {app_key}"}
    revoked = await http.delete(f"/v1/proxy-keys/{key['id']}", headers=auth)
    assert revoked.status_code == 200 and body(revoked)["revoked_at"] is not None
    again = await http.delete(f"/v1/proxy-keys/{key['id']}", headers=auth)
    assert body(again)["revoked_at"] == body(revoked)["revoked_at"]  # harmless, once audited

    with pytest.raises(openai.AuthenticationError) as refused:
        await call(client)
    assert refused.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        await client.models.list()
    assert len(upstream.requests) == 1
    records = await db.run(proxied.engine, lambda conn: audit_trail(conn, key["id"]))
    assert [record.action for record in records] == ["proxy_key.create", "proxy_key.revoke"]
    unknown = await http.delete("/v1/proxy-keys/pxk_0000", headers=auth)
    assert (unknown.status_code, body(unknown)["error"]["code"]) == (404, "proxy_key_not_found")


async def test_an_expired_key_is_refused_saying_so(
    proxied: Ledger, http: httpx.AsyncClient, app_key: str, clock: Clock, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    key = await mint(http, app_key, expires_in=60)
    client = sdk(http, key["secret"])
    clock.advance(60)
    with pytest.raises(openai.AuthenticationError) as refused:
        await call(client)
    assert refused.value.code == "key_expired"
    assert key["secret"] not in str(refused.value.body)
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/accounts/user_1"), ("POST", "/v1/charges"), ("POST", "/v1/proxy-keys")],
)
async def test_a_proxy_key_is_refused_on_v1(
    proxied: Ledger, http: httpx.AsyncClient, app_key: str, method: str, path: str
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    key = await mint(http, app_key)
    answer = await http.request(
        method,
        path,
        json={"account_id": "user_1", "amount": 1} if method == "POST" else None,
        headers={"Authorization": f"Bearer {key['secret']}"},
    )
    assert answer.status_code == 401
    assert "/openai/v1" in body(answer)["error"]["message"]
    assert (await proxied.get_account("user_1")).balance == 10 * proxied.money.unit


async def test_a_proxy_key_pays_only_for_its_own_account(
    proxied: Ledger, http: httpx.AsyncClient, app_key: str, upstream: Upstream
) -> None:
    for account in ("user_1", "user_2"):
        await proxied.grant(account, 10 * proxied.money.unit)
    key = await mint(http, app_key)
    other = sdk(http, key["secret"], **{"X-Creditsd-Account": "user_2"})
    with pytest.raises(openai.PermissionDeniedError) as refused:
        await call(other)
    assert refused.value.code == "wrong_account"
    assert upstream.requests == []
    own = sdk(http, key["secret"], **{"X-Creditsd-Account": "user_1"})
    assert await call(own) == "Hello!"
    assert (await proxied.get_account("user_2")).balance == 10 * proxied.money.unit
    assert (await proxied.get_account("user_1")).balance == 10 * proxied.money.unit - CALL_COST
    # The in-process API holds the same line: a key's hold names its own account only.
    with pytest.raises(Exception, match="pays only for account 'user_1'"):
        await proxied.open_hold("user_2", 1, app="web", proxy_key_id=key["id"])
    assert (await proxied.get_account("user_2")).held == 0


@pytest.mark.parametrize("fits", [1, 3])
async def test_concurrent_calls_through_one_key_never_pass_its_limit(
    proxied: Ledger, http: httpx.AsyncClient, app_key: str, upstream: Upstream, fits: int
) -> None:
    await proxied.grant("user_1", 100 * proxied.money.unit)
    held = await estimate(proxied)
    limit = fits * held + held // 2  # room for `fits` calls in flight, not one more
    key = await mint(http, app_key, limit=str(proxied.money.to_decimal(limit)))
    client = sdk(http, key["secret"])
    upstream.gate.clear()  # the calls that get through wait at the upstream, holding
    calls = [asyncio.create_task(call(client)) for _ in range(12)]

    pending = set(calls)
    async with asyncio.timeout(20):  # until all but `fits` are answered, or one too many went
        while len(pending) > fits and len(upstream.requests) <= fits:
            _, pending = await asyncio.wait(pending, timeout=0.05, return_when="FIRST_COMPLETED")
    await asyncio.sleep(0.1)  # one more call getting through now would be seen upstream
    through = len(upstream.requests)
    upstream.gate.set()
    answers = await asyncio.gather(*calls, return_exceptions=True)
    assert through == fits

    refused = [answer for answer in answers if isinstance(answer, openai.APIStatusError)]
    assert [answer for answer in answers if not isinstance(answer, Exception)] == ["Hello!"] * fits
    assert len(refused) == len(calls) - fits
    assert {(error.status_code, error.code) for error in refused} == {(402, "key_limit_reached")}
    assert refused[0].body["type"] == "insufficient_quota"  # type: ignore[index]
    assert len(upstream.requests) == fits
    account = await proxied.get_account("user_1")
    assert (account.balance, account.held) == (100 * proxied.money.unit - fits * CALL_COST, 0)


async def test_a_key_limit_bounds_tool_heavy_calls_before_they_reach_the_upstream(
    proxied: Ledger, http: httpx.AsyncClient, app_key: str, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 100 * proxied.money.unit)
    key = await mint(http, app_key, limit="1")
    client = sdk(http, key["secret"])
    # The tool's text is held for (3,469 minor units and more a call): the limit covers two.
    tool: FunctionDefinition = {
        "name": "lookup",
        "description": "Answer in the voice of a ship's log. " * 2_500,
    }
    upstream.usage = {"prompt_tokens": 23_000, "completion_tokens": 100, "total_tokens": 23_100}

    async def tool_call() -> str:
        try:
            await client.chat.completions.create(
                model=MODEL,
                messages=MESSAGES,
                tools=[{"type": "function", "function": tool}],
                max_tokens=100,
            )
        except openai.APIStatusError as refused:
            return f"{refused.status_code} {refused.code}"
        return "200"

    statuses = await asyncio.gather(*(tool_call() for _ in range(20)))
    assert set(statuses) == {"200", "402 key_limit_reached"}
    assert 1 <= statuses.count("200") == len(upstream.requests) <= 2
    listed = body(await http.get("/v1/proxy-keys", headers={"Authorization": f"Bearer {app_key}"}))
    assert listed["data"][0]["spent"] == statuses.count("200") * Decimal("0.351")
    assert listed["data"][0]["held"] == 0


async def test_a_call_that_died_holds_the_limit_only_until_its_hold_expires(
    proxied: Ledger, http: httpx.AsyncClient, app_key: str, upstream: Upstream, clock: Clock
) -> None:
    await proxied.grant("user_1", 100 * proxied.money.unit)
    held = await estimate(proxied)
    key = await mint(http, app_key, limit=str(proxied.money.to_decimal(held + held // 2)))
    # A process opened the hold for a call, then died before it forwarded or settled it.
    await proxied.open_hold("user_1", use=HELD_USE, app="web", proxy_key_id=key["id"])
    client = sdk(http, key["secret"])
    with pytest.raises(openai.APIStatusError) as refused:
        await call(client)
    assert (refused.value.status_code, refused.value.code) == (402, "key_limit_reached")
    assert upstream.requests == []
    clock.advance(proxied.settings.holds.default_expires_in)
    assert await call(client) == "Hello!"


async def test_a_call_dearer_than_its_estimate_is_charged_no_more_than_the_limit_leaves(
    proxied: Ledger, http: httpx.AsyncClient, app_key: str, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 100 * proxied.money.unit)
    held = await estimate(proxied)
    limit = held + 100
    key = await mint(http, app_key, limit=str(proxied.money.to_decimal(limit)))
    upstream.usage = {"prompt_tokens": 1_000_000, "completion_tokens": 500}  # 15.03 credits
    assert await call(sdk(http, key["secret"])) == "Hello!"
    (capture, *_) = (await proxied.transactions("user_1")).items
    assert capture.amount == limit
    settlement = capture.pricing["settlement"]  # type: ignore[index]
    assert settlement["outcome"] == "over_hold_capped"
    assert settlement["uncollected"] == proxied.money.to_decimal(150_300 - limit)
    listed = body(await http.get("/v1/proxy-keys", headers={"Authorization": f"Bearer {app_key}"}))
    assert listed["data"][0]["spent"] == proxied.money.to_decimal(limit)


async def test_a_key_past_its_requests_a_minute_gets_429_with_retry_after(
    proxied: Ledger, http: httpx.AsyncClient, app_key: str, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    key = await mint(http, app_key, rate_limit=2)
    client = sdk(http, key["secret"])
    assert await call(client) == "Hello!"
    await client.models.list()
    with pytest.raises(openai.RateLimitError) as refused:
        await call(client)
    retry_after = refused.value.response.headers["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 30  # one request every 30 s
    assert refused.value.code == "rate_limited"
    assert len(upstream.requests) == 1
    other = await mint(http, app_key, rate_limit=2)  # each key has its own bucket
    assert await call(sdk(http, other["secret"])) == "Hello!"


async def test_app_keys_on_the_proxy_follow_their_own_rate_limit(
    make_ledger: LedgerFactory, upstream: Upstream
) -> None:
    ledger = await make_ledger(
        proxy={"base_url": upstream.url, "api_key": UPSTREAM_KEY, "app_rate_limit_per_minute": 1}
    )
    await ledger.grant("user_1", 10 * ledger.money.unit)
    app = create_app(ledger, sweep=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as transport:
        client = sdk(transport, await create_key(ledger, "app"), **{"X-Creditsd-Account": "user_1"})
        assert await call(client) == "Hello!"
        with pytest.raises(openai.RateLimitError) as refused:
            await call(client)
        assert int(refused.value.response.headers["Retry-After"]) == 60
    await app.state.proxy.aclose()
    await app.state.stripe.close()


async def test_keys_are_listed_newest_first_a_page_at_a_time(
    proxied: Ledger, http: httpx.AsyncClient, app_key: str
) -> None:
    minted = [(await mint(http, app_key, account))["id"] for account in ("u1", "u1", "u2", "u1")]
    auth = {"Authorization": f"Bearer {app_key}"}
    first = body(await http.get("/v1/proxy-keys?account_id=u1&limit=2", headers=auth))
    assert [key["id"] for key in first["data"]] == [minted[3], minted[1]]
    rest = body(
        await http.get(
            f"/v1/proxy-keys?account_id=u1&limit=2&cursor={first['next_cursor']}", headers=auth
        )
    )
    assert ([key["id"] for key in rest["data"]], rest["next_cursor"]) == ([minted[0]], None)
    everyone = body(await http.get("/v1/proxy-keys", headers=auth))
    assert [key["id"] for key in everyone["data"]] == minted[::-1]
    reader = await create_key(proxied, "read", "dashboard")
    refused = await http.post(
        "/v1/proxy-keys", json={"account_id": "u1"}, headers={"Authorization": f"Bearer {reader}"}
    )
    assert refused.status_code == 403


@pytest.mark.parametrize(
    ("sent", "named"),
    [
        ('{"account_id": "user_1", "limit": NaN}', "NaN"),
        ('{"account_id": "user_1", "limit": Infinity}', "Infinity"),
        ('{"account_id": "user_1", "limit": -1}', "limit"),
        ('{"account_id": "user_1", "limit": 0}', "limit"),
        ('{"account_id": "user_1", "limit": 1e400}', "limit"),
        ('{"account_id": "user_1", "limit": "99999999999999999999"}', "limit"),
        ('{"account_id": "user_1", "limit": 1.00001}', "limit"),
        ('{"account_id": "user_1", "limit": "ten"}', "limit"),
        ('{"account_id": "user_1", "limit": true}', "limit"),
        ('{"account_id": 7}', "account_id"),
        ('{"account_id": "user\\u0000_1"}', "account_id"),
        ('{"account_id": "user_1", "name": "a\\u0000b"}', "name"),
        ('{"account_id": "user_1", "member": "ada lovelace"}', "member"),
        ('{"account_id": "user_1", "member": ""}', "member"),
        ('{"account_id": "user_1", "owner": "me"}', "owner"),
        ('{"account_id": "user_1", "expires_in": 0}', "expires_in"),
        ('{"account_id": "user_1", "expires_in": "60"}', "expires_in"),
        ('{"account_id": "user_1", "expires_in": 1e12}', "expires_in"),
        ('{"account_id": "user_1", "rate_limit": 0}', "rate_limit"),
        ('{"account_id": "user_1", "rate_limit": 1.5}', "rate_limit"),
        ("{}", "account_id"),
        ('{"account_id": "user_1"', "JSON"),
    ],
)
async def test_a_bad_mint_is_a_4xx_naming_the_problem_and_mints_nothing(
    proxied: Ledger, http: httpx.AsyncClient, app_key: str, sent: str, named: str
) -> None:
    auth = {"Authorization": f"Bearer {app_key}", "Content-Type": "application/json"}
    answer = await http.post("/v1/proxy-keys", content=sent, headers=auth)
    assert answer.status_code in {400, 422}, answer.text
    assert named in body(answer)["error"]["message"], answer.text
    assert body(await http.get("/v1/proxy-keys", headers=auth))["data"] == []


async def test_a_proxy_key_streams_and_its_spend_counts_the_stream(
    proxied: Ledger, http: httpx.AsyncClient, app_key: str
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    key = await mint(http, app_key, limit="1")
    stream = await sdk(http, key["secret"]).chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS, stream=True
    )
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream])
    assert text == "Hello! How can I help?"
    listed = body(
        await http.get(
            "/v1/proxy-keys?account_id=user_1", headers={"Authorization": f"Bearer {app_key}"}
        )
    )
    (shown,) = listed["data"]
    assert (shown["spent"], shown["held"]) == (Decimal("0.045"), 0)
    assert (await proxied.get_account("user_1")).balance == 10 * proxied.money.unit - CALL_COST
