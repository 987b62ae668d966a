"""The admin console: operators sign in with an admin key and run the ledger.

The key is asked for once (``/admin/login``) and never kept. The session cookie is a
random token; the database keeps its SHA-256 beside the key's id (``web_tokens``), so
reading the database signs no one in, and signing out ends the session wherever its
cookie was copied. Every request looks the key up again, so revoking it or its expiry
signs the browser out at once. Every form carries the session's CSRF token; the sign-in
form, which comes before any session, carries a token it also sets as a cookie (double
submit). Signing in and out, each action and each export are audited with the operator's
key as actor, as the API does, and an action's outcome is shown once on the page the
browser is sent to next (a signed cookie, not the URL).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from creditsd.web.admin import accounts, integrations, money, operations, sign_in
from creditsd.web.admin.console import HOME_URL, SECTION, AdminRoute
from creditsd.web.pages import redirect

router = APIRouter(prefix=f"/{SECTION}", include_in_schema=False, route_class=AdminRoute)


@router.get("")
async def home() -> Response:
    """The console opens on its accounts."""
    return redirect(HOME_URL)


for pages in (sign_in, accounts, operations, integrations, money):
    router.include_router(pages.router)
