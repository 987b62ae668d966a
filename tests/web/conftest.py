"""A browser for the pages: Playwright driving Debian's Chromium against a live server.

Browsers are not downloaded: Playwright launches ``/usr/bin/chromium`` (``scripts/test``
installs Debian's package). Without it the browser tests are skipped, and fail under CI.
Screenshots go to ``tests/web/output/`` at desktop and phone widths, where no page may
scroll sideways.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.conftest import unavailable

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = Path(__file__).parent / "output"
WIDTHS = {"desktop": {"width": 1280, "height": 860}, "phone": {"width": 390, "height": 844}}


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, or the test is skipped (failed under CI)."""
    if not CHROMIUM.exists():
        unavailable("Debian's Chromium is not installed (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    """Headless Chromium, one for the whole run."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=["--no-sandbox"]
        )
        yield launched
        await launched.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (no cookies) at desktop width."""
    made = await browser.new_context(viewport=WIDTHS["desktop"])  # type: ignore[arg-type]
    made.set_default_timeout(10_000)
    yield made
    await made.close()


async def shoot(page: Page, name: str) -> list[Path]:
    """Screenshots of the page as it is, at desktop and phone widths (full length); at
    either width the page must not scroll sideways (a wide table scrolls in its card)."""
    OUTPUT.mkdir(exist_ok=True)
    written = []
    for label, size in WIDTHS.items():
        await page.set_viewport_size(size)  # type: ignore[arg-type]
        wide = await page.evaluate("document.documentElement.scrollWidth")
        assert wide <= size["width"], f"{name} is {wide} px wide at {size['width']} px"
        path = OUTPUT / f"{name}-{label}.png"
        await page.screenshot(path=str(path), full_page=True)
        written.append(path)
    await page.set_viewport_size(WIDTHS["desktop"])  # type: ignore[arg-type]
    return written
