"""What every page of the console shares: the signed-in operator, forms and their CSRF
token, notices shown once, and how a page is rendered."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.datastructures import FormData

from creditsd.api.auth import actor, ledger_of
from creditsd.audit import repository as audit_repo
from creditsd.inprocess import Ledger
from creditsd.keys import service as keys
from creditsd.keys.service import ApiKey
from creditsd.kit.errors import CreditsError
from creditsd.ledger.errors import InsufficientCredits
from creditsd.price_settings import noun
from creditsd.web import repository as web_tokens
from creditsd.web.pages import (
    CSRF_FIELD,
    Session,
    check_csrf,
    clear_session,
    credits,
    page,
    put_cookie,
    redirect,
    signer,
)

SECTION = "admin"
SESSION_COOKIE = f"creditsd_{SECTION}"
SESSION_KIND = "admin_session"  # its rows in web_tokens
LOGIN_URL = f"/{SECTION}/login"
HOME_URL = f"/{SECTION}/accounts"
NOTICE_COOKIE = "creditsd_admin_notice"
NOTICE_SECONDS = 120
PAGE_SIZE = 25
REASON_LENGTH = 500
TOKEN_LENGTH = 64  # a session token's characters (43 are made); longer ones are not looked up


class SignedOut(Exception):
    """The browser has no live admin session: it is sent to the sign-in page."""


class AdminRoute(APIRoute):
    """A console route: a signed-out browser is redirected to sign in, its cookie cleared."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handle(request)
            except SignedOut:
                response = redirect(LOGIN_URL)
                clear_session(response, SECTION)
                return response

        return guarded


@dataclass(frozen=True, slots=True)
class Operator:
    """A signed-in operator: the admin key they signed in with, and their session."""

    key: ApiKey
    session: Session

    @property
    def actor(self) -> str:
        """How their actions appear in the audit log (as the API shows the same key)."""
        return actor(self.key)


async def operator(request: Request) -> Operator:
    """The operator whose live session this is; :class:`SignedOut` when there is none, it
    was signed out, or its key has been revoked or has expired since."""
    ledger = ledger_of(request)
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > TOKEN_LENGTH:
        raise SignedOut

    async def signed_in(conn: AsyncConnection, now: datetime) -> ApiKey | None:
        key_id = await web_tokens.subject_of(conn, SESSION_KIND, token, now)
        return None if key_id is None else await keys.live_key(conn, key_id, now)

    key = await ledger.database.read(signed_in)
    if key is None or not key.allows("admin"):
        raise SignedOut
    csrf = (await signer(request)).tag("csrf", token)
    return Operator(key, Session(key.id, csrf, {}))


def typed(value: str | None, limit: int) -> str:
    """What someone typed, trimmed, without NUL characters (no database keeps them), cut
    to ``limit`` characters; '' for nothing."""
    return (value or "").replace("\x00", "").strip()[:limit]


@dataclass(frozen=True, slots=True)
class Submission:
    """A console form, posted by a signed-in operator with the session's CSRF token."""

    operator: Operator
    form: FormData

    def text(self, name: str, limit: int = REASON_LENGTH) -> str:
        """A text field, trimmed and cut to ``limit`` characters ('' when absent)."""
        value = self.form.get(name)
        return typed(value if isinstance(value, str) else None, limit)


async def submission(request: Request, op: Annotated[Operator, Depends(operator)]) -> Submission:
    """The posted form, once its CSRF token has been checked (403 otherwise)."""
    form = await request.form()
    check_csrf(op.session, form.get(CSRF_FIELD))
    return Submission(op, form)


Signed = Annotated[Operator, Depends(operator)]
Posted = Annotated[Submission, Depends(submission)]


# Notices: shown once, on the page after a form's redirect


async def _notices(request: Request, ledger: Ledger) -> list[dict[str, str]]:
    token = request.cookies.get(NOTICE_COOKIE)
    if not token:
        return []
    try:
        claims = (await signer(request)).verify("admin-notice", token, ledger.now())
    except CreditsError:
        return []
    notices = claims.get("notices")
    return notices if isinstance(notices, list) else []


async def done(request: Request, url: str, text: str, kind: str = "good") -> Response:
    """Send the browser to ``url``, where ``text`` is shown once."""
    ledger = ledger_of(request)
    token = (await signer(request)).sign(
        "admin-notice",
        {"notices": [{"kind": kind, "text": text}]},
        ledger.now() + timedelta(seconds=NOTICE_SECONDS),
    )
    response = redirect(url)
    put_cookie(response, request, NOTICE_COOKIE, token, seconds=NOTICE_SECONDS, path=f"/{SECTION}")
    return response


async def render(
    request: Request,
    op: Operator | None,
    template: str,
    http_status: int = 200,
    notices: list[dict[str, str]] | None = None,
    **context: Any,
) -> HTMLResponse:
    """A console page, with the notices left for it and the operator's CSRF token."""
    ledger = ledger_of(request)
    money = ledger.money
    response = page(
        request,
        f"admin/{template}",
        http_status,
        notices=await _notices(request, ledger) + (notices or []),
        operator=op,
        csrf=None if op is None else op.session.csrf,
        csrf_field=CSRF_FIELD,
        amount=lambda units: credits(money.to_decimal(units)),
        credit_word=lambda units: noun(money.to_decimal(units), "credit"),
        **context,
    )
    if NOTICE_COOKIE in request.cookies:
        response.delete_cookie(NOTICE_COOKIE, path=f"/{SECTION}")
    return response


def failure(exc: CreditsError, ledger: Ledger) -> dict[str, str]:
    """A refusal as a notice, in plain words."""
    if isinstance(exc, InsufficientCredits):
        return bad(
            f"The account has {credits(ledger.money.to_decimal(exc.available))} credits it "
            f"can spend; this needs {credits(ledger.money.to_decimal(exc.required))}."
        )
    return bad(exc.message[:1].upper() + exc.message[1:] + ".")


def bad(text: str) -> dict[str, str]:
    return {"kind": "bad", "text": text}


async def audited(
    conn: AsyncConnection, key: ApiKey, action: str, after: dict[str, Any] | None, now: datetime
) -> None:
    """Record what an operator did that changes no account (signing in, out, exporting)."""
    await audit_repo.record(
        conn,
        actor=actor(key),
        action=action,
        target=key.id,
        before=None,
        after=after,
        now=now,
    )
