"""The billing page an end user opens through a portal link their app asks for.

An app asks ``POST /v1/portal-sessions`` for a link signed for one account; opening it
(``/billing/open``) trades it for a session cookie scoped to ``/billing`` and sends the
browser on to ``/billing``, so the link's token leaves the address bar. A link opens
once: its id is kept (``web_tokens``) until it expires, so a link that leaked from a
history or a log opens nothing. Every page then reads the account the session names, and
nothing else, and says which account that is. A link for another account, opened in a
browser whose session is still live, switches nothing by itself: it is kept in a cookie of
its own (``creditsd_billing_switch``) and ``/billing/switch`` asks, naming both accounts;
only that page's form (a POST with its own CSRF token) switches, so a link sent by someone
else cannot make a Buy pay into their account unnoticed. Top-ups pay through Stripe
Checkout, embedded in our page when a publishable key is set, else on Stripe's hosted page;
Stripe sends the buyer back to ``/billing/success``, which shows the credits once the
webhook has granted them and refreshes itself until then. When Stripe cannot be reached or
refuses to start a checkout, the buyer is told so and offered to try again.

A link may be made for a member of a team wallet (``member``): its page shows what each
of the member's own limits leaves in its current window and when it resets, the wallet's
balance only where ``[web] members_see_wallet_balance`` allows, and nothing of the
wallet's history or of other members' spend. It buys nothing (the wallet's owner tops the
wallet up), and a member's page and the account's own are different pages: a link for
one opened over the other asks before switching, as for another account.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from creditsd.api.auth import ledger_of
from creditsd.api.checkout import paying_customer
from creditsd.inprocess import Ledger
from creditsd.kit.errors import Forbidden, NotFound, Unauthenticated
from creditsd.ledger.models import PAID_SOURCE, Account
from creditsd.members import service as members
from creditsd.stripe import repository as stripe_repo
from creditsd.stripe.billing import CheckoutState, StripeBilling
from creditsd.stripe.errors import PaymentProviderError, PaymentProviderUnreachable
from creditsd.web import autotopup_view, billing
from creditsd.web import repository as web_tokens
from creditsd.web.pages import (
    CSRF_FIELD,
    Session,
    check_csrf,
    clear_session,
    new_session_id,
    page,
    read_session,
    redirect,
    set_session,
    signer,
)
from creditsd.web.signing import BadToken, Signer

router = APIRouter(prefix="/billing", include_in_schema=False)

SECTION = "billing"  # the session cookie's name and path
LINK = "portal-link"  # what a portal link's token is signed for
LINK_KIND = "portal_link"  # an opened link's row in web_tokens: each link opens once
PAGE_SIZE = 20
# How often the success page looks again: soon for a paid purchase's credits (the webhook
# is on its way), seldom while a bank still confirms a delayed payment.
REFRESH_SECONDS = {"coming": 3, "processing": 30}
CHECKOUT_ID = re.compile(r"cs_[A-Za-z0-9_]{1,250}")
SWITCH = "billing_switch"  # a link opened over another account's session, until answered
SWITCH_PATH = f"/{SECTION}"  # its cookie's path: the question's page and /billing/open
SWITCH_URL = "/billing/switch"
SWITCH_LIFETIME = timedelta(minutes=10)  # how long the question waits for its answer


def public_base(request: Request, ledger: Ledger) -> str:
    """Where browsers reach creditsd: ``[web] public_url``, else where this request came."""
    return (ledger.settings.web.public_url or str(request.base_url)).rstrip("/")


def link(
    signer_: Signer,
    request: Request,
    ledger: Ledger,
    account_id: str,
    return_url: str,
    member: str | None = None,
) -> tuple[str, datetime]:
    """A portal link for one account, or for one ``member`` of it (a wallet), and when it
    stops working."""
    expires_at = ledger.now() + timedelta(seconds=ledger.settings.web.link_seconds)
    claims = {"sub": account_id, "mem": member, "ret": return_url, "jti": new_session_id()}
    token = signer_.sign(LINK, claims, expires_at)
    return f"{public_base(request, ledger)}/billing/open?token={token}", expires_at


async def billing_session(request: Request) -> Session:
    """The browser's billing page session; none (or an ended one) is a 401 page."""
    found = read_session(request, await signer(request), SECTION, ledger_of(request).now())
    if found is None:
        raise Unauthenticated(
            "your billing page session has ended: open the billing page from the app again"
        )
    return found


BillingSession = Annotated[Session, Depends(billing_session)]


def member_of(session: Session) -> str | None:
    """The wallet's member whose page this session shows (None: the account's own)."""
    member = session.claims.get("mem")
    return member if isinstance(member, str) else None


def _same_page(session: Session, claims: dict[str, Any]) -> bool:
    """Whether a link's ``claims`` open the page ``session`` shows: the same account, and
    the same member of it (or none)."""
    return session.subject == claims["sub"] and member_of(session) == claims.get("mem")


async def owner_session(session: BillingSession) -> Session:
    """A session of the account's own page: a member's page buys nothing (403)."""
    if member_of(session) is not None:
        raise Forbidden("a member's billing page buys no credits: the wallet's owner tops it up")
    return session


OwnerSession = Annotated[Session, Depends(owner_session)]


@router.get("/open")
async def open_link(request: Request, token: str = "") -> RedirectResponse:
    """Trade a portal link for a session cookie, and go on to the page without the token."""
    ledger = ledger_of(request)
    signer_ = await signer(request)
    if not token:
        raise BadToken("this link or session is not valid")
    claims = signer_.verify(LINK, token, ledger.now())
    once, account_id = str(claims.get("jti")), str(claims["sub"])
    until = datetime.fromtimestamp(claims["exp"], UTC)
    first = await ledger.database.write(
        lambda conn, now: web_tokens.keep(conn, LINK_KIND, once, account_id, now, until)
    )
    if not first:
        raise BadToken("this link has been opened already: open the billing page from the app")
    now = ledger.now()
    current = read_session(request, signer_, SECTION, now)
    if current is None or _same_page(current, claims):
        return _signed_in(request, signer_, claims)
    response = redirect(SWITCH_URL)
    asked = {"sub": account_id, "mem": claims.get("mem"), "ret": claims.get("ret")}
    set_session(response, request, signer_, SWITCH, asked, SWITCH_LIFETIME, now, SWITCH_PATH)
    return response


def _signed_in(request: Request, signer_: Signer, claims: dict[str, Any]) -> RedirectResponse:
    """On to the billing page with a session for the account and return URL of ``claims``
    (a link's, or a switch question's)."""
    ledger = ledger_of(request)
    response = redirect("/billing")
    lifetime = timedelta(seconds=ledger.settings.web.portal_session_seconds)
    session_claims = {"sub": claims["sub"], "mem": claims.get("mem"), "ret": claims.get("ret")}
    set_session(response, request, signer_, SECTION, session_claims, lifetime, ledger.now())
    return response


@router.get("/switch", response_model=None)
async def switch_question(request: Request) -> HTMLResponse | RedirectResponse:
    """Ask before a link for another account replaces this browser's session, naming both;
    with no session left to replace, the link's account's page opens as the link would."""
    ledger = ledger_of(request)
    signer_ = await signer(request)
    pending = read_session(request, signer_, SWITCH, ledger.now())
    if pending is None:
        return redirect("/billing")
    current = read_session(request, signer_, SECTION, ledger.now())
    if current is None or _same_page(current, pending.claims):
        response = _signed_in(request, signer_, pending.claims)
        clear_session(response, SWITCH, SWITCH_PATH)
        return response
    return page(
        request,
        "billing_switch.html",
        account_id=current.subject,
        member_id=member_of(current),
        linked=pending.subject,
        linked_member=member_of(pending),
        return_url=current.claims.get("ret"),
        csrf=pending.csrf,
        csrf_field=CSRF_FIELD,
    )


@router.post("/switch")
async def switch(
    request: Request,
    csrf: Annotated[str, Form(max_length=200)] = "",
    choice: Annotated[Literal["switch", "stay"], Form()] = "stay",
) -> RedirectResponse:
    """The answer to :func:`switch_question`: its own CSRF token, and ``switch`` to the
    link's account or ``stay`` with the session's. An answered question is gone."""
    ledger = ledger_of(request)
    signer_ = await signer(request)
    pending = read_session(request, signer_, SWITCH, ledger.now())
    if pending is None:
        return redirect("/billing")
    check_csrf(pending, csrf)
    if choice == "switch":
        response = _signed_in(request, signer_, pending.claims)
    else:
        response = redirect("/billing")
    clear_session(response, SWITCH, SWITCH_PATH)
    return response


@router.get("")
async def overview(
    request: Request,
    session: BillingSession,
    before: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    """The balance first, then what expires, usage, top-ups and the transactions; for a
    member of a wallet, their own allowance instead (:func:`_member_page`)."""
    if (member := member_of(session)) is not None:
        return await _member_page(request, session, member)
    ledger = ledger_of(request)
    account = await ledger.get_account(session.subject)
    money = ledger.money
    history = await ledger.transactions(account.id, limit=PAGE_SIZE, cursor=before)
    today = ledger.now().date()
    spent = await ledger.daily_spend(account.id, billing.chart_days(today)[0])
    catalog = (await ledger.catalog()).settings
    stripe_ready = _sells(ledger)
    packs = sorted(ledger.settings.packs.items(), key=lambda named: named[1].credits)
    return page(
        request,
        "billing.html",
        **account_context(account, ledger, session),
        expiring=billing.expiring(await ledger.expiring_credits(account.id), money),
        entries=[billing.entry(transfer, account.id, money, catalog) for transfer in history.items],
        older=history.next_cursor,
        paged=before is not None,
        chart=billing.chart(spent, today, money, catalog),
        packs=packs if stripe_ready and account.status == "active" else [],
        auto_topup=await autotopup_view.section(ledger, account),
        offers_auto_topup=stripe_ready and bool(packs) and account.status == "active",
        csrf_field=CSRF_FIELD,
    )


async def _member_page(request: Request, session: Session, member_id: str) -> HTMLResponse:
    """A member's own page: what each of their limits leaves in its current window and
    when it resets, and the wallet's balance only under ``[web]
    members_see_wallet_balance``; never the wallet's history nor another member's spend."""
    ledger = ledger_of(request)
    standing = await ledger.database.read(
        lambda conn, now: members.member_standing(conn, session.subject, member_id, now)
    )
    wallet = await ledger.get_account(session.subject)
    shown = ledger.settings.web.members_see_wallet_balance
    return page(
        request,
        "billing_member.html",
        account_id=wallet.id,
        member_id=member_id,
        display_name=standing.member.display_name,
        wallet_status=wallet.status,
        allowances=billing.allowances(standing.member, ledger.money),
        time_zone=standing.time_zone,
        wallet_balance=ledger.money.to_decimal(wallet.balance) if shown else None,
        return_url=session.claims.get("ret"),
    )


def account_context(account: Account, ledger: Ledger, session: Session) -> dict[str, Any]:
    """What every billing page shows of the account: its balance and where to go back."""
    money = ledger.money
    free = sum(
        amount
        for source, amount in account.by_source.items()
        if source not in {PAID_SOURCE, "overdrawn"}  # overdrawn: the balance below zero
    )
    threshold = ledger.settings.low_balance_threshold_of(account.low_balance_threshold)
    low = bool(threshold) and account.balance < threshold
    return {
        "account": account,
        "account_id": account.id,
        "balance": money.to_decimal(account.balance),
        "held": money.to_decimal(account.held),
        "paid": money.to_decimal(account.by_source.get(PAID_SOURCE, 0)),
        "free": money.to_decimal(free),
        "low": money.to_decimal(threshold) if low else None,
        "return_url": session.claims.get("ret"),
        "csrf": session.csrf,
    }


@router.post("/top-up", response_model=None)
async def top_up(
    request: Request,
    session: OwnerSession,
    csrf: Annotated[str, Form(max_length=200)] = "",
    pack: Annotated[str, Form(max_length=40)] = "",
    hosted: Annotated[bool, Form()] = False,
) -> HTMLResponse | RedirectResponse:
    """Start buying a pack: a Stripe Checkout Session, embedded in a page of ours when
    ``[stripe] publishable_key`` is set (its form offers Stripe's hosted page instead, for
    a browser without JavaScript), else Stripe's hosted page straight away."""
    check_csrf(session, csrf)
    ledger = ledger_of(request)
    if not _sells(ledger):
        raise NotSold
    stripe: StripeBilling = request.app.state.stripe
    base = public_base(request, ledger)
    on_sale = stripe.pack(pack)  # an unknown pack is refused before anything is written
    publishable_key = ledger.settings.stripe.publishable_key
    embedded = publishable_key is not None and not hosted
    try:
        account_id, customer = await paying_customer(ledger, stripe, session.subject)
        checkout = await stripe.create_checkout(
            account_id,
            customer,
            pack,
            success_url=f"{base}/billing/success?session_id={{CHECKOUT_SESSION_ID}}",
            cancel_url=None if embedded else f"{base}/billing/cancel",
            ui_mode="embedded" if embedded else "hosted",
            app=SECTION,
            idempotency_key=None,
        )
    except PaymentProviderError as failed:
        return await _not_started(request, session, failed, pack=pack, hosted=hosted)
    if not embedded:
        assert checkout.url is not None  # a hosted session always has Stripe's page
        return redirect(checkout.url)
    return page(
        request,
        "billing_checkout.html",
        account_id=account_id,
        pack=pack,
        credits=on_sale.credits,
        publishable_key=publishable_key,
        client_secret=checkout.client_secret,
        csrf=session.csrf,
        csrf_field=CSRF_FIELD,
        return_url=session.claims.get("ret"),
    )


async def _not_started(
    request: Request, session: Session, failed: PaymentProviderError, *, pack: str, hosted: bool
) -> HTMLResponse:
    """Stripe could not start a checkout: the buyer is told so in plain words (reached or
    not), with a button that tries again and a way back; unreachable is a 503 that says
    when to try again (``Retry-After``), a refusal a 502."""
    ledger = ledger_of(request)
    account = await ledger.get_account(session.subject)
    response = page(
        request,
        "billing_not_started.html",
        failed.status,
        **account_context(account, ledger, session),
        unreachable=isinstance(failed, PaymentProviderUnreachable),
        pack=pack,
        hosted=hosted,
        csrf_field=CSRF_FIELD,
    )
    if isinstance(failed, PaymentProviderUnreachable):
        response.headers["Retry-After"] = str(failed.RETRY_AFTER_SECONDS)
    return response


@router.get("/success")
async def success(
    request: Request,
    session: OwnerSession,
    session_id: Annotated[str, Query(max_length=255)] = "",
) -> HTMLResponse:
    """A purchase's outcome: its credits once granted; until then, a page that looks again
    every few seconds. Only the session's own account's purchases are found."""
    ledger = ledger_of(request)
    if not CHECKOUT_ID.fullmatch(session_id):
        raise NotFound("there is no such payment for this account")
    account = await ledger.get_account(session.subject)
    payment = await ledger.database.read(
        lambda conn, _now: stripe_repo.payment_of_session(conn, account.id, session_id)
    )
    state = "arrived"
    if payment is None:
        if not _sells(ledger):
            raise NotSold
        stripe: StripeBilling = request.app.state.stripe
        checkout = await stripe.find_checkout(session_id)
        if checkout is None or checkout.account_id != account.id:
            raise NotFound("there is no such payment for this account")
        state = _checkout_state(checkout)
    return page(
        request,
        "billing_success.html",
        **account_context(account, ledger, session),
        state=state,
        added=None if payment is None else ledger.money.to_decimal(payment.credits),
        refresh=REFRESH_SECONDS.get(state),
    )


def _sells(ledger: Ledger) -> bool:
    """Whether credits can be bought here: Stripe is set up (``[stripe] secret_key``)."""
    return ledger.settings.stripe.secret_key is not None


class NotSold(NotFound):
    """Buying on a deployment without Stripe. It lasts until an operator sets Stripe up and
    restarts, so it is a 404 (nothing to buy here), not a 503 that asks to try again; and a
    buyer is not told the configuration's key names."""

    def __init__(self) -> None:
        super().__init__("buying credits is not available here")


def _checkout_state(checkout: CheckoutState) -> str:
    """What the buyer is told of a purchase not granted yet: paid and its credits coming,
    paid by a method still processing, not finished, or expired."""
    if checkout.paid:
        return "coming"
    return {"complete": "processing", "open": "unfinished"}.get(checkout.status, "expired")


@router.get("/cancel")
async def cancel(request: Request, session: OwnerSession) -> HTMLResponse:
    """The buyer left Stripe's page without paying: nothing was charged."""
    ledger = ledger_of(request)
    account = await ledger.get_account(session.subject)
    return page(request, "billing_cancel.html", **account_context(account, ledger, session))
