"""A team wallet's members on the proxy: a call is a member's when ``X-Creditsd-Member``
names one, or when its proxy key was minted for one; it is held and charged against the
member's spend limits, and past one it is refused (402 ``limit_reached``) in OpenAI's
error shape, streamed or not, before the upstream hears of it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from creditsd.inprocess import Ledger
from creditsd.kit import jsonio
from tests.conftest import Clock, body
from tests.proxy.conftest import MODEL, sdk
from tests.proxy.test_keys import CALL_COST, MAX_TOKENS, MESSAGES, call, estimate, mint
from tests.proxy.upstream import Upstream

WALLET = {"X-Creditsd-Account": "acme"}


def _auth(app_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {app_key}"}


async def _team(ledger: Ledger, http: httpx.AsyncClient, app_key: str, ada_day: int) -> None:
    """The wallet ``acme`` with 10 credits, its member ada at ``ada_day`` minor units a
    day, and its member grace without limits."""
    await ledger.grant("acme", 10 * ledger.money.unit)
    limit = {"amount": str(ledger.money.to_decimal(ada_day)), "period": "day"}
    for member, limits in (("ada", [limit]), ("grace", [])):
        put = await http.put(
            f"/v1/accounts/acme/members/{member}", json={"limits": limits}, headers=_auth(app_key)
        )
        assert put.status_code == 201, put.text


async def _history(http: httpx.AsyncClient, app_key: str) -> list[dict[str, Any]]:
    """The wallet's transfers, newest first."""
    answer = await http.get("/v1/accounts/acme/transactions", headers=_auth(app_key))
    return body(answer)["data"]  # type: ignore[no-any-return]


def _error(refused: openai.APIStatusError) -> dict[str, Any]:
    """The error's body as sent, its numbers exact."""
    return jsonio.loads(refused.response.content)["error"]  # type: ignore[no-any-return]


async def test_a_member_named_on_a_call_is_charged_and_its_day_limit_refuses_the_next(
    proxied: Ledger, http: httpx.AsyncClient, app_key: str, upstream: Upstream, clock: Clock
) -> None:
    held = await estimate(proxied)
    await _team(proxied, http, app_key, ada_day=held + 100)  # room for one call
    ada = sdk(http, app_key, **WALLET, **{"X-Creditsd-Member": "ada"})
    assert await call(ada) == "Hello!"
    (capture, *_) = await _history(http, app_key)
    assert (capture["kind"], capture["member"], capture["app"]) == ("capture", "ada", "web")
    hold = body(await http.get(f"/v1/holds/{capture['hold_id']}", headers=_auth(app_key)))
    assert (hold["status"], hold["member"]) == ("captured", "ada")

    with pytest.raises(openai.APIStatusError) as refused:
        await call(ada)
    error = refused.value
    assert (error.status_code, error.code, error.type, error.param) == (
        402,
        "limit_reached",
        "insufficient_quota",
        None,
    )
    sent = _error(error)
    money = proxied.money
    assert sent["message"] == "this would take the member past its day spend limit"
    assert (sent["limit_source"], sent["period"]) == ("member", "day")
    assert (sent["limit"], sent["remaining"], sent["required"]) == (
        money.to_decimal(held + 100),
        money.to_decimal(held + 100 - CALL_COST),
        money.to_decimal(held),
    )
    midnight = (clock.now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert datetime.fromisoformat(sent["resets_at"]) == midnight

    # A stream is refused the same way, before it starts.
    with pytest.raises(openai.APIStatusError) as streamed:
        await ada.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS, stream=True
        )
    assert (streamed.value.status_code, streamed.value.code) == (402, "limit_reached")
    assert _error(streamed.value)["remaining"] == sent["remaining"]
    assert len(upstream.requests) == 1

    # Another member, and the wallet itself, still spend; the next day, ada again.
    assert await call(sdk(http, app_key, **WALLET, **{"X-Creditsd-Member": "grace"})) == "Hello!"
    assert await call(sdk(http, app_key, **WALLET)) == "Hello!"
    assert [t["member"] for t in (await _history(http, app_key))[:2]] == [None, "grace"]
    clock.now = midnight
    assert await call(ada) == "Hello!"
    account = await proxied.get_account("acme")
    assert (account.balance, account.held) == (10 * money.unit - 4 * CALL_COST, 0)


async def test_a_key_minted_for_a_member_is_that_members_on_every_call(
    proxied: Ledger, http: httpx.AsyncClient, app_key: str, upstream: Upstream
) -> None:
    await _team(proxied, http, app_key, ada_day=proxied.money.unit)
    key = await mint(http, app_key, "acme", member="ada")
    assert (key["account_id"], key["member"]) == ("acme", "ada")
    assert await call(sdk(http, key["secret"])) == "Hello!"
    assert await call(sdk(http, key["secret"], **{"X-Creditsd-Member": "ada"})) == "Hello!"
    assert [(t["member"], t["proxy_key_id"]) for t in (await _history(http, app_key))[:2]] == [
        ("ada", key["id"]),
        ("ada", key["id"]),
    ]

    # Never billed to a member other than the one it names.
    other = sdk(http, key["secret"], **{"X-Creditsd-Member": "grace"})
    with pytest.raises(openai.PermissionDeniedError) as refused:
        await call(other)
    assert (refused.value.code, refused.value.type) == ("wrong_member", "permission_error")
    assert _error(refused.value)["member_id"] == "ada"
    assert len(upstream.requests) == 2

    listed = body(await http.get("/v1/proxy-keys?account_id=acme", headers=_auth(app_key)))
    assert [(shown["id"], shown["member"]) for shown in listed["data"]] == [(key["id"], "ada")]
    revoked = await http.delete(f"/v1/proxy-keys/{key['id']}", headers=_auth(app_key))
    assert body(revoked)["member"] == "ada"

    # A key for the whole wallet pays for whichever member a call names.
    wallet_key = await mint(http, app_key, "acme")
    assert wallet_key["member"] is None
    assert await call(sdk(http, wallet_key["secret"], **{"X-Creditsd-Member": "grace"}))
    assert await call(sdk(http, wallet_key["secret"]))
    assert [t["member"] for t in (await _history(http, app_key))[:2]] == [None, "grace"]

    # A key whose member was removed pays for nothing more.
    grace_key = await mint(http, app_key, "acme", member="grace")
    removed = await http.delete("/v1/accounts/acme/members/grace", headers=_auth(app_key))
    assert removed.status_code == 200
    with pytest.raises(openai.NotFoundError) as gone:
        await call(sdk(http, grace_key["secret"]))
    assert gone.value.code == "member_not_found"


async def test_a_member_the_wallet_does_not_have_is_404_on_a_call_and_a_mint(
    proxied: Ledger, http: httpx.AsyncClient, app_key: str, upstream: Upstream
) -> None:
    await _team(proxied, http, app_key, ada_day=proxied.money.unit)
    await proxied.grant("user_1", 10 * proxied.money.unit)  # an account with no members
    for account, member in (("acme", "ad4"), ("user_1", "ada")):
        client = sdk(http, app_key, **{"X-Creditsd-Account": account, "X-Creditsd-Member": member})
        with pytest.raises(openai.NotFoundError) as refused:
            await call(client)
        assert (refused.value.code, refused.value.type) == (
            "member_not_found",
            "invalid_request_error",
        )
        assert _error(refused.value)["member_id"] == member
    assert upstream.requests == []
    assert (await proxied.get_account("acme")).held == 0

    for account, member in (("acme", "ad4"), ("user_1", "ada"), ("newcomer", "ada")):
        minted = await http.post(
            "/v1/proxy-keys", json={"account_id": account, "member": member}, headers=_auth(app_key)
        )
        assert minted.status_code == 404, minted.text
        assert body(minted)["error"]["code"] == "member_not_found"
    assert body(await http.get("/v1/proxy-keys", headers=_auth(app_key)))["data"] == []


@pytest.mark.parametrize("path", ["/chat/completions", "/embeddings"])  # fast lane, FastAPI
async def test_a_bad_member_header_is_a_4xx_naming_it_and_holds_nothing(
    proxied: Ledger, http: httpx.AsyncClient, app_key: str, upstream: Upstream, path: str
) -> None:
    await _team(proxied, http, app_key, ada_day=proxied.money.unit)
    sent = {"model": MODEL, "messages": MESSAGES, "input": "Hi"}
    known = [
        (name.encode(), value.encode()) for name, value in {**_auth(app_key), **WALLET}.items()
    ]
    for value in (
        b"",
        b"ada lovelace",
        b"x" * 129,
        b"ada\x00",
        b"ada/1",
        b"@ada",
        "ad\xe4".encode(),
    ):
        headers = [*known, (b"X-Creditsd-Member", value)]
        answer = await http.post(f"/openai/v1{path}", json=sent, headers=headers)
        assert answer.status_code == 422, (value, answer.text)
        error = body(answer)["error"]
        assert (error["code"], error["type"]) == ("validation_error", "invalid_request_error")
        assert "x-creditsd-member" in error["message"]
    assert upstream.requests == []
    assert (await proxied.get_account("acme")).balance == 10 * proxied.money.unit
