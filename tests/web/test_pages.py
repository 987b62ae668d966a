"""What every page shares: error pages, headers, the stylesheet."""

from __future__ import annotations

import httpx
from playwright.async_api import BrowserContext

from creditsd.inprocess import Ledger
from tests.conftest import LedgerFactory, client_for, create_key, serve_app
from tests.web.test_admin import console
from tests.web.test_portal import portal_url


async def test_an_unknown_page_is_a_page_not_json(ledger: Ledger, context: BrowserContext) -> None:
    async with serve_app(ledger) as base:
        page = await context.new_page()
        answer = await page.goto(f"{base}/billing/nowhere")
        assert answer is not None and answer.status == 404
        assert await page.locator("h1").inner_text() == "Not found"
        assert "Traceback" not in await page.content()
        assert answer.headers["x-frame-options"] == "DENY"
        async with httpx.AsyncClient() as http:
            sheet = await http.get(f"{base}/static/web/creditsd.css")
        assert sheet.status_code == 200 and "--accent" in sheet.text


async def test_a_busy_database_is_a_page_a_person_understands(make_ledger: LedgerFactory) -> None:
    ledger = await make_ledger(database={"pool_size": 1, "pool_timeout": 0.5})
    secret = await create_key(ledger, "admin", "ops")
    async with client_for(ledger, await create_key(ledger, "app")) as client:
        await client.get(await portal_url(client))
        async with serve_app(ledger) as base, console(base, secret) as http:
            async with ledger.engine.connect():  # the only connection, taken
                answers = [await client.get("/billing"), await http.get("/admin/accounts")]
            assert (await client.get("/billing")).status_code == 200  # and back once it is free
    for answer in answers:
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
        assert "text/html" in answer.headers["content-type"]
        assert "The service is busy or restarting; try again in a moment." in answer.text
        assert "idempotency" not in answer.text
