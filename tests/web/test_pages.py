"""What every page shares: error pages, headers, the stylesheet."""

from __future__ import annotations

import httpx
from playwright.async_api import BrowserContext

from creditsd.inprocess import Ledger
from tests.conftest import serve_app


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
