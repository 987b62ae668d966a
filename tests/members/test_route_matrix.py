"""Issue 25's route matrix: every applicable hard spend limit (the wallet's, a member's,
an app's, a proxy key's) is checked atomically when a hold or charge is written, on
every route that spends, through HTTP on SQLite and PostgreSQL.

Each cell sets one hard day limit that leaves less than its route needs, then sends the
route. A route that can be refused answers ``402 limit_reached`` naming the limit, with
``period``, ``limit``, ``remaining``, ``resets_at`` and ``required``, and writes nothing
(balance, held, history and the limits' spend as they were); a usage batch answers that
error in the event's result. What the design lets through is asserted as the design says
(:mod:`creditsd.ledger.limits`): a capture past its hold under ``[holds] overrun = "cap"``
charges what the limit leaves and records the rest as uncollected; a gateway's usage
(the call was served already) is charged whatever the limits and counted, so the next
charge is refused; an operator's adjustment is a correction, not spend: neither refused
nor counted, but never past what the account can spend.

A proxied call is a member's by ``X-Creditsd-Member`` here; a proxy key minted for a
member is covered with the proxy's other tests, in ``tests/proxy/test_members.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from creditsd.api.app import create_app
from creditsd.inprocess import Ledger
from creditsd.kit import jsonio
from tests.conftest import Clock, LedgerFactory, body, create_key
from tests.gateway.conftest import INTERNAL_SECRET
from tests.gateway.test_inbound import SEED_USAGE
from tests.proxy.conftest import MODEL, settled
from tests.proxy.test_keys import MAX_TOKENS, MESSAGES, estimate
from tests.proxy.upstream import UPSTREAM_KEY, Upstream
from tests.web.test_admin import login_token, token_in

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)
MIDNIGHT = datetime(2026, 12, 8, tzinfo=UTC)  # when every day limit here resets
WALLET = "acme"
MEMBER = "ada"
APP = "chat"  # the app key's name: the subject of app limits on /v1 and the proxy
OPERATOR = "ops"  # the admin key's name: the app of what the console does
LIMIT = Decimal(5)  # a day's limit in credits ...
NEED = Decimal(10)  # ... and what a route needs


@dataclass
class World:
    """A wallet of 1,000 credits, and a client for each way in."""

    ledger: Ledger
    admin_secret: str
    admin: httpx.AsyncClient  # an admin key (OPERATOR)
    app: httpx.AsyncClient  # an app key (APP)
    gateway: httpx.AsyncClient  # the gateway's internal secret
    upstream: Upstream
    proxy_key: dict[str, Any]  # minted by APP for the wallet

    async def state(self) -> tuple[Any, ...]:
        """What a refused write must leave as it was: the wallet's balance, held, history
        and each limit's spend."""
        account = body(await self.admin.get(f"/v1/accounts/{WALLET}"))
        history = body(await self.admin.get(f"/v1/accounts/{WALLET}/transactions"))["data"]
        return account["balance"], account["held"], [t["id"] for t in history], await self.spent()

    async def spent(self) -> list[tuple[str, Any, Any]]:
        """Each limit on the wallet: its scope, spent and held."""
        limits = body(await self.admin.get(f"/v1/accounts/{WALLET}/limits"))["data"]
        return [(limit["scope"], limit["spent"], limit["held"]) for limit in limits]

    async def set_limit(self, source: str, amount: Decimal, app: str = APP) -> None:
        """A hard day limit of ``amount`` credits on the ``source`` subject."""
        paths = {
            "wallet": f"/v1/accounts/{WALLET}/limits",
            "member": f"/v1/accounts/{WALLET}/members/{MEMBER}",
            "app": f"/v1/accounts/{WALLET}/apps/{app}/limits",
            "key": f"/v1/proxy-keys/{self.proxy_key['id']}/limits",
        }
        limits = [{"amount": str(amount), "period": "day"}]
        put = await self.app.put(paths[source], json={"limits": limits})
        assert put.status_code in (200, 201), put.text

    async def charge(
        self, amount: Decimal, member: dict[str, str], secret: str | None = None
    ) -> httpx.Response:
        """``POST /v1/charges`` of ``amount`` from the wallet, by APP (or the key given)."""
        sent = {"account_id": WALLET, "amount": str(amount), **member}
        headers = None if secret is None else {"Authorization": f"Bearer {secret}"}
        return await self.app.post("/v1/charges", json=sent, headers=headers)


def refused(error: dict[str, Any], source: str, limit: Decimal, required: Decimal) -> None:
    """``error`` refuses a write for the ``source`` limit, saying all a caller needs."""
    assert error["code"] == "limit_reached", error
    assert (error["limit_source"], error["period"]) == (source, "day")
    assert (error["limit"], error["remaining"], error["required"]) == (limit, limit, required)
    assert datetime.fromisoformat(error["resets_at"]) == MIDNIGHT


def member_of(source: str) -> dict[str, str]:
    """The member a write names: the member in the member column, else none."""
    return {"member": MEMBER} if source == "member" else {}


# The routes: each sets its cell's limit, sends the route and asserts what it must do.


async def charge(world: World, source: str) -> None:
    await world.set_limit(source, LIMIT)
    before = await world.state()
    answer = await world.charge(NEED, member_of(source))
    assert answer.status_code == 402
    refused(body(answer)["error"], source, LIMIT, NEED)
    assert await world.state() == before


async def hold(world: World, source: str) -> None:
    await world.set_limit(source, LIMIT)
    before = await world.state()
    sent = {"account_id": WALLET, "amount": str(NEED), "expires_in": 600, **member_of(source)}
    answer = await world.app.post("/v1/holds", json=sent)
    assert answer.status_code == 402
    refused(body(answer)["error"], source, LIMIT, NEED)
    assert await world.state() == before


async def _held_then_captured(world: World, source: str) -> tuple[httpx.Response, str]:
    """A hold of 4 credits (within the limit of 5, leaving 1), captured at 10."""
    await world.set_limit(source, LIMIT)
    sent = {"account_id": WALLET, "amount": 4, "expires_in": 600, **member_of(source)}
    opened = await world.app.post("/v1/holds", json=sent)
    assert opened.status_code == 201, opened.text
    hold_id = body(opened)["id"]
    before = await world.state()
    captured = await world.app.post(f"/v1/holds/{hold_id}/capture", json={"amount": 10})
    if captured.status_code == 402:
        assert await world.state() == before
    return captured, hold_id


async def capture_refused(world: World, source: str) -> None:
    """``[holds] overrun = "refuse"``: past what the limit leaves, the capture is 402 and
    the hold stays open."""
    captured, hold_id = await _held_then_captured(world, source)
    assert captured.status_code == 402
    error = body(captured)["error"]
    assert error["code"] == "limit_reached"
    assert (error["limit_source"], error["period"], error["limit"]) == (source, "day", LIMIT)
    assert (error["remaining"], error["required"]) == (1, 6)  # the overrun past the hold
    assert datetime.fromisoformat(error["resets_at"]) == MIDNIGHT
    assert body(await world.app.get(f"/v1/holds/{hold_id}"))["status"] == "open"


async def capture_capped(world: World, source: str) -> None:
    """``[holds] overrun = "cap"``: the capture charges what the limit leaves (the hold's
    4 and 1 more), records the rest as uncollected, and counts it."""
    captured, _hold_id = await _held_then_captured(world, source)
    assert captured.status_code == 200, captured.text
    transfer = body(captured)["transfer"]
    assert transfer["amount"] == LIMIT
    settlement = transfer["pricing"]["settlement"]
    assert (settlement["outcome"], settlement["uncollected"]) == ("over_hold_capped", 5)
    assert (await world.spent())[0][1:] == (LIMIT, 0)
    next_one = await world.charge(Decimal("0.0001"), member_of(source))
    assert (next_one.status_code, body(next_one)["error"]["remaining"]) == (402, 0)


async def usage(world: World, source: str) -> None:
    await world.set_limit(source, LIMIT)
    before = await world.state()
    event = {"id": "e1", "account_id": WALLET, "feature": "chat_message", **member_of(source)}
    answer = await world.app.post("/v1/usage", json={"events": [event]})
    assert answer.status_code == 200
    (result,) = body(answer)["results"]
    assert (result["status"], result["transfer_id"]) == ("limit_reached", None)
    refused(result["error"], source, LIMIT, NEED)  # a chat message costs 10 credits
    assert await world.state() == before


async def gateway(world: World, source: str) -> None:
    """The gateway's usage is a forced debit: the call was served, so it is charged past
    the limit and counted. The next charge on the wallet's limit is refused; the gateway's
    app writes only its usage (no API key may take its name), charged and counted again."""
    await world.set_limit(source, LIMIT, app="gateway")
    for sent, spent in ((1, NEED), (2, 2 * NEED)):
        cost = {"userId": WALLET, "cost": 0.1, "totalCost": 0.1, "timestamp": sent}
        posted = await world.gateway.post(
            "/api/internal/webhooks/usage", json={**SEED_USAGE, **cost}
        )
        assert (posted.status_code, body(posted)["status"]) == (200, "charged")  # 10 credits
        assert (await world.spent())[0][1:] == (spent, 0)
        if source == "wallet":
            next_one = await world.charge(Decimal("0.0001"), {})
            error = body(next_one)["error"]
            assert (next_one.status_code, error["limit_source"], error["remaining"]) == (
                402,
                "wallet",
                0,
            )
    assert body(await world.admin.get(f"/v1/accounts/{WALLET}"))["balance"] == 1000 - 2 * NEED


async def proxied_call(world: World, source: str) -> httpx.Response:
    """A chat completion paid by the wallet: with the proxy key in the key column, else
    with the app key naming the wallet (and the member, in the member column)."""
    headers = {"Content-Type": "application/json"}
    if source == "key":
        headers["Authorization"] = f"Bearer {world.proxy_key['secret']}"
    else:
        headers["X-Creditsd-Account"] = WALLET
    if source == "member":
        headers["X-Creditsd-Member"] = MEMBER
    sent = {"model": MODEL, "messages": MESSAGES, "max_tokens": MAX_TOKENS}
    return await world.app.post(
        "/openai/v1/chat/completions", content=jsonio.render(sent), headers=headers
    )


async def proxy(world: World, source: str) -> None:
    """A proxied call holds its estimate first: refused before the upstream hears of it.
    An app key names the wallet it pays from; a proxy key pays for its own."""
    held = await estimate(world.ledger)
    need, limit = (world.ledger.money.to_decimal(units) for units in (held, held // 2))
    await world.set_limit(source, limit)
    before = await world.state()
    answer = await proxied_call(world, source)
    assert answer.status_code == 402, answer.text
    refused(body(answer)["error"], source, limit, need)
    assert world.upstream.requests == []
    assert await world.state() == before


async def proxy_overrun(world: World, source: str) -> None:
    """A proxied call dearer than its hold is charged what the limit leaves, the rest
    recorded as uncollected, and counted: the call was served, and nobody is left to
    answer a 402, so it caps even under ``[holds] overrun = "refuse"`` (set here)."""
    held = await estimate(world.ledger)
    limit = world.ledger.money.to_decimal(held + 100)
    await world.set_limit(source, limit)
    world.upstream.usage = {"prompt_tokens": 1_000_000, "completion_tokens": 500}  # 15.03
    answer = await proxied_call(world, source)
    assert answer.status_code == 200, answer.text
    balance, _held = await settled(world.ledger, WALLET)
    assert world.ledger.money.to_decimal(balance) == 1000 - limit
    capture = body(await world.admin.get(f"/v1/accounts/{WALLET}/transactions"))["data"][0]
    assert (capture["kind"], capture["amount"]) == ("capture", limit)
    settlement = capture["pricing"]["settlement"]
    assert (settlement["outcome"], settlement["uncollected"]) == (
        "over_hold_capped",
        Decimal("15.03") - limit,
    )
    assert (await world.spent())[0][1:] == (limit, 0)
    again = await proxied_call(world, source)
    assert (again.status_code, body(again)["error"]["code"]) == (402, "limit_reached")


async def adjust(world: World, source: str) -> None:
    """An operator's adjustment corrects, it does not spend: past the limit it goes
    through and is not counted; past what the account can spend it is refused."""
    await world.set_limit(source, LIMIT, app=OPERATOR)
    csrf = await login_token(world.admin)
    signed = await world.admin.post("/admin/login", data={"key": world.admin_secret, "csrf": csrf})
    assert signed.status_code == 303
    form = {
        "csrf": token_in((await world.admin.get(f"/admin/accounts/{WALLET}")).text),
        "direction": "debit",
        "amount": str(NEED),
        "reason": "double charge",
    }
    taken = await world.admin.post(f"/admin/accounts/{WALLET}/adjust", data=form)
    assert taken.status_code == 303, taken.text
    account = body(await world.admin.get(f"/v1/accounts/{WALLET}"))
    assert account["balance"] == 1000 - NEED
    assert (await world.spent())[0][1:] == (0, 0)  # not spend: nothing counted
    before = await world.state()
    too_much = {**form, "amount": str(account["available"] + 1)}
    overdrawn = await world.admin.post(f"/admin/accounts/{WALLET}/adjust", data=too_much)
    assert overdrawn.status_code == 402
    assert await world.state() == before


Route = Callable[[World, str], Awaitable[None]]
ROUTES: dict[str, tuple[Route, tuple[str, ...]]] = {
    "charge": (charge, ("wallet", "member", "app")),
    "hold": (hold, ("wallet", "member", "app")),
    "capture_refused": (capture_refused, ("wallet", "member", "app")),
    "capture_capped": (capture_capped, ("wallet", "member", "app")),
    "usage": (usage, ("wallet", "member", "app")),
    "gateway": (gateway, ("wallet", "app")),
    "proxy": (proxy, ("wallet", "member", "app", "key")),
    "proxy_overrun": (proxy_overrun, ("wallet", "member", "app", "key")),
    "adjust": (adjust, ("wallet", "app")),
}
CELLS = [(route, source) for route, (_, sources) in ROUTES.items() for source in sources]


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    running = Upstream()
    yield running
    running.close()


@asynccontextmanager
async def world_of(ledger: Ledger, upstream: Upstream) -> AsyncIterator[World]:
    """The wallet with its 1,000 credits, and the clients of ``ledger``'s app."""
    app = create_app(ledger, sweep=False)
    admin_secret = await create_key(ledger, "admin", OPERATOR)
    clients = [client(app, admin_secret), client(app, await create_key(ledger, "app", APP))]
    clients.append(client(app, None, {"X-Internal-Secret": INTERNAL_SECRET}))
    admin, by_app, gateway = clients
    try:
        granted = await admin.post("/v1/grants", json={"account_id": WALLET, "amount": 1000})
        assert granted.status_code == 201
        minted = await by_app.post("/v1/proxy-keys", json={"account_id": WALLET})
        yield World(ledger, admin_secret, admin, by_app, gateway, upstream, body(minted))
    finally:
        for opened in clients:
            await opened.aclose()
        await app.state.proxy.aclose()
        await app.state.stripe.close()


def client(
    app: FastAPI, secret: str | None, headers: dict[str, str] | None = None
) -> httpx.AsyncClient:
    """A client of ``app`` with an API key's secret (None: no key)."""
    sent = dict(headers or {})
    if secret is not None:
        sent["Authorization"] = f"Bearer {secret}"
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://creditsd.test", headers=sent
    )


@pytest.mark.parametrize(("route", "source"), CELLS)
async def test_no_route_passes_a_hard_limit(
    make_ledger: LedgerFactory, upstream: Upstream, clock: Clock, route: str, source: str
) -> None:
    clock.now = NOW
    ledger = await make_ledger(
        proxy={"base_url": upstream.url, "api_key": UPSTREAM_KEY},
        gateway={"internal_secret": INTERNAL_SECRET},
        holds={"overrun": "cap" if route == "capture_capped" else "refuse"},
    )
    async with world_of(ledger, upstream) as world:
        if source == "member":
            added = await world.app.put(f"/v1/accounts/{WALLET}/members/{MEMBER}", json={})
            assert added.status_code == 201
        test, _sources = ROUTES[route]
        await test(world, source)
