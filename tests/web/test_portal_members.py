"""A wallet member's billing page: a portal link made for one member shows what each of
their limits leaves and when it resets, the wallet's balance only where the deployment
allows it, and never the wallet's history nor another member's spend."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from playwright.async_api import BrowserContext, expect
from sqlalchemy import update

from creditsd.inprocess import Ledger
from creditsd.members import service as members
from creditsd.members.service import LimitSpec
from creditsd.tables import accounts
from creditsd.web.pages import day_label
from tests.conftest import Clock, LedgerFactory, body, client_for, create_key, put_member, serve_app
from tests.web.conftest import shoot

CREDIT = 10_000
RETURN_URL = "https://app.example/team"


async def team(ledger: Ledger) -> None:
    """A wallet of 1,000 credits: Ada may spend 100 a day and 300 a month and has spent 40
    (15 more held for work in progress); Grace, without limits, has spent 77."""
    await ledger.grant("acme", 1000 * CREDIT, reason="the team's budget")
    await put_member(
        ledger,
        "acme",
        "ada",
        "Ada",
        [LimitSpec(100 * CREDIT, "day"), LimitSpec(300 * CREDIT, "month")],
    )
    await put_member(ledger, "acme", "grace", None, None)
    await ledger.charge("acme", 40 * CREDIT, member="ada", description="ada's chat")
    await ledger.open_hold("acme", 15 * CREDIT, member="ada")
    await ledger.charge("acme", 77 * CREDIT, member="grace", description="grace's render")


@pytest.fixture
async def app_key(ledger: Ledger) -> str:
    return await create_key(ledger, "app", "web")


@pytest.fixture
async def api(ledger: Ledger, app_key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(ledger, app_key) as client:
        yield client


async def link_for(api: httpx.AsyncClient, member: str | None, account: str = "acme") -> str:
    """A portal link made through the API, for the wallet's member (None: its owner)."""
    asked = {"account_id": account, "return_url": RETURN_URL}
    made = await api.post("/v1/portal-sessions", json={**asked, "member": member})
    assert made.status_code == 201, made.text
    return str(body(made)["url"])


async def test_a_member_reads_their_allowance_and_nothing_of_the_team_s(
    ledger: Ledger, app_key: str, context: BrowserContext, clock: Clock
) -> None:
    await team(ledger)
    tomorrow = day_label(clock.now.date() + timedelta(days=1))
    async with serve_app(ledger) as base, httpx.AsyncClient(base_url=base) as http:
        http.headers["Authorization"] = f"Bearer {app_key}"
        page = await context.new_page()
        await page.goto(await link_for(http, "ada"))
        assert page.url == f"{base}/billing"
        await expect(page.get_by_test_id("member")).to_have_text("ada")
        await expect(page.get_by_test_id("account")).to_have_text("acme")
        day = page.get_by_test_id("allowance-day")
        await expect(day).to_contain_text("Today")
        await expect(day.get_by_test_id("left")).to_have_text("45")
        await expect(day).to_contain_text("45 of 100 credits left")
        await expect(day).to_contain_text("55 used, 15 of it reserved for work in progress")
        await expect(day.get_by_test_id("resets")).to_have_text(f"{tomorrow}, 00:00 UTC")
        month = page.get_by_test_id("allowance-month")
        await expect(month).to_contain_text("245 of 300 credits left")
        said = await page.locator("main").inner_text()
        for theirs in ("1,000", "945", "77", "grace", "budget", "chat"):
            assert theirs not in said, theirs
        await expect(page.get_by_role("link", name="Back to the app")).to_have_attribute(
            "href", RETURN_URL
        )
        await shoot(page, "billing-member")


async def test_a_deployment_may_show_members_the_wallet_s_balance(
    make_ledger: LedgerFactory,
) -> None:
    ledger = await make_ledger(web={"members_see_wallet_balance": True})
    await team(ledger)
    async with client_for(ledger, await create_key(ledger, "app")) as api:
        await api.get(await link_for(api, "grace"))
        page = (await api.get("/billing")).text
    assert 'data-testid="wallet-balance">883 <small>' in page
    assert 'data-testid="no-limits"' in page
    for theirs in ("Ada", ">ada<", "ada&#39;s chat"):  # no other member, nor their spend
        assert theirs not in page, theirs


async def test_resets_read_in_the_wallet_s_time_zone(
    ledger: Ledger, api: httpx.AsyncClient, clock: Clock
) -> None:
    await team(ledger)
    await ledger.database.write(
        lambda conn, _now: conn.execute(
            update(accounts).where(accounts.c.id == "acme").values(time_zone="Asia/Kolkata")
        )
    )
    await api.get(await link_for(api, "ada"))
    page = (await api.get("/billing")).text
    local = clock.now + timedelta(hours=5, minutes=30)
    tomorrow = day_label(local.date() + timedelta(days=1))
    assert f"{tomorrow}, 00:00 (Asia/Kolkata)</time>" in page


async def test_a_link_for_no_member_of_the_wallet_is_refused(
    ledger: Ledger, api: httpx.AsyncClient
) -> None:
    await team(ledger)
    for account, member, code in (
        ("acme", "zed", "member_not_found"),
        ("nobody", "ada", "account_not_found"),
    ):
        asked = {"account_id": account, "return_url": RETURN_URL, "member": member}
        refused = await api.post("/v1/portal-sessions", json=asked)
        assert refused.status_code == 404
        assert body(refused)["error"]["code"] == code
    bad = {"account_id": "acme", "return_url": RETURN_URL, "member": "a b"}
    assert (await api.post("/v1/portal-sessions", json=bad)).status_code == 422


async def test_a_member_s_link_tampered_with_or_expired_is_refused(
    ledger: Ledger, api: httpx.AsyncClient, clock: Clock
) -> None:
    await team(ledger)
    ada, grace = await link_for(api, "ada"), await link_for(api, "grace")
    ada_payload, _, ada_signature = ada.partition("token=")[2].partition(".")
    grace_payload = grace.partition("token=")[2].partition(".")[0]
    start = ada.partition("token=")[0] + "token="
    for token in (f"{grace_payload}.{ada_signature}", f"{ada_payload}.{ada_signature[:-2]}"):
        refused = await api.get(start + token)
        assert refused.status_code == 401 and "is not valid" in refused.text
    clock.advance(301)
    late = await api.get(grace)
    assert late.status_code == 401 and "has expired" in late.text
    assert (await api.get("/billing")).status_code == 401


async def test_a_member_s_page_buys_nothing_and_ends_with_the_membership(
    ledger: Ledger, api: httpx.AsyncClient
) -> None:
    await team(ledger)
    await api.get(await link_for(api, "ada"))
    for refused in (
        await api.post("/billing/top-up", data={"pack": "1k", "csrf": "x"}),
        await api.get("/billing/success", params={"session_id": "cs_test_1"}),
        await api.get("/billing/cancel"),
    ):
        assert refused.status_code == 403
        assert "the wallet&#39;s owner tops it up" in refused.text
    await ledger.database.write(
        lambda conn, now: members.remove_member(
            conn, "acme", "ada", ledger.policy, now, actor="test"
        )
    )
    gone = await api.get("/billing")
    assert gone.status_code == 404 and "has no member" in gone.text


async def test_the_owner_s_page_and_a_member_s_ask_before_switching(
    ledger: Ledger, api: httpx.AsyncClient
) -> None:
    await team(ledger)
    await api.get(await link_for(api, None))
    assert 'data-testid="balance">883 <small>' in (await api.get("/billing")).text
    opened = await api.get(await link_for(api, "ada"))
    assert (opened.status_code, opened.headers["location"]) == (303, "/billing/switch")
    asked = (await api.get("/billing/switch")).text
    for said in (
        "billing page of account <strong>acme</strong> open",
        "is for member <strong>ada</strong> of account <strong>acme</strong>",
        "Switch to ada of acme",
    ):
        assert said in asked, said
    csrf = re.search(r'name="csrf" value="([^"]+)"', asked)
    assert csrf is not None
    await api.post("/billing/switch", data={"choice": "switch", "csrf": csrf[1]})
    page = (await api.get("/billing")).text
    assert 'data-testid="member">ada<' in page and "883" not in page
    again = await api.get(await link_for(api, "ada"))  # the same page: opens at once
    assert (again.status_code, again.headers["location"]) == (303, "/billing")
