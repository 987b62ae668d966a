"""The admin console: an operator signs in with an admin key and runs the ledger.

Browser tests drive what an operator does (and take the screenshots, named ``admin-*``);
plain HTTP tests check what a browser cannot show: refused forms, cookies, redirects.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd import inbox
from creditsd.inprocess import Ledger
from creditsd.keys import service as keys
from creditsd.kit import db
from creditsd.price_settings import PricingSettings
from creditsd.pricing.catalog import FeatureUse, TokenUse
from creditsd.tables import accounts, audit_log, ledger_meta, web_tokens
from creditsd.web.signing import Signer
from creditsd.worker import Deliverer
from tests.conftest import Clock, LedgerFactory, audit_trail, client_for, create_key, serve_app
from tests.web.conftest import WIDTHS, shoot
from tests.webhooks.conftest import WEBHOOKS, register
from tests.webhooks.receiver import Receiver

CREDIT = 10_000
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def sign_in(page: Page, base: str, secret: str) -> None:
    """Sign in through the form, as an operator does."""
    await page.goto(f"{base}/admin/login")
    await page.get_by_label("Admin API key").fill(secret)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Accounts", exact=True)).to_be_visible()


async def key_id(ledger: Ledger, name: str) -> str:
    """The id of the key named ``name``."""
    found = await db.run(ledger.engine, keys.list_keys, readonly=True)
    return next(key.id for key in found if key.name == name)


@asynccontextmanager
async def console(base: str, secret: str | None) -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client, signed in with ``secret`` unless it is None; patient, as pages
    on a loaded machine may take seconds."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        if secret is not None:
            signed = await http.post(
                "/admin/login", data={"key": secret, "csrf": await login_token(http)}
            )
            assert signed.status_code == 303, signed.text
        yield http


async def login_token(http: httpx.AsyncClient) -> str:
    """The sign-in form's CSRF token (its cookie is kept by the client)."""
    return token_in((await http.get("/admin/login")).text)


def token_in(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = CSRF.search(html)
    assert found is not None
    return found[1]


async def test_an_operator_grants_with_a_reason_and_finds_it_in_the_audit_log(
    ledger: Ledger, context: BrowserContext
) -> None:
    secret = await create_key(ledger, "admin", "ops")
    await ledger.open_account("ada_lovelace", initial_grant=5 * CREDIT)
    await ledger.open_account("grace")
    await ledger.charge("ada_lovelace", 2 * CREDIT, description="chat")
    seen_urls: list[str] = []
    async with serve_app(ledger) as base:
        page = await context.new_page()
        page.on("request", lambda request: seen_urls.append(request.url))
        await page.goto(f"{base}/admin/login")
        await shoot(page, "admin-login")
        await sign_in(page, base, secret)
        await expect(page.get_by_role("status")).to_contain_text("Signed in with the key ops")
        await shoot(page, "admin-accounts")

        await page.get_by_label("Find an account by id or alias").fill("ada")
        await page.get_by_role("button", name="Search").click()
        await expect(page.get_by_role("link", name="grace")).to_have_count(0)
        await page.get_by_role("link", name="ada_lovelace").click()
        await expect(page.locator(".balance")).to_contain_text("3")

        grant = page.locator("section", has=page.get_by_role("heading", name="Grant credits"))
        await grant.get_by_label("Credits").fill("100")
        await grant.get_by_label("Reason").fill("Sorry about the outage")
        await grant.get_by_role("button", name="Grant").click()
        await expect(page.get_by_role("status")).to_contain_text(
            "Granted 100 credits; the balance is now 103"
        )
        await expect(page.locator(".balance")).to_contain_text("103")
        ledger_rows = page.locator("section", has=page.get_by_role("heading", name="Ledger"))
        await expect(ledger_rows.locator("tbody tr").first).to_contain_text(
            "Grant · Sorry about the outage"
        )
        await shoot(page, "admin-account")

        await page.reload()  # the notice is shown once
        await expect(page.get_by_role("status")).to_have_count(0)

        await page.get_by_role("link", name="Audit log").click()
        await page.get_by_label("Target").fill("ada_lovelace")
        await page.get_by_role("button", name="Filter").click()
        first = page.locator("tbody tr").first
        await expect(first).to_contain_text("grant")
        await expect(first).to_contain_text(f"key:{await key_id(ledger, 'ops')}:ops")
        await shoot(page, "admin-audit")
        pages_seen = await page.content()
    async with ledger.engine.connect() as conn:
        (record,) = [r for r in await audit_trail(conn, "ada_lovelace") if r.action == "grant"][1:]
    assert record.actor == f"key:{await key_id(ledger, 'ops')}:ops"
    assert record.after["balance"] == 103 * CREDIT
    assert all(secret not in url for url in seen_urls)
    assert secret not in pages_seen


async def test_adjustments_go_both_ways_and_never_overdraw(ledger: Ledger) -> None:
    secret = await create_key(ledger, "admin", "ops")
    await ledger.open_account("bo", initial_grant=10 * CREDIT)
    async with serve_app(ledger) as base, console(base, secret) as http:
        csrf = token_in((await http.get("/admin/accounts/bo")).text)
        form = {"csrf": csrf, "direction": "debit", "amount": "4", "reason": "double charge"}
        taken = await http.post("/admin/accounts/bo/adjust", data=form, follow_redirects=True)
        assert "Took away 4 credits; the balance is now 6" in taken.text
        too_much = await http.post(
            "/admin/accounts/bo/adjust", data={**form, "amount": "7", "reason": "again"}
        )
        assert too_much.status_code == 402
        assert "The account has 6 credits it can spend; this needs 7." in too_much.text
        added = await http.post(
            "/admin/accounts/bo/adjust",
            data={**form, "direction": "credit", "amount": "0.5"},
            follow_redirects=True,
        )
        assert "Added 0.5 credits; the balance is now 6.5" in added.text
    assert (await ledger.get_account("bo")).balance == 65_000
    async with ledger.engine.connect() as conn:
        trail = [r for r in await audit_trail(conn, "bo") if r.action == "adjustment"]
    assert [r.after["reason"] for r in trail] == ["double charge", "double charge"]


async def test_a_balance_of_one_credit_is_one_credit(ledger: Ledger) -> None:
    secret = await create_key(ledger, "admin", "ops")
    await ledger.open_account("one", initial_grant=CREDIT)
    await ledger.open_account("half", initial_grant=CREDIT // 2)
    async with serve_app(ledger) as base, console(base, secret) as http:
        one = (await http.get("/admin/accounts/one")).text
        half = (await http.get("/admin/accounts/half")).text
    assert '<p class="balance">1 <small>credit</small></p>' in one
    assert '<p class="balance">0.5 <small>credits</small></p>' in half


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"amount": "10", "reason": "  "}, "Say why: the reason is kept"),
        ({"amount": "ten", "reason": "promo"}, "Enter the amount as a number of credits"),
        ({"amount": "0", "reason": "promo"}, "Enter an amount greater than zero"),
        ({"amount": "0.00001", "reason": "promo"}, "at most 4 decimal places"),
        ({"amount": "2,5", "reason": "promo"}, "like 100 or 2.5"),  # never read as 25
    ],
)
async def test_a_grant_needs_a_reason_and_a_real_amount(
    ledger: Ledger, fields: dict[str, str], message: str
) -> None:
    secret = await create_key(ledger, "admin", "ops")
    await ledger.open_account("cy")
    async with serve_app(ledger) as base, console(base, secret) as http:
        csrf = token_in((await http.get("/admin/accounts/cy")).text)
        refused = await http.post("/admin/accounts/cy/grant", data={"csrf": csrf, **fields})
    assert refused.status_code == 422
    assert message in refused.text
    assert (await ledger.get_account("cy")).balance == 0


async def test_the_same_grant_form_sent_twice_grants_once(ledger: Ledger) -> None:
    secret = await create_key(ledger, "admin", "ops")
    await ledger.open_account("di")
    async with serve_app(ledger) as base, console(base, secret) as http:
        html = (await http.get("/admin/accounts/di")).text
        request_key = re.search(r'name="request_key" value="([^"]+)"', html)
        assert request_key is not None
        form = {
            "csrf": token_in(html),
            "amount": "5",
            "reason": "promo",
            "request_key": request_key[1],
        }
        await http.post("/admin/accounts/di/grant", data=form)
        again = await http.post("/admin/accounts/di/grant", data=form, follow_redirects=True)
    assert "This form was already sent: nothing more was done" in again.text
    assert (await ledger.get_account("di")).balance == 5 * CREDIT


async def test_an_operator_freezes_closes_and_reactivates_an_account(
    ledger: Ledger, context: BrowserContext
) -> None:
    secret = await create_key(ledger, "admin", "ops")
    await ledger.open_account("ed", initial_grant=CREDIT)
    async with serve_app(ledger) as base:
        page = await context.new_page()
        await sign_in(page, base, secret)
        await page.goto(f"{base}/admin/accounts/ed")
        await page.get_by_label("Reason (optional)").fill("chargeback opened")
        await page.get_by_role("button", name="Freeze").click()
        await expect(page.get_by_role("status")).to_have_text("The account is frozen.")
        await expect(page.locator(".summary .tag")).to_have_text("Frozen")
        await page.get_by_role("button", name="Close").click()
        await expect(page.get_by_role("status")).to_have_text("The account is closed.")
        await page.get_by_role("button", name="Reactivate").click()
        await expect(page.get_by_role("status")).to_have_text("The account is reactivated.")
        await expect(page.locator(".summary .tag")).to_have_text("Active")
    async with ledger.engine.connect() as conn:
        trail = [
            (r.action, r.after["reason"])
            for r in await audit_trail(conn, "ed")
            if r.action.startswith("account.")
        ]
    assert trail == [
        ("account.frozen", "chargeback opened"),
        ("account.closed", None),
        ("account.active", None),
    ]


async def test_a_form_without_its_csrf_token_is_refused(ledger: Ledger) -> None:
    secret = await create_key(ledger, "admin", "ops")
    await ledger.open_account("fa")
    async with serve_app(ledger) as base, console(base, secret) as http:
        grant = {"amount": "5", "reason": "promo"}
        missing = await http.post("/admin/accounts/fa/grant", data=grant)
        wrong = await http.post("/admin/accounts/fa/grant", data={**grant, "csrf": "forged"})
        logout = await http.post("/admin/logout")
        still_in = await http.get("/admin/accounts")
    for refused in (missing, wrong, logout):
        assert refused.status_code == 403
        assert "Not allowed" in refused.text
        assert "did not come from this page" in refused.text
    assert still_in.status_code == 200
    assert (await ledger.get_account("fa")).balance == 0


async def test_signing_in_needs_the_forms_own_token(ledger: Ledger) -> None:
    secret = await create_key(ledger, "admin", "ops")
    async with serve_app(ledger) as base, httpx.AsyncClient(base_url=base) as http:
        no_form = await http.post("/admin/login", data={"key": secret})
        other = await http.post("/admin/login", data={"key": secret, "csrf": "made-up"})
        await http.get("/admin/login")  # the cookie, but a token from elsewhere
        forged = await http.post("/admin/login", data={"key": secret, "csrf": "made-up"})
    for refused in (no_form, other, forged):
        assert refused.status_code == 403
        assert "creditsd_admin" not in refused.headers.get("set-cookie", "")


@pytest.mark.parametrize("scope", ["app", "read"])
async def test_a_key_without_the_admin_scope_is_refused(ledger: Ledger, scope: str) -> None:
    secret = await create_key(ledger, scope, "shop")
    async with serve_app(ledger) as base, console(base, None) as http:
        refused = await http.post(
            "/admin/login", data={"key": secret, "csrf": await login_token(http)}
        )
        after = await http.get("/admin/accounts")
    assert refused.status_code == 403
    assert f"This key's scope is {scope!r}. The admin console needs a key with scope 'admin'." in (
        refused.text.replace("&#39;", "'")
    )
    assert secret not in refused.text
    assert "creditsd_admin=" not in refused.headers.get("set-cookie", "")
    assert (after.status_code, after.headers["location"]) == (303, "/admin/login")


async def test_an_unknown_or_revoked_key_cannot_sign_in(ledger: Ledger) -> None:
    secret = await create_key(ledger, "admin", "ops")
    revoked = await key_id(ledger, "ops")
    await db.run(
        ledger.engine, lambda conn: keys.revoke_key(conn, revoked, ledger.now(), actor="test")
    )
    async with serve_app(ledger) as base, console(base, None) as http:
        tries = [
            await http.post("/admin/login", data={"key": key, "csrf": await login_token(http)})
            for key in ("cdk_nothing", "", secret)
        ]
    for refused in tries:
        assert refused.status_code == 401
        assert "That key is not valid, or it has been revoked." in refused.text
        assert secret not in refused.text


async def test_a_revoked_keys_session_stops_working(ledger: Ledger) -> None:
    secret = await create_key(ledger, "admin", "ops")
    async with serve_app(ledger) as base, console(base, secret) as http:
        assert (await http.get("/admin/accounts")).status_code == 200
        revoked = await key_id(ledger, "ops")
        await db.run(
            ledger.engine, lambda conn: keys.revoke_key(conn, revoked, ledger.now(), actor="test")
        )
        after = await http.get("/admin/accounts")
        posted = await http.post("/admin/logout", data={"csrf": "whatever"})
    assert (after.status_code, after.headers["location"]) == (303, "/admin/login")
    assert 'creditsd_admin=""' in after.headers["set-cookie"]  # the session is cleared
    assert (posted.status_code, posted.headers["location"]) == (303, "/admin/login")


async def test_an_expired_keys_session_stops_working(ledger: Ledger, clock: Clock) -> None:
    _key, secret = await db.run(
        ledger.engine,
        lambda conn: keys.create_key(
            conn, "temp", "admin", ledger.now(), actor="test", expires_in=timedelta(hours=1)
        ),
    )
    async with serve_app(ledger) as base, console(base, secret) as http:
        assert (await http.get("/admin/audit")).status_code == 200
        clock.advance(3601)
        after = await http.get("/admin/audit")
    assert (after.status_code, after.headers["location"]) == (303, "/admin/login")


@pytest.mark.parametrize(
    "path",
    [
        "/admin",
        "/admin/accounts",
        "/admin/accounts/ada",
        "/admin/reconcile",
        "/admin/audit",
        "/admin/inbox",
        "/admin/deliveries",
        "/admin/pricing",
        "/admin/pricing/1",
        "/admin/export",
        "/admin/export/transactions.csv?start=2026-01-01&end=2026-01-02",
    ],
)
async def test_a_signed_out_browser_is_sent_to_sign_in(ledger: Ledger, path: str) -> None:
    async with client_for(ledger, "") as http:
        answer = await http.get(path, headers={"Authorization": ""})
        tampered = await http.get(
            path, headers={"Authorization": "", "Cookie": "creditsd_admin=e30.forged"}
        )
    expected = "/admin/accounts" if path == "/admin" else "/admin/login"
    for response in (answer, tampered):
        assert (response.status_code, response.headers["location"]) == (303, expected)


async def test_signing_out_ends_the_session(ledger: Ledger, context: BrowserContext) -> None:
    secret = await create_key(ledger, "admin", "ops")
    async with serve_app(ledger) as base:
        page = await context.new_page()
        await sign_in(page, base, secret)
        await page.goto(f"{base}/admin/login")  # a signed-in browser goes straight in
        await expect(page).to_have_url(f"{base}/admin/accounts")
        await page.get_by_role("button", name="Sign out").click()
        await expect(page.get_by_role("status")).to_have_text("You are signed out.")
        await page.goto(f"{base}/admin/accounts")
        await expect(
            page.get_by_role("heading", name="Sign in to the admin console")
        ).to_be_visible()


async def test_a_copied_session_cookie_dies_when_its_session_signs_out(ledger: Ledger) -> None:
    secret = await create_key(ledger, "admin", "ops")
    async with serve_app(ledger) as base, console(base, secret) as http:
        copied = http.cookies["creditsd_admin"]
        page = await http.get("/admin/accounts")
        signed_out = await http.post("/admin/logout", data={"csrf": token_in(page.text)})
        assert signed_out.status_code == 303
        async with httpx.AsyncClient(base_url=base) as thief:
            after = await thief.get(
                "/admin/accounts", headers={"Cookie": f"creditsd_admin={copied}"}
            )
    assert (after.status_code, after.headers["location"]) == (303, "/admin/login")
    actions = [row.action for row in await audit_trail_of(ledger, await key_id(ledger, "ops"))]
    assert actions[-2:] == ["admin.sign_in", "admin.sign_out"]


async def test_reading_the_database_signs_no_one_in(ledger: Ledger) -> None:
    secret = await create_key(ledger, "admin", "ops")
    ops = await key_id(ledger, "ops")
    async with serve_app(ledger) as base, console(base, secret) as http:
        token = http.cookies["creditsd_admin"]

        async def everything(conn: AsyncConnection) -> tuple[str, list[str]]:
            stored = select(ledger_meta.c.value).where(ledger_meta.c.key == "pages_secret")
            rows = await conn.execute(select(web_tokens))
            return (await conn.execute(stored)).scalar_one(), [str(row) for row in rows]

        page_secret, kept = await db.run(ledger.engine, everything, readonly=True)
        assert kept and not [row for row in kept if token in row]
        # What a database reader could sign: a session naming the key, under the page secret.
        forged = Signer(page_secret).sign(
            "admin", {"sid": "x", "sub": ops}, ledger.now() + timedelta(hours=1)
        )
        async with httpx.AsyncClient(base_url=base) as reader:
            for cookie in (forged, ops, kept[0]):
                sent = {"Cookie": f"creditsd_admin={cookie}"}
                answer = await reader.get("/admin/accounts", headers=sent)
                assert (answer.status_code, answer.headers["location"]) == (303, "/admin/login")


async def audit_trail_of(ledger: Ledger, key: str) -> list[Any]:
    """The audit records about an admin key, oldest first."""
    return await db.run(ledger.engine, lambda conn: audit_trail(conn, key), readonly=True)


async def test_accounts_and_their_ledger_come_a_page_at_a_time(ledger: Ledger) -> None:
    secret = await create_key(ledger, "admin", "ops")
    for number in range(30):
        await ledger.open_account(f"user_{number:02}")
    for _ in range(30):
        await ledger.grant("user_00", CREDIT, reason="drip")
    async with serve_app(ledger) as base, console(base, secret) as http:
        first = (await http.get("/admin/accounts")).text
        older = re.search(r'href="\?cursor=([^"]+)"', first)
        assert older is not None
        second = (await http.get(f"/admin/accounts?cursor={older[1]}")).text
        ledger_page = (await http.get("/admin/accounts/user_00")).text
        searched = (await http.get("/admin/accounts?q=user_1")).text
        bad_cursor = await http.get("/admin/accounts?cursor=nonsense!")
    assert "user_24" in first and "user_25" not in first
    assert "user_25" in second and "user_29" in second and "user_24" not in second
    assert ledger_page.count("drip") == 25 and "Older" in ledger_page
    assert "user_10" in searched and "user_19" in searched and "user_20" not in searched
    assert bad_cursor.status_code == 422 and "Traceback" not in bad_cursor.text


async def test_an_unknown_account_is_a_page_that_says_so(ledger: Ledger) -> None:
    secret = await create_key(ledger, "admin", "ops")
    async with serve_app(ledger) as base, console(base, secret) as http:
        missing = await http.get("/admin/accounts/nobody")
        csrf = token_in((await http.get("/admin/accounts")).text)
        forms = {
            "grant": {"amount": "5", "reason": "promo"},
            "adjust": {"direction": "credit", "amount": "5", "reason": "fix"},
            "status": {"status": "frozen"},
        }
        written = [
            await http.post(f"/admin/accounts/nobody/{action}", data={"csrf": csrf, **form})
            for action, form in forms.items()
        ]
    for answer in (missing, *written):
        assert answer.status_code == 404
        assert "Not found" in answer.text
    assert await ledger.count_accounts() == 0  # a form sent to it opened none


async def test_the_csv_export_downloads_a_periods_transfers(
    ledger: Ledger, context: BrowserContext, clock: Clock
) -> None:
    secret = await create_key(ledger, "admin", "ops")
    await ledger.grant("early", 1 * CREDIT, reason="before the period")
    clock.advance(2 * 86_400)
    start = ledger.now().date()
    await ledger.grant("ann", 7 * CREDIT, reason='welcome, "friend"')
    await ledger.charge("ann", 2 * CREDIT, description="chat")
    async with serve_app(ledger) as base:
        page = await context.new_page()
        await sign_in(page, base, secret)
        await page.get_by_role("link", name="Export").click()
        await page.get_by_label("From").fill(start.isoformat())
        await page.get_by_label("To").fill(start.isoformat())
        await shoot(page, "admin-export")
        async with page.expect_download() as download_info:
            await page.get_by_role("button", name="Download CSV").click()
        download = await download_info.value
        path = await download.path()
        assert download.suggested_filename == f"transactions-{start}-to-{start}.csv"
        async with console(base, secret) as http:
            backwards = await http.get(
                "/admin/export/transactions.csv",
                params={"start": start.isoformat(), "end": "2000-01-01"},
            )
            no_dates = await http.get("/admin/export/transactions.csv")
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert [(row["kind"], row["amount"], row["description"], row["member"]) for row in rows] == [
        ("grant", "7", 'welcome, "friend"', ""),
        ("charge", "2", "chat", ""),
    ]
    assert backwards.status_code == 422 and "must end on or after" in backwards.text
    assert no_dates.status_code == 422 and "Choose both days" in no_dates.text
    exports = [
        row.after
        for row in await audit_trail_of(ledger, await key_id(ledger, "ops"))
        if row.action == "export.transactions"
    ]
    assert exports == [{"start": start.isoformat(), "end": start.isoformat()}]


async def test_a_dead_webhook_is_sent_again(
    make_ledger: LedgerFactory, context: BrowserContext, clock: Clock
) -> None:
    hooked = await make_ledger(webhooks=WEBHOOKS)
    secret = await create_key(hooked, "admin", "ops")
    deliverer = Deliverer(hooked)
    try:
        with Receiver() as receiver:
            async with client_for(hooked, secret) as api:
                _endpoint, signing_secret = await register(api, receiver.url, ["charge.succeeded"])
            await hooked.grant("hal", 10 * CREDIT)
            await hooked.charge("hal", CREDIT)
            receiver.failures_left = 10**6
            await deliverer.deliver_due()
            clock.advance(WEBHOOKS["max_age_seconds"] + 1)
            await deliverer.deliver_due()
            async with serve_app(hooked) as base:
                page = await context.new_page()
                await sign_in(page, base, secret)
                await page.get_by_role("link", name="Outbox").click()
                await page.get_by_role("link", name="Failed").click()
                row = page.locator("tbody tr", has_text="charge.succeeded")
                await expect(row).to_contain_text("HTTP 503")
                assert signing_secret not in await page.content()
                await shoot(page, "admin-outbox")
                await row.get_by_role("button", name=re.compile("Send again")).click()
                await expect(page.get_by_role("status")).to_contain_text(
                    "(charge.succeeded) is queued to be sent again"
                )
                receiver.failures_left = 0
                assert await deliverer.deliver_due() == 1
                await page.goto(f"{base}/admin/accounts/hal")
                webhooks = page.locator(
                    "section", has=page.get_by_role("heading", name="Webhooks about this account")
                )
                await expect(webhooks.locator("tbody tr").first).to_contain_text("Delivered")
    finally:
        await deliverer.close()
    async with hooked.engine.connect() as conn:
        actions = [
            (row.action, row.actor)
            for row in await conn.execute(
                select(audit_log).where(audit_log.c.action == "webhook_delivery.retry")
            )
        ]
    assert actions == [("webhook_delivery.retry", f"key:{await key_id(hooked, 'ops')}:ops")]


async def test_reconciliation_lists_a_drifted_account_and_repairs_it(
    ledger: Ledger, context: BrowserContext
) -> None:
    secret = await create_key(ledger, "admin", "ops")
    await ledger.grant("ivy", 10 * CREDIT, reason="promo")
    await ledger.grant("jon", 10 * CREDIT, reason="promo")
    async with ledger.engine.begin() as conn:
        await conn.execute(update(accounts).where(accounts.c.id == "ivy").values(balance=1))
    async with serve_app(ledger) as base:
        page = await context.new_page()
        await sign_in(page, base, secret)
        await page.get_by_role("link", name="Reconcile").click()
        await expect(page.locator(".big")).to_have_text("1 of 2 accounts drifted")
        await shoot(page, "admin-reconcile")
        await page.get_by_role("button", name="Repair ivy").click()
        await expect(page.get_by_role("status")).to_have_text(
            "Rebuilt ivy from its transfers: its balance was 0.0001, it is 10."
        )
        await expect(page.locator(".big")).to_have_text("All 2 accounts match their transfers")
    assert (await ledger.verify_account("ivy")).valid
    async with ledger.engine.connect() as conn:
        (rebuilt,) = [r for r in await audit_trail(conn, "ivy") if r.action == "account.rebuild"]
    assert rebuilt.actor == f"key:{await key_id(ledger, 'ops')}:ops"


async def test_the_inbox_shows_what_stripe_and_clerk_sent(
    ledger: Ledger, context: BrowserContext
) -> None:
    secret = await create_key(ledger, "admin", "ops")

    async def received(conn: AsyncConnection) -> None:
        now = ledger.now()
        await inbox.store(conn, "stripe", "evt_paid", "checkout.session.completed", {}, now)
        detail = {"transfers": ["tr_1"]}
        await inbox.mark_handled(conn, "stripe", "evt_paid", "credited", detail, now)
        await inbox.store(conn, "clerk", "msg_user", "user.created", {}, now)

    await db.run(ledger.engine, received)
    async with serve_app(ledger) as base:
        page = await context.new_page()
        await sign_in(page, base, secret)
        await page.get_by_role("link", name="Inbox").click()
        paid = page.locator("tbody tr")
        await expect(paid).to_have_count(1)
        await expect(paid).to_contain_text("evt_paid")
        await expect(paid).to_contain_text("credited")
        await expect(paid).to_contain_text("tr_1")
        await shoot(page, "admin-inbox")
        await page.get_by_role("link", name="Clerk").click()
        await expect(page.locator("tbody tr")).to_have_count(1)
        await expect(page.locator("tbody tr")).to_contain_text("msg_user")
        await expect(page.locator("tbody tr")).to_contain_text("Not handled yet")


async def test_price_catalog_versions_and_what_changed(
    ledger: Ledger, context: BrowserContext
) -> None:
    secret = await create_key(ledger, "admin", "ops")
    chat = {"features": {"chat_message": {"price": 10}}}
    await ledger.publish_pricing(PricingSettings.model_validate(chat), actor="cli:ops")
    dearer = {"features": {"chat_message": {"price": 12}, "canvas": {"price": 40}}}
    await ledger.publish_pricing(PricingSettings.model_validate(dearer), actor="cli:ops")
    async with serve_app(ledger) as base:
        page = await context.new_page()
        await sign_in(page, base, secret)
        await page.get_by_role("link", name="Pricing").click()
        await expect(page.locator("tbody tr").first).to_contain_text("Version 2")
        await expect(page.locator("tbody tr").first).to_contain_text("Current")
        await shoot(page, "admin-pricing")
        await page.get_by_role("link", name="What changed from 1").click()
        changes = page.locator("ul.diff")
        await expect(changes).to_contain_text("features.chat_message.price: 10 → 12")
        await expect(changes).to_contain_text("features.canvas.price: added 40")
        await shoot(page, "admin-pricing-version")
        await page.get_by_label("Compare with version").fill("2")
        await page.get_by_role("button", name="Compare").click()
        await expect(page.get_by_text("No differences.")).to_be_visible()
        missing = await page.goto(f"{base}/admin/pricing/9")
        assert missing is not None and missing.status == 404


async def test_odd_input_is_answered_with_a_page_never_a_failure(ledger: Ledger) -> None:
    secret = await create_key(ledger, "admin", "ops")
    await ledger.open_account("nul")
    async with serve_app(ledger) as base, console(base, secret) as http:
        csrf = token_in((await http.get("/admin/accounts/nul")).text)
        answers = {
            "search": await http.get("/admin/accounts", params={"q": "nu\x00l"}),
            "audit": await http.get("/admin/audit", params={"target": "\x00", "actor": "x" * 999}),
            "version": await http.get(f"/admin/pricing/{2**40}"),
            "against": await http.get("/admin/pricing/1", params={"against": "-1"}),
            "inbox": await http.get("/admin/inbox", params={"source": "nowhere"}),
            "outbox": await http.get("/admin/deliveries", params={"status": "lost"}),
            "delivery": await http.post(
                f"/admin/deliveries/{2**70}/redeliver", data={"csrf": csrf}
            ),
            "no delivery": await http.post(
                "/admin/deliveries/12345/redeliver", data={"csrf": csrf}
            ),
            "repair nobody": await http.post("/admin/reconcile/nobody/repair", data={"csrf": csrf}),
            "export to the last day": await http.get(
                "/admin/export/transactions.csv",
                params={"start": "0001-01-01", "end": "9999-12-31"},
            ),
        }
        grant = await http.post(
            "/admin/accounts/nul/grant",
            data={"csrf": csrf, "amount": "1", "reason": "fix\x00ed"},
            follow_redirects=True,
        )
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "search": 200,
        "audit": 200,
        "version": 422,
        "against": 422,
        "inbox": 200,
        "outbox": 200,
        "delivery": 422,
        "no delivery": 404,
        "repair nobody": 404,
        "export to the last day": 200,  # every transfer from the first day on
    }
    assert "nul" in answers["search"].text
    assert all("Traceback" not in answer.text for answer in answers.values())
    assert answers["export to the last day"].text.startswith("id,created_at,kind")
    assert grant.status_code == 200 and "Granted 1 credit;" in grant.text
    assert (await ledger.transactions("nul")).items[0].description == "fixed"


@pytest.mark.parametrize(
    "path", ["/admin/login", "/admin/accounts", "/admin/accounts/ada", "/admin/export"]
)
async def test_console_pages_read_in_order_and_name_every_control(
    ledger: Ledger, context: BrowserContext, path: str
) -> None:
    secret = await create_key(ledger, "admin", "ops")
    await ledger.grant("ada", 5 * CREDIT)
    async with serve_app(ledger) as base:
        page = await context.new_page()
        if path != "/admin/login":
            await sign_in(page, base, secret)
        await page.goto(f"{base}{path}")
        levels = await page.locator("h1, h2, h3").evaluate_all(
            "found => found.map(heading => Number(heading.tagName[1]))"
        )
        assert levels[0] == 1 and levels.count(1) == 1
        assert all(after - before <= 1 for before, after in itertools.pairwise(levels))
        unlabelled = await page.locator("input:not([type=hidden]), select, textarea").evaluate_all(
            """fields => fields.filter(field => !(field.labels && field.labels.length)
                   && !field.getAttribute('aria-label')).map(field => field.name)"""
        )
        assert unlabelled == []
        for role in ("button", "link"):
            names = [
                (await control.get_attribute("aria-label")) or (await control.inner_text())
                for control in await page.get_by_role(role).all()
            ]
            assert names and all(name.strip() for name in names), role
        if path == "/admin/login":  # its one field has the focus, for the key to be pasted
            await expect(page.get_by_label("Admin API key")).to_be_focused()
        else:
            await page.keyboard.press("Tab")
            await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        await page.keyboard.press("Tab")
        outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline == "solid"


async def _try_key(http: httpx.AsyncClient, key: str) -> httpx.Response:
    return await http.post("/admin/login", data={"key": key, "csrf": await login_token(http)})


async def test_failed_sign_ins_back_off_per_client_exponentially_and_a_success_resets(
    ledger: Ledger, clock: Clock
) -> None:
    secret = await create_key(ledger, "admin", "ops")
    async with (
        serve_app(ledger) as base,
        # uvicorn trusts X-Forwarded-For from 127.0.0.1, as from a proxy on the same host.
        httpx.AsyncClient(base_url=base, headers={"X-Forwarded-For": "10.0.0.1"}) as http,
        httpx.AsyncClient(base_url=base, headers={"X-Forwarded-For": "10.0.0.2"}) as other,
    ):
        for _ in range(5):
            assert (await _try_key(http, "cdk_guess")).status_code == 401
        waits = []
        for _ in range(13):
            refused = await _try_key(http, secret)  # the right key is not even looked at
            assert refused.status_code == 429
            assert "Too many failed sign-ins from your address" in refused.text
            assert "creditsd_admin=" not in refused.headers.get("set-cookie", "")
            waits.append(int(refused.headers["Retry-After"]))
            assert (await _try_key(other, "cdk_guess")).status_code == 401  # its own count
            clock.advance(waits[-1] - 0.5)
            assert (await _try_key(http, "cdk_guess")).status_code == 429  # not yet
            clock.advance(0.5)
            assert (await _try_key(http, "cdk_guess")).status_code == 401
        assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900]
        clock.advance(900)
        assert (await _try_key(http, secret)).status_code == 303
        http.cookies.clear()  # signed out, on the same address
        for _ in range(5):  # signed in: the count starts again
            assert (await _try_key(http, "cdk_guess")).status_code == 401
        assert (await _try_key(http, "cdk_guess")).status_code == 429


async def test_the_ledger_names_a_priced_charge_keeps_its_stamp_and_scrolls_on_a_phone(
    make_ledger: LedgerFactory, browser: Browser
) -> None:
    ledger = await make_ledger(pricing={"markup_percent": 20})
    secret = await create_key(ledger, "admin", "ops")
    await ledger.grant("ada", 100 * CREDIT)
    await ledger.charge("ada", use=FeatureUse("chat_message", Decimal(3)))
    call = TokenUse("openai/gpt-4o", input_tokens=1_000, output_tokens=500)
    await ledger.charge("ada", use=call)
    async with serve_app(ledger) as base:
        context = await browser.new_context(viewport=WIDTHS["phone"])  # type: ignore[arg-type]
        page = await context.new_page()
        await sign_in(page, base, secret)
        await page.goto(f"{base}/admin/accounts/ada")
        rows = page.locator("section", has=page.get_by_role("heading", name="Ledger"))
        newest, chat = rows.locator("tbody tr").nth(0), rows.locator("tbody tr").nth(1)
        await expect(newest).to_contain_text("Charge · GPT-4o · 1,000 input tokens, 500 output")
        await expect(chat).to_contain_text("Charge · Chat message · 3 uses at 10 credits each")
        await newest.get_by_text("Price stamp").click()
        stamp = newest.locator("details.stamp")
        for term in ("Catalog version 1", "Markup %: 20", "Rate multiplier: 1", "US dollars"):
            await expect(stamp).to_contain_text(term)
        await expect(newest.locator("time")).to_have_attribute("title", re.compile(r" UTC$"))

        scroller = page.get_by_test_id("ledger-scroll")
        wide, shown = await scroller.evaluate("box => [box.scrollWidth, box.clientWidth]")
        assert wide > shown  # the ledger is wider than a phone: it scrolls, not the page
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        await expect(page.locator(".scroll-hint")).to_be_visible()
        await expect(page.locator(".scroll-hint")).to_have_text(
            "Scroll sideways for Change and Balance after →"
        )
        shadows = await scroller.evaluate("box => getComputedStyle(box).backgroundImage")
        assert shadows.count("radial-gradient") == 2  # the edge that has more to show darkens
        balance = rows.get_by_role("columnheader", name="Balance after")
        assert not await balance.evaluate(_within_scroller)
        await scroller.evaluate("box => { box.scrollLeft = box.scrollWidth; }")
        assert await balance.evaluate(_within_scroller)
        await expect(newest).to_contain_text("−0.9")  # 0.75 credits, with the 20 % markup
        await scroller.evaluate("box => { box.scrollLeft = 0; }")
        await shoot(page, "admin-ledger")
        await page.set_viewport_size(WIDTHS["desktop"])  # type: ignore[arg-type]
        await expect(page.locator(".scroll-hint")).to_be_hidden()
        await context.close()


_within_scroller = """cell => {
  const box = cell.closest('.table-scroll').getBoundingClientRect();
  const at = cell.getBoundingClientRect();
  return at.left >= box.left && at.right <= box.right + 1;
}"""
