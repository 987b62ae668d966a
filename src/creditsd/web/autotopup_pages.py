"""The billing page's auto top-up forms (the section itself is
:mod:`creditsd.web.autotopup_view`'s): turn it on (a rule, then a card saved through Stripe
Checkout in ``setup`` mode, the consent recorded as the customer's own), off (at once), and
confirm a payment the bank wants authenticated (``needs_action``).

The confirmation confirms the attempt's own PaymentIntent again, server-side, with a
``return_url``, and sends the browser to the bank's check (Stripe's
``next_action.redirect_to_url.url``); the browser comes back to ``/billing/auto-top-up/
confirmed?payment_intent=pi_…``, which reads the PaymentIntent from Stripe (never the
query's word for it) and settles the attempt, once the PaymentIntent is found to be this
account's. Every route is the account's own: a member's page controls nothing (403).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from creditsd.api.auth import ledger_of
from creditsd.api.checkout import paying_customer
from creditsd.autotopup import charging
from creditsd.autotopup import service as autotopup
from creditsd.autotopup.models import Rule
from creditsd.inprocess import Ledger
from creditsd.kit.errors import Forbidden, InvalidAmount, NotFound
from creditsd.kit.money import AmountError, Money
from creditsd.stripe.billing import StripeBilling
from creditsd.web.pages import CSRF_FIELD, check_csrf, page, redirect
from creditsd.web.portal import NotSold, OwnerSession, account_context, public_base

router = APIRouter(prefix="/billing/auto-top-up", include_in_schema=False)

ACTOR = "customer on the billing page"  # who the audit log and the consent name
SECTION_URL = "/billing#auto-top-up"
INTENT_ID = re.compile(r"pi_[A-Za-z0-9_]{1,250}")
LABELS = {  # each form field as the form names it, for a refusal that says which is wrong
    "threshold": "Top up when below",
    "target_balance": "Bring the balance to",
    "monthly_cap": "At most a month",
}


def _billing(request: Request, ledger: Ledger) -> StripeBilling:
    """Stripe, where it sells (``[stripe] secret_key``); else nothing to turn on (404)."""
    if ledger.settings.stripe.secret_key is None or not ledger.settings.packs:
        raise NotSold
    billing: StripeBilling = request.app.state.stripe
    return billing


def _amount(money: Money, text: str, field: str, *, allow_zero: bool = False) -> int:
    """A figure of credits from the form; 422 naming the field as the form labels it."""
    try:
        return money.to_minor(text.strip(), allow_zero=allow_zero)
    except AmountError as exc:
        raise InvalidAmount(LABELS[field], str(exc)) from None


@router.post("")
async def turn_on(
    request: Request,
    session: OwnerSession,
    csrf: Annotated[str, Form(max_length=200)] = "",
    threshold: Annotated[str, Form(max_length=60)] = "",
    buy: Annotated[Literal["target", "pack"], Form()] = "target",
    target_balance: Annotated[str, Form(max_length=60)] = "",
    pack: Annotated[str, Form(max_length=64)] = "",
    monthly_cap: Annotated[str, Form(max_length=60)] = "",
) -> RedirectResponse:
    """Turn auto top-up on with the rule of the form, audited as the customer's; on to
    Stripe's page to save a card unless the card saved before goes on charging."""
    check_csrf(session, csrf)
    ledger = ledger_of(request)
    billing = _billing(request, ledger)
    money = ledger.money
    rule = Rule(
        enabled=True,
        threshold=_amount(money, threshold, "threshold", allow_zero=True),
        target_balance=_amount(money, target_balance, "target_balance")
        if buy == "target"
        else None,
        pack=pack if buy == "pack" else None,
        monthly_cap=_amount(money, monthly_cap, "monthly_cap"),
    )
    account = await ledger.get_account(session.subject)
    if account.status != "active":
        raise Forbidden(f"this account is {account.status}: auto top-up cannot be turned on")
    packs = ledger.settings.packs
    topup = await ledger.database.write(
        lambda conn, now: autotopup.turn_on(
            conn, account.id, rule, packs, ledger.policy, now, actor=ACTOR
        )
    )
    if topup.state == "active":
        return redirect(SECTION_URL)
    return await _save_card(request, ledger, billing, account.id)


@router.post("/card")
async def new_card(
    request: Request, session: OwnerSession, csrf: Annotated[str, Form(max_length=200)] = ""
) -> RedirectResponse:
    """On to Stripe's page to save a (new) card: it replaces the old one and lifts a pause."""
    check_csrf(session, csrf)
    ledger = ledger_of(request)
    billing = _billing(request, ledger)
    await ledger.database.read(
        lambda conn, now: autotopup.get_auto_topup(conn, session.subject, now)
    )
    return await _save_card(request, ledger, billing, session.subject)


async def _save_card(
    request: Request, ledger: Ledger, billing: StripeBilling, account_id: str
) -> RedirectResponse:
    """A Checkout Session in ``setup`` mode for the account's customer; its page."""
    base = public_base(request, ledger)
    account, customer = await paying_customer(ledger, billing, account_id)
    checkout = await billing.create_card_session(
        account,
        customer,
        success_url=f"{base}{SECTION_URL}",
        cancel_url=f"{base}{SECTION_URL}",
        app=ACTOR,
        idempotency_key=None,
    )
    assert checkout.url is not None  # a hosted session always has Stripe's page
    return redirect(checkout.url)


@router.post("/off")
async def turn_off(
    request: Request, session: OwnerSession, csrf: Annotated[str, Form(max_length=200)] = ""
) -> RedirectResponse:
    """Turn auto top-up off at once (audited as the customer's); rule and card are kept."""
    check_csrf(session, csrf)
    ledger = ledger_of(request)
    await ledger.database.write(
        lambda conn, now: autotopup.turn_off(conn, session.subject, now, actor=ACTOR)
    )
    return redirect(SECTION_URL)


@router.post("/confirm")
async def confirm(
    request: Request, session: OwnerSession, csrf: Annotated[str, Form(max_length=200)] = ""
) -> RedirectResponse:
    """Confirm the payment the bank asked about, on-session: the same PaymentIntent,
    confirmed again with a return URL, and the browser sent to the bank's check."""
    check_csrf(session, csrf)
    ledger = ledger_of(request)
    billing = _billing(request, ledger)
    account = await ledger.get_account(session.subject)
    waiting = await ledger.database.read(
        lambda conn, _now: charging.awaiting_customer(conn, account.id)
    )
    if waiting is None:
        raise NotFound("no payment is waiting for you to confirm")
    due, intent_id = waiting
    back = f"{public_base(request, ledger)}/billing/auto-top-up/confirmed"
    intent = await billing.confirm_on_session(intent_id, due.payment_method_id, back)
    action = intent.get("next_action") or {}
    if action.get("type") == "redirect_to_url":
        return redirect(str(action["redirect_to_url"]["url"]))
    return redirect(f"/billing/auto-top-up/confirmed?payment_intent={intent_id}")


@router.get("/confirmed")
async def confirmed(
    request: Request,
    session: OwnerSession,
    payment_intent: Annotated[str, Query(max_length=255)] = "",
) -> HTMLResponse:
    """Back from the bank: the PaymentIntent as Stripe has it settles the attempt, and the
    customer is told the outcome in plain words."""
    ledger = ledger_of(request)
    if not INTENT_ID.fullmatch(payment_intent):
        raise NotFound("there is no such payment for this account")
    account = await ledger.get_account(session.subject)
    due = await ledger.database.read(
        lambda conn, _now: charging.attempt_of_intent(conn, account.id, payment_intent)
    )
    if due is None:
        raise NotFound("there is no such payment for this account")
    intent = await _billing(request, ledger).payment_intent(payment_intent)
    settings, policy = ledger.settings, ledger.policy
    outcome = await ledger.database.write(
        lambda conn, now: charging.customer_answered(conn, due, intent, settings, policy, now)
    )
    account = await ledger.get_account(account.id)
    return page(
        request,
        "billing_confirmed.html",
        **account_context(account, ledger, session),
        outcome=outcome,
        added=ledger.money.to_decimal(due.credits),
        csrf_field=CSRF_FIELD,
    )
