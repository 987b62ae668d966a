"""Signing in with an admin key, and out."""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.api.auth import ledger_of
from creditsd.keys import service as keys
from creditsd.keys.service import ApiKey
from creditsd.kit.errors import CreditsError, Forbidden
from creditsd.web import repository as web_tokens
from creditsd.web.admin.console import (
    HOME_URL,
    LOGIN_URL,
    SECTION,
    SESSION_COOKIE,
    SESSION_KIND,
    AdminRoute,
    Posted,
    SignedOut,
    audited,
    bad,
    done,
    failure,
    operator,
    render,
)
from creditsd.web.backoff import SignInBackoff
from creditsd.web.pages import (
    CSRF_FIELD,
    clear_session,
    put_cookie,
    redirect,
)

LOGIN_COOKIE = "creditsd_admin_login"
LOGIN_SECONDS = 3600  # how long the sign-in form may wait for its key

router = APIRouter(route_class=AdminRoute)


# Signing in and out


@router.get("/login")
async def login_form(request: Request) -> Response:
    """The sign-in form (an already signed-in browser goes straight in)."""
    try:
        await operator(request)
    except SignedOut:
        return await _login_page(request)
    return redirect(HOME_URL)


def _backoff(request: Request) -> SignInBackoff:
    """This app's sign-in back-off, made on first use."""
    found: SignInBackoff | None = getattr(request.app.state, "sign_in_backoff", None)
    if found is None:
        found = request.app.state.sign_in_backoff = SignInBackoff()
    return found


async def _login_page(request: Request, status: int = 200, problem: str | None = None) -> Response:
    token = secrets.token_urlsafe(24)
    response = await render(
        request,
        None,
        "login.html",
        status,
        notices=None if problem is None else [bad(problem)],
        login_token=token,
    )
    put_cookie(
        response,
        request,
        LOGIN_COOKIE,
        token,
        seconds=LOGIN_SECONDS,
        path=LOGIN_URL,
        samesite="strict",
    )
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    """Sign in with an admin key: the session remembers the key's id, never its secret.
    A client that keeps failing must wait longer and longer (:mod:`creditsd.web.backoff`)."""
    ledger = ledger_of(request)
    backoff, client = _backoff(request), request.client.host if request.client else "unknown"
    wait = backoff.wait(client, ledger.now())
    if wait:
        plural = "" if wait == 1 else "s"
        refused = await _login_page(
            request,
            429,
            f"Too many failed sign-ins from your address: try again in {wait} second{plural}.",
        )
        refused.headers["Retry-After"] = str(wait)
        return refused
    form = await request.form()
    sent, expected = form.get(CSRF_FIELD), request.cookies.get(LOGIN_COOKIE)
    if not (
        isinstance(sent, str) and expected and hmac.compare_digest(sent.encode(), expected.encode())
    ):
        raise Forbidden("this form has expired or did not come from this page; reload it")
    secret = form.get("key")
    key: ApiKey | None = None
    problem = (401, "That key is not valid, or it has been revoked.")
    if isinstance(secret, str) and secret.strip():
        try:
            key = await ledger.database.read(
                lambda conn, now: keys.authenticate(conn, secret.strip(), now)
            )
        except CreditsError as failed:
            problem = (401, failure(failed, ledger)["text"])
    if key is not None and not key.allows("admin"):
        scope, key = key.scope, None
        problem = (
            403,
            f"This key's scope is {scope!r}. The admin console needs a key with scope 'admin'.",
        )
    if key is None:
        backoff.failed(client, ledger.now())
        return await _login_page(request, *problem)
    backoff.succeeded(client)
    token = secrets.token_urlsafe(32)
    seconds = ledger.settings.web.admin_session_seconds
    signed_in = key

    async def begin(conn: AsyncConnection, now: datetime) -> None:
        until = now + timedelta(seconds=seconds)
        await web_tokens.keep(conn, SESSION_KIND, token, signed_in.id, now, until)
        await audited(conn, signed_in, "admin.sign_in", {"expires_at": until.isoformat()}, now)

    await ledger.database.write(begin)
    response = await done(request, HOME_URL, f"Signed in with the key {key.name} ({key.hint}).")
    put_cookie(response, request, SESSION_COOKIE, token, seconds=seconds, path=f"/{SECTION}")
    response.delete_cookie(LOGIN_COOKIE, path=LOGIN_URL)
    return response


@router.post("/logout")
async def logout(request: Request, posted: Posted) -> Response:
    """Sign out of the console: the session ends, wherever its cookie was copied."""
    ledger = ledger_of(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    key = posted.operator.key

    async def end(conn: AsyncConnection, now: datetime) -> None:
        await web_tokens.forget(conn, SESSION_KIND, token)
        await audited(conn, key, "admin.sign_out", None, now)

    await ledger.database.write(end)
    response = await done(request, LOGIN_URL, "You are signed out.")
    clear_session(response, SECTION)
    return response
