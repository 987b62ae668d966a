"""Stripe purchases: what a paid Checkout Session or invoice grants. Each function runs in
its caller's transaction.

Only whitelisted prices (``[packs.*]``, ``[plans.*]``) ever grant credits, and the amount
always comes from the configuration, never from a client or from Stripe's totals. A
purchase that names one account while its Stripe customer pays for another grants nothing
and is held for review; the refunds and disputes that came before it are applied with it
(:mod:`creditsd.stripe.refunds`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.audit import repository as audit
from creditsd.autotopup.models import Card
from creditsd.config import Settings
from creditsd.inbox import Handled
from creditsd.ledger import accounts as ledger_accounts
from creditsd.ledger import repository as ledger_repo
from creditsd.ledger import service as ledger_service
from creditsd.ledger.errors import AccountNotFound, IdempotencyConflict, not_active
from creditsd.ledger.lots import LotSpec
from creditsd.ledger.models import STRIPE, Metadata
from creditsd.plans.service import grant_allowance
from creditsd.stripe import refunds
from creditsd.stripe import repository as repo
from creditsd.stripe.events import STRIPE_APP, StripeObject, object_id

log = logging.getLogger("creditsd.stripe")

INVOICE_PAID = "invoice.payment_succeeded"


@dataclass(frozen=True, slots=True)
class Asked:
    """What handling an event needs from Stripe's API, asked before its transaction."""

    lines: list[tuple[str, int]] = field(default_factory=list)  # a paid session's items
    invoice_payment: str | None = None  # the payment intent behind an invoice sent without it
    saved_card: Card | None = None  # the card a setup session saved, for auto top-up


@dataclass(frozen=True, slots=True)
class Priced:
    """The credits a list of Stripe line items buys under this deployment's packs."""

    credits: int
    items: list[Metadata]
    unknown_prices: list[str]


def price_items(lines: list[tuple[str, int]], settings: Settings) -> Priced:
    """Credits for ``(price_id, quantity)`` lines; prices no pack names buy nothing."""
    packs = {pack.price_id: (name, pack) for name, pack in settings.packs.items()}
    money = settings.money
    credits = 0
    items: list[Metadata] = []
    unknown: list[str] = []
    for price_id, quantity in lines:
        if price_id not in packs or quantity < 1:
            unknown.append(price_id)
            continue
        name, pack = packs[price_id]
        each = money.to_minor(pack.credits)
        credits += each * quantity
        items.append({"pack": name, "price_id": price_id, "quantity": quantity})
    return Priced(credits, items, unknown)


async def _account(
    conn: AsyncConnection, name: str | None, customer: str | None, policy: Any, now: datetime
) -> str | None:
    """The account a payment is for: the id the checkout named, else the customer's."""
    if not name and customer:
        name = await repo.account_of_customer(conn, customer)
    if not name:
        return None
    try:
        return await ledger_accounts.resolve_account(conn, name, policy, now)
    except AccountNotFound:
        return None


async def paying_account(
    conn: AsyncConnection, account_name: str, policy: ledger_service.Policy, now: datetime
) -> tuple[str, str | None]:
    """The account a buyer names (created when the policy allows) and the Stripe customer
    it pays as, if it has one yet. A frozen or closed account buys nothing (409)."""
    account_id = await ledger_accounts.resolve_account(conn, account_name, policy, now)
    row = await ledger_repo.get_account_row(conn, account_id)
    if row is not None and row.status != "active":
        raise not_active(account_id, row.status)
    return account_id, await repo.customer_of(conn, account_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class Purchase:
    """A paid payment, as a Checkout Session or an invoice reports it: who it names (an
    account, a Stripe customer), what was paid, and what it bought (``priced``)."""

    payment_id: str
    account: str | None
    customer: str | None
    amount: int
    currency: str
    priced: Priced
    event_id: str
    session_id: str | None = None
    invoice_id: str | None = None
    description: str = "credit pack purchase"  # the transfer's, as the customer's page reads it


async def record_purchase(
    conn: AsyncConnection,
    purchase: Purchase,
    settings: Settings,
    policy: ledger_service.Policy,
    now: datetime,
) -> Handled:
    """Grant what a paid payment bought, once per payment, into a ``purchase`` lot; then
    apply the refunds and disputes of the payment that came before it."""
    payment_id, priced, event_id = purchase.payment_id, purchase.priced, purchase.event_id
    account, customer = purchase.account, purchase.customer
    notes: Metadata = {"payment": payment_id}
    if priced.unknown_prices:
        notes["ignored_prices"] = priced.unknown_prices
    if not priced.credits:
        return Handled("no_known_price", notes=notes)
    account_id = await _account(conn, account, customer, policy, now)
    if account_id is None:
        return Handled("unknown_account", notes=notes)
    payer = await repo.account_of_customer(conn, customer) if customer else None
    if payer is not None and payer != account_id:
        review = await _hold_for_review(conn, purchase, account_id, payer, now)
        return Handled("needs_review", notes={**notes, **review})
    purchased = ledger_service.Movement(
        kind="purchase",
        debit_account_id=STRIPE,
        credit_account_id=account_id,
        amount=priced.credits,
        app=STRIPE_APP,
        idempotency_key=f"stripe:payment:{payment_id}",
        description=purchase.description,
        metadata={
            "stripe_payment": payment_id,
            "packs": ", ".join(f"{item['pack']} × {item['quantity']}" for item in priced.items),
        },
        lot=LotSpec("purchase", reference=f"stripe:{payment_id}"),
    )
    try:
        transfer = await ledger_service.post_transfer(conn, purchased, policy, now)
    except IdempotencyConflict:
        return Handled("conflicting_payment", notes=notes)
    await repo.insert_payment(
        conn,
        {
            "id": payment_id,
            "account_id": account_id,
            "session_id": purchase.session_id,
            "invoice_id": purchase.invoice_id,
            "amount": purchase.amount,
            "currency": purchase.currency,
            "credits": priced.credits,
            "items": priced.items,
            "transfer_id": transfer.id,
            "event_id": event_id,
            "created_at": now,
        },
    )
    if customer:
        await repo.remember_customer(conn, account_id, customer, now)
    if transfer.replayed:
        return Handled("already_granted", [transfer.id], notes)
    if early := await refunds.apply_early(conn, payment_id, event_id, settings, policy, now):
        notes["applied_early"] = early
    return Handled("granted", [transfer.id], notes)


async def _hold_for_review(
    conn: AsyncConnection, purchase: Purchase, account_id: str, payer: str, now: datetime
) -> Metadata:
    """Grant nothing for a purchase that names one account while its Stripe customer pays
    for another: audit it and warn the operator; what they need to decide."""
    review: Metadata = {
        "event": purchase.event_id,
        "payment": purchase.payment_id,
        "session": purchase.session_id,
        "invoice": purchase.invoice_id,
        "account_named": account_id,
        "customer": purchase.customer,
        "customer_account": payer,
    }
    await audit.record(
        conn,
        actor=STRIPE_APP,
        action="stripe.needs_review",
        target=account_id,
        before=None,
        after=review,
        now=now,
    )
    log.warning(
        "Stripe event %s held for review, nothing granted: it names account %s, but its "
        "customer %s pays for account %s",
        purchase.event_id,
        account_id,
        purchase.customer,
        payer,
    )
    return review


async def confirm_payment(conn: AsyncConnection, payment_id: str, now: datetime) -> Handled:
    """``payment_intent.succeeded``: note that Stripe confirmed a payment already granted."""
    payment = await repo.get_payment(conn, payment_id)
    if payment is None:
        return Handled("no_purchase", notes={"payment": payment_id})
    if payment.confirmed_at is None:
        await repo.update_payment(conn, payment_id, {"confirmed_at": now})
    return Handled("confirmed", notes={"payment": payment_id})


def _when(seconds: Any) -> datetime:
    return datetime.fromtimestamp(int(seconds), UTC)


def invoice_lines(invoice: StripeObject) -> list[tuple[str, int, dict[str, Any]]]:
    """``(price_id, quantity, period)`` of each invoice line, in old and new API shapes."""
    lines = []
    for line in (invoice.get("lines") or {}).get("data") or []:
        price = line.get("price") or {}
        price_id = price.get("id") if isinstance(price, dict) else price
        if not price_id:
            details = (line.get("pricing") or {}).get("price_details") or {}
            price_id = details.get("price")
        if price_id:
            lines.append((str(price_id), int(line.get("quantity") or 1), line.get("period") or {}))
    return lines


async def invoice_paid(
    conn: AsyncConnection,
    invoice: StripeObject,
    event_id: str,
    asked: Asked,
    settings: Settings,
    policy: ledger_service.Policy,
    now: datetime,
) -> Handled:
    """``invoice.payment_succeeded``: packs bought by invoice, and subscription periods."""
    customer = invoice.get("customer")
    account = (invoice.get("metadata") or {}).get("creditsd_account")
    lines = invoice_lines(invoice)
    outcome = Handled("handled", notes={"invoice": invoice.get("id")})
    for price_id, _quantity, period in lines:
        if price_id not in settings.plans:
            continue
        account_id = await _account(conn, account, customer, policy, now)
        if account_id is None:
            return Handled("unknown_account", notes=outcome.notes)
        credits = settings.money.to_minor(settings.plans[price_id].credits)
        granted = await grant_allowance(
            conn,
            account_id,
            price_id,
            credits,
            (_when(period.get("start")), _when(period.get("end"))),
            policy,
            now,
        )
        if granted is not None:
            outcome.transfers.append(granted.id)
    packs = [
        (price_id, quantity) for price_id, quantity, _ in lines if price_id not in settings.plans
    ]
    if packs:
        priced = price_items(packs, settings)
        paid = Purchase(
            payment_id=invoice_payment(invoice) or asked.invoice_payment or str(invoice.get("id")),
            account=account,
            customer=customer,
            amount=int(invoice.get("amount_paid") or 0),
            currency=str(invoice.get("currency") or ""),
            priced=priced,
            event_id=event_id,
            invoice_id=invoice.get("id"),
        )
        bought = await record_purchase(conn, paid, settings, policy, now)
        outcome.transfers.extend(bought.transfers)
        outcome.notes.update(bought.notes)
    return outcome


def needs_invoice_payment(invoice: StripeObject, settings: Settings) -> bool:
    """Whether an invoice sells packs but names no payment (API versions from
    2025-03-31.basil leave ``payments`` out of webhooks unless expanded)."""
    sells_packs = any(price not in settings.plans for price, _, _ in invoice_lines(invoice))
    return sells_packs and invoice_payment(invoice) is None


def invoice_payment(invoice: StripeObject) -> str | None:
    """The payment intent that paid an invoice: ``payment_intent`` in API versions up to
    2024-06-20, its paid ``payments`` (InvoicePayment objects) from 2025-03-31.basil on."""
    if intent := object_id(invoice.get("payment_intent")):
        return intent
    for paid in (invoice.get("payments") or {}).get("data") or []:
        if paid.get("status", "paid") == "paid" and (intent := invoice_payment_intent(paid)):
            return intent
    return None


def invoice_payment_intent(paid: StripeObject) -> str | None:
    """The payment intent of one InvoicePayment, expanded or not."""
    return object_id((paid.get("payment") or {}).get("payment_intent"))
