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

import csv
import hmac
import io
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

import simplejson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.datastructures import FormData

from creditsd import inbox
from creditsd.api.auth import actor, ledger_of
from creditsd.audit import repository as audit_repo
from creditsd.audit import service as audit_service
from creditsd.audit.models import AuditFilter
from creditsd.clerk.service import SOURCE as CLERK_SOURCE
from creditsd.gateway.service import GATEWAY_APP
from creditsd.holds import repository as holds_repo
from creditsd.inprocess import Ledger
from creditsd.keys import service as keys
from creditsd.keys.service import ApiKey
from creditsd.kit import jsonio
from creditsd.kit.errors import CreditsError, Forbidden, InvalidRequest, NotFound
from creditsd.kit.money import INT64_MAX, AmountError
from creditsd.ledger import export
from creditsd.ledger import lot_repository as lot_repo
from creditsd.ledger.errors import AccountNotFound, InsufficientCredits
from creditsd.ledger.models import Account, Transfer
from creditsd.price_settings import PricingSettings, noun
from creditsd.pricing import repository as pricing_repo
from creditsd.pricing import service as pricing_service
from creditsd.stripe.reconcile import reconcile as reconcile_stripe
from creditsd.stripe.service import SOURCE as STRIPE_SOURCE
from creditsd.tables import OUTBOX_STATUSES
from creditsd.web import repository as web_tokens
from creditsd.web import stamps
from creditsd.web.backoff import SignInBackoff
from creditsd.web.pages import (
    CSRF_FIELD,
    PAGE_HEADERS,
    Session,
    check_csrf,
    clear_session,
    credits,
    page,
    put_cookie,
    redirect,
    signer,
)
from creditsd.web.stamps import Stamp
from creditsd.webhooks import repository as webhooks_repo
from creditsd.webhooks import service as webhooks

SECTION = "admin"
SESSION_COOKIE = f"creditsd_{SECTION}"
SESSION_KIND = "admin_session"  # its rows in web_tokens
LOGIN_URL = f"/{SECTION}/login"
HOME_URL = f"/{SECTION}/accounts"
LOGIN_COOKIE = "creditsd_admin_login"
NOTICE_COOKIE = "creditsd_admin_notice"
NOTICE_SECONDS = 120
PAGE_SIZE = 25
SIDE_LIST = 20  # holds, lots and deliveries shown on an account's page
REASON_LENGTH = 500
INBOX_SOURCES = {STRIPE_SOURCE: "Stripe", CLERK_SOURCE: "Clerk", GATEWAY_APP: "Gateway"}
CATALOG_VERSION_MAX = 2**31 - 1  # the column is a 32-bit integer
LOGIN_SECONDS = 3600  # how long the sign-in form may wait for its key
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


router = APIRouter(prefix=f"/{SECTION}", include_in_schema=False, route_class=AdminRoute)


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


def _failure(exc: CreditsError, ledger: Ledger) -> dict[str, str]:
    """A refusal as a notice, in plain words."""
    if isinstance(exc, InsufficientCredits):
        return _bad(
            f"The account has {credits(ledger.money.to_decimal(exc.available))} credits it "
            f"can spend; this needs {credits(ledger.money.to_decimal(exc.required))}."
        )
    return _bad(exc.message[:1].upper() + exc.message[1:] + ".")


def _bad(text: str) -> dict[str, str]:
    return {"kind": "bad", "text": text}


# Signing in and out


@router.get("")
async def home() -> Response:
    """The console opens on its accounts."""
    return redirect(HOME_URL)


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
        notices=None if problem is None else [_bad(problem)],
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
            problem = (401, _failure(failed, ledger)["text"])
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
        await _audited(conn, signed_in, "admin.sign_in", {"expires_at": until.isoformat()}, now)

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
        await _audited(conn, key, "admin.sign_out", None, now)

    await ledger.database.write(end)
    response = await done(request, LOGIN_URL, "You are signed out.")
    clear_session(response, SECTION)
    return response


async def _audited(
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


# Accounts


@router.get("/accounts")
async def accounts(
    request: Request, op: Signed, q: str | None = None, cursor: str | None = None
) -> Response:
    """Customer accounts, searched by id or alias prefix."""
    search = typed(q, 128) or None
    found = await ledger_of(request).list_accounts(limit=PAGE_SIZE, cursor=cursor, search=search)
    return await render(
        request, op, "accounts.html", accounts=found.items, next_cursor=found.next_cursor, q=search
    )


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """A transfer as the console's ledger shows it: in the ledger's words, with what a
    priced one paid for as its customer reads it (``Chat message``, ``3 uses at 10 credits
    each``) and every term of its price stamp (version, markup, multiplier, rounding)."""

    transfer: Transfer
    item: str | None
    used: str | None
    terms: list[str]


def _ledger_row(transfer: Transfer, catalog: PricingSettings) -> LedgerRow:
    stamp = Stamp(transfer.pricing)
    return LedgerRow(
        transfer,
        stamps.named(stamp, catalog),
        stamps.used(stamps.catalog_priced(transfer), catalog),
        stamps.terms(stamp),
    )


@dataclass(frozen=True, slots=True)
class AccountSide:
    """What an account's page lists beside its ledger."""

    holds: list[Any]
    lots: list[Any]
    deliveries: list[Any]


async def _account_page(
    request: Request,
    op: Operator,
    account_id: str,
    *,
    cursor: str | None = None,
    status: int = 200,
    notices: list[dict[str, str]] | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    ledger = ledger_of(request)
    account = await _existing(ledger, account_id)
    history = await ledger.transactions(account.id, limit=PAGE_SIZE, cursor=cursor)

    async def side(conn: Any, _now: datetime) -> AccountSide:
        return AccountSide(
            await holds_repo.open_holds_of(conn, account.id, SIDE_LIST),
            await lot_repo.live_lots(conn, account.id, SIDE_LIST),
            await webhooks_repo.account_messages(conn, account.id, SIDE_LIST),
        )

    listed = await ledger.database.read(side)
    catalog = (await ledger.catalog()).settings
    return await render(
        request,
        op,
        "account.html",
        status,
        notices,
        account=account,
        rows=[_ledger_row(transfer, catalog) for transfer in history.items],
        next_cursor=history.next_cursor,
        side=listed,
        now=ledger.now(),
        form=form or {},
        request_key=secrets.token_urlsafe(18),
    )


async def _existing(ledger: Ledger, account_id: str) -> Account:
    """An account that exists (a read would otherwise show one not yet opened)."""
    account = await ledger.get_account(account_id)
    if account.created_at is None:
        raise AccountNotFound(account_id)
    return account


def _account_url(account_id: str) -> str:
    return f"{HOME_URL}/{account_id}"


@router.get("/accounts/{account_id}")
async def account_page(
    request: Request, op: Signed, account_id: str, cursor: str | None = None
) -> Response:
    """An account: its balance, ledger, holds, lots and webhook deliveries, and the forms
    that act on it."""
    return await _account_page(request, op, account_id, cursor=cursor)


def _units(ledger: Ledger, text: str) -> int:
    """A positive amount of credits typed in a form, in minor units."""
    try:
        units = ledger.money.to_minor(text, allow_zero=True, allow_negative=True)
    except AmountError:
        raise InvalidRequest(
            f"Enter the amount as a number of credits with at most {ledger.money.scale} "
            "decimal places, like 100 or 2.5"
        ) from None
    if units <= 0:
        raise InvalidRequest("Enter an amount greater than zero")
    return units


def _reason(posted: Submission) -> str:
    reason = posted.text("reason")
    if not reason:
        raise InvalidRequest("Say why: the reason is kept on the transfer and in the audit log")
    return reason


async def _act(
    request: Request,
    posted: Submission,
    account_id: str,
    action: Callable[[Ledger], Awaitable[str]],
) -> Response:
    """Run an action on an account; its page again, with what happened or why not. An
    account that does not exist is a 404, as its page is: a form never opens one."""
    ledger = ledger_of(request)
    await _existing(ledger, account_id)
    try:
        said = await action(ledger)
    except NotFound:
        raise
    except CreditsError as refused:
        fields = ("amount", "reason", "direction", "status_reason")
        return await _account_page(
            request,
            posted.operator,
            account_id,
            status=refused.status if refused.status < 500 else 422,
            notices=[_failure(refused, ledger)],
            form={name: posted.text(name) for name in fields},
        )
    return await done(request, _account_url(account_id), said)


@router.post("/accounts/{account_id}/grant")
async def grant(request: Request, posted: Posted, account_id: str) -> Response:
    """Give the account credits, with a reason (audited)."""

    async def work(ledger: Ledger) -> str:
        units = _units(ledger, posted.text("amount", 40))
        transfer = await ledger.grant(
            account_id,
            units,
            reason=_reason(posted),
            idempotency_key=posted.text("request_key", 64) or None,
            app=posted.operator.key.name,
            actor=posted.operator.actor,
        )
        return _moved("Granted", transfer, ledger)

    return await _act(request, posted, account_id, work)


@router.post("/accounts/{account_id}/adjust")
async def adjust(request: Request, posted: Posted, account_id: str) -> Response:
    """Correct the account's balance up or down, with a reason (audited)."""

    async def work(ledger: Ledger) -> str:
        direction = posted.text("direction", 10)
        if direction not in {"credit", "debit"}:
            raise InvalidRequest("Choose whether to add credits or take them away")
        units = _units(ledger, posted.text("amount", 40))
        transfer = await ledger.adjust(
            account_id,
            units if direction == "credit" else -units,
            reason=_reason(posted),
            idempotency_key=posted.text("request_key", 64) or None,
            app=posted.operator.key.name,
            actor=posted.operator.actor,
        )
        return _moved("Added" if direction == "credit" else "Took away", transfer, ledger)

    return await _act(request, posted, account_id, work)


def _moved(verb: str, transfer: Transfer, ledger: Ledger) -> str:
    """What a grant or adjustment did: ``Granted 100 credits; the balance is now 103 (tr_…).``"""
    if transfer.replayed:
        return f"This form was already sent: nothing more was done ({transfer.id})."
    moved = ledger.money.to_decimal(transfer.amount)
    said = f"{verb} {credits(moved)} credit{'' if moved == 1 else 's'}"
    balance = transfer.balance_after(transfer.customer_account_id)
    if balance is not None:
        said += f"; the balance is now {credits(ledger.money.to_decimal(balance))}"
    return f"{said} ({transfer.id})."


STATUS_DONE = {"active": "reactivated", "frozen": "frozen", "closed": "closed"}


@router.post("/accounts/{account_id}/status")
async def set_status(request: Request, posted: Posted, account_id: str) -> Response:
    """Freeze, close or reactivate the account (audited, with the reason if given)."""

    async def work(ledger: Ledger) -> str:
        wanted = posted.text("status", 16)
        if wanted not in STATUS_DONE:
            raise InvalidRequest("Choose to freeze, close or reactivate the account")
        changed = await ledger.set_status(
            account_id,
            wanted,
            reason=posted.text("status_reason") or None,
            actor=posted.operator.actor,
        )
        if not changed:
            return f"Nothing changed: the account was already {wanted}."
        return f"The account is {STATUS_DONE[wanted]}."

    return await _act(request, posted, account_id, work)


# Reconciliation


@router.get("/reconcile")
async def reconcile(request: Request, op: Signed) -> Response:
    """Every account checked against its transfers, and Stripe's events against the ledger."""
    ledger = ledger_of(request)
    checked, drifted = 0, []
    async for found in ledger.verify_all():
        checked += len(found)
        drifted += [verification for verification in found if not verification.valid]
    now = ledger.now()
    stripe = await ledger.database.read(lambda conn, _now: reconcile_stripe(conn, now))
    return await render(
        request,
        op,
        "reconcile.html",
        checked=checked,
        drifted=drifted,
        total=await ledger.ledger_total(),
        stripe=stripe,
    )


@router.post("/reconcile/{account_id}/repair")
async def repair(request: Request, posted: Posted, account_id: str) -> Response:
    """Rebuild one account's stored figures from its transfers (audited)."""
    ledger = ledger_of(request)
    before = await ledger.rebuild_account(account_id, actor=posted.operator.actor)
    money = ledger.money
    return await done(
        request,
        f"/{SECTION}/reconcile",
        f"Rebuilt {before.account_id} from its transfers: its balance was "
        f"{credits(money.to_decimal(before.stored_balance))}, it is "
        f"{credits(money.to_decimal(before.calculated_balance))}.",
    )


# The audit log


@router.get("/audit")
async def audit_log(
    request: Request,
    op: Signed,
    target: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    cursor: str | None = None,
) -> Response:
    """What operators and apps did, newest first; narrowed by target, actor or action."""
    ledger = ledger_of(request)
    wanted = AuditFilter(
        target=typed(target, 255) or None,
        actor=typed(actor, 128) or None,
        action=typed(action, 64) or None,
    )
    found = await ledger.database.read(
        lambda conn, _now: audit_service.list_records(conn, wanted, limit=PAGE_SIZE, cursor=cursor)
    )
    return await render(
        request,
        op,
        "audit.html",
        records=[record.in_credits(ledger.money) for record in found.items],
        next_cursor=found.next_cursor,
        wanted=wanted,
        described=_described,
    )


def _described(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
    """An audit record's states as lines: ``balance: 3 → 103``, ``transfer_id: tr_1``."""
    before, after = before or {}, after or {}
    lines = []
    for name in dict.fromkeys([*before, *after]):
        if name not in after:
            lines.append(f"{name}: {_shown(before[name])} before")
        elif name in before and before[name] != after[name]:
            lines.append(f"{name}: {_shown(before[name])} → {_shown(after[name])}")
        else:
            lines.append(f"{name}: {_shown(after[name])}")
    return lines


def _shown(value: object) -> str:
    if value is None:
        return "none"
    return value if isinstance(value, str) else jsonio.dumps(value)


# Webhooks: what came in, what goes out


@router.get("/inbox")
async def inbox_page(
    request: Request, op: Signed, source: str = STRIPE_SOURCE, cursor: str | None = None
) -> Response:
    """What Stripe, Clerk or the gateway sent, newest first, with what handling it did."""
    chosen = source if source in INBOX_SOURCES else STRIPE_SOURCE
    ledger = ledger_of(request)
    found = await ledger.database.read(
        lambda conn, _now: inbox.recent(conn, chosen, limit=PAGE_SIZE, cursor=cursor)
    )
    return await render(
        request,
        op,
        "inbox.html",
        events=found.items,
        next_cursor=found.next_cursor,
        source=chosen,
        sources=INBOX_SOURCES,
    )


@router.get("/deliveries")
async def deliveries(
    request: Request, op: Signed, status: str | None = None, cursor: str | None = None
) -> Response:
    """Webhooks creditsd sends, newest first, with how their delivery went."""
    chosen = status if status in OUTBOX_STATUSES else None
    ledger = ledger_of(request)
    found = await ledger.database.read(
        lambda conn, _now: webhooks.deliveries(
            conn, destination=None, status=chosen, limit=PAGE_SIZE, cursor=cursor
        )
    )
    return await render(
        request,
        op,
        "deliveries.html",
        messages=found.items,
        next_cursor=found.next_cursor,
        state=chosen,
    )


@router.post("/deliveries/{delivery_id}/redeliver")
async def redeliver(
    request: Request, posted: Posted, delivery_id: Annotated[int, Path(ge=1, le=INT64_MAX)]
) -> Response:
    """Send a delivery again (audited)."""
    ledger = ledger_of(request)
    message = await ledger.database.write(
        lambda conn, now: webhooks.retry(conn, delivery_id, now, actor=posted.operator.actor)
    )
    back = posted.text("back", 200)
    url = back if back.startswith(f"/{SECTION}/") else f"/{SECTION}/deliveries"
    return await done(
        request,
        url,
        f"Delivery {message.id} ({message.event_type}) is queued to be sent again.",
    )


# Pricing


@router.get("/pricing")
async def pricing(request: Request, op: Signed, cursor: str | None = None) -> Response:
    """The published price catalog versions, newest first."""
    ledger = ledger_of(request)
    found = await ledger.database.read(
        lambda conn, _now: pricing_service.versions(conn, limit=PAGE_SIZE, cursor=cursor)
    )
    return await render(
        request,
        op,
        "pricing.html",
        versions=found.items,
        current=(await ledger.catalog()).version,
        next_cursor=found.next_cursor,
    )


@router.get("/pricing/{version}")
async def pricing_version(
    request: Request,
    op: Signed,
    version: Annotated[int, Path(ge=1, le=CATALOG_VERSION_MAX)],
    against: Annotated[int | None, Query(ge=1, le=CATALOG_VERSION_MAX)] = None,
) -> Response:
    """One catalog version: what changed from another (by default the one before), and
    its whole content."""
    ledger = ledger_of(request)
    compared = version - 1 if against is None else against

    async def read(conn: Any, _now: datetime) -> tuple[Any, Any]:
        return (
            await pricing_repo.get_version(conn, version),
            await pricing_repo.get_version(conn, compared) if compared >= 1 else None,
        )

    shown, other = await ledger.database.read(read)
    if shown is None:
        raise NotFound(f"there is no catalog version {version}")
    if against is not None and other is None:
        raise NotFound(f"there is no catalog version {against}")
    before = {} if other is None else other.catalog
    return await render(
        request,
        op,
        "pricing_version.html",
        version=shown,
        compared=None if other is None else other.version,
        changes=pricing_service.changes(before, shown.catalog),
        content=simplejson.dumps(
            jsonio.loads(jsonio.dumps(shown.catalog)), indent=2, sort_keys=True, use_decimal=True
        ),
    )


# Export


@router.get("/export")
async def export_form(request: Request, op: Signed) -> Response:
    """The form that downloads a period's transactions as CSV."""
    today = ledger_of(request).now().date()
    return await render(
        request, op, "export.html", start=today.replace(day=1).isoformat(), end=today.isoformat()
    )


@router.get("/export/transactions.csv")
async def export_csv(request: Request, op: Signed, start: str = "", end: str = "") -> Response:
    """Every transfer made from the first day to the last (both whole UTC days), as CSV,
    written as it is read. A period to the last day there is (9999-12-31) has no end."""
    ledger = ledger_of(request)
    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
    except ValueError:
        problem = "Choose both days of the period."
    else:
        problem = "The period must end on or after its first day." if last < first else ""
    if problem:
        return await render(request, op, "export.html", 422, [_bad(problem)], start=start, end=end)
    since = datetime.combine(first, time(), UTC)
    until = None if last == date.max else datetime.combine(last + timedelta(days=1), time(), UTC)
    period = {"start": first.isoformat(), "end": last.isoformat()}
    await ledger.database.write(
        lambda conn, now: _audited(conn, op.key, "export.transactions", period, now)
    )

    async def rows() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(export.COLUMNS)
        async for found in ledger.export_transfers(since, until):
            writer.writerows(export.row(transfer, ledger.money) for transfer in found)
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()

    name = f"transactions-{first.isoformat()}-to-{last.isoformat()}.csv"
    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={**PAGE_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
    )
