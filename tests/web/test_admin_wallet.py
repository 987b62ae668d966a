"""The console's view of a team wallet: its members with their limits as each current
window stands, the other limits on it, and what each member spent in the last 30 days."""

from __future__ import annotations

import re
from datetime import timedelta

from playwright.async_api import BrowserContext, expect

from creditsd.inprocess import Ledger
from creditsd.members import service as members
from creditsd.members.service import LimitSpec
from creditsd.web.pages import day_label
from tests.conftest import Clock, create_key, put_member, serve_app
from tests.web.conftest import shoot
from tests.web.test_admin import sign_in

CREDIT = 10_000


async def test_an_operator_reads_a_wallet_s_members_limits_and_spend(
    ledger: Ledger, context: BrowserContext, clock: Clock
) -> None:
    secret = await create_key(ledger, "admin", "ops")
    await ledger.grant("acme", 1000 * CREDIT)
    await put_member(ledger, "acme", "ada", 'Ada "<b>" Lovelace', [LimitSpec(100 * CREDIT, "day")])
    await put_member(ledger, "acme", "old", None, None)
    await ledger.charge("acme", 7 * CREDIT, member="ada")  # 31 days ago: not counted
    clock.advance(31 * 86_400)
    await ledger.charge("acme", 3 * CREDIT, member="old")  # its spend stays its own
    await ledger.database.write(
        lambda conn, now: members.remove_member(
            conn, "acme", "old", ledger.policy, now, actor="test"
        )
    )
    await put_member(
        ledger,
        "acme",
        "grace",
        None,
        [LimitSpec(50 * CREDIT, "week", "soft"), LimitSpec(60 * CREDIT, "lifetime")],
    )
    await put_member(ledger, "acme", "alan", "Alan", None)
    await ledger.database.write(
        lambda conn, now: members.put_limits(
            conn,
            "acme",
            "wallet",
            "",
            [LimitSpec(500 * CREDIT, "month")],
            ledger.policy,
            now,
            actor="test",
        )
    )
    await ledger.charge("acme", 40 * CREDIT, member="ada")
    await ledger.charge("acme", 10 * CREDIT, member="grace")
    await ledger.charge("acme", 5 * CREDIT)
    await ledger.open_hold("acme", 20 * CREDIT, member="ada")
    await ledger.open_account("solo", initial_grant=CREDIT)
    midnight = day_label(clock.now.date() + timedelta(days=1))

    async with serve_app(ledger) as base:
        page = await context.new_page()
        await sign_in(page, base, secret)
        await page.goto(f"{base}/admin/accounts/acme")
        table = page.get_by_test_id("members")
        rows = table.locator("tbody tr")
        await expect(rows).to_have_count(4)  # ada 1, alan 1, grace 2
        await expect(rows.nth(0)).to_contain_text('Ada "<b>" Lovelace')  # as text, escaped
        await expect(rows.nth(0)).to_contain_text("100 a day")
        ada = [await cell.inner_text() for cell in await rows.nth(0).locator("td").all()]
        assert ada == ["100 a day", "40", "20", "40", f"{midnight}, 00:00 UTC"]
        await expect(rows.nth(1)).to_contain_text("Alan")
        await expect(rows.nth(1)).to_contain_text("No limit")
        await expect(rows.nth(2)).to_contain_text("grace")
        await expect(rows.nth(2)).to_contain_text("50 a week soft")
        await expect(rows.nth(3)).to_contain_text("60 in all")
        await expect(rows.nth(3)).to_contain_text("Never")
        wallet = page.get_by_test_id("wallet-limits")
        await expect(wallet.locator("tbody tr")).to_have_text(
            [re.compile(r"The wallet: all its spend\s+500 a month\s+55\s+20\s+425")]
        )
        spend = page.get_by_test_id("member-spend").locator("tbody tr")
        await expect(spend).to_have_text(
            [
                re.compile(r'Ada "<b>" Lovelace\s+40'),
                re.compile(r"grace\s+10"),
                re.compile(r"old removed\s+3"),
                re.compile(r"Alan\s+0"),
                re.compile(r"For no member\s+5"),
            ]
        )
        await shoot(page, "admin-wallet")

        await page.goto(f"{base}/admin/accounts/solo")
        await expect(page.get_by_role("heading", name="Ledger")).to_be_visible()
        await expect(page.get_by_role("heading", name="Members and spend limits")).to_have_count(0)
