"""What each Stripe event does to the ledger. Each function runs in its caller's transaction.

Only whitelisted prices (``[packs.*]``, ``[plans.*]``) ever grant credits, and the amount
always comes from the configuration, never from a client or from Stripe's totals.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd import inbox
from creditsd.audit import repository as audit
from creditsd.config import Settings
from creditsd.inbox import Handled
from creditsd.kit.money import Money
from creditsd.ledger import accounts as ledger_accounts
from creditsd.ledger import lot_repository as lot_repo
from creditsd.ledger import repository as ledger_repo
from creditsd.ledger import service as ledger_service
from creditsd.ledger.errors import AccountNotFound, IdempotencyConflict, not_active
from creditsd.ledger.lots import LotSpec
from creditsd.ledger.models import STRIPE, Metadata
from creditsd.plans.service import grant_allowance
from creditsd.stripe import repository as repo

log = logging.getLogger("creditsd.stripe")

STRIPE_APP = "stripe"  # the app name on the transfers Stripe events make
SOURCE = "stripe"  # Stripe's events in the webhook inbox
INVOICE_PAID = "invoice.payment_succeeded"

StripeEvent = dict[str, Any]  # an event as Stripe sends it
StripeObject = dict[str, Any]  # an object an event carries: a session, charge, invoice…


@dataclass(frozen=True, slots=True)
class Asked:
    """What handling an event needs from Stripe's API, asked before its transaction."""

    lines: list[tuple[str, int]] = field(default_factory=list)  # a paid session's items
    invoice_payment: str | None = None  # the payment intent behind an invoice sent without it


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


def share(total: int, part: int, whole: int) -> int:
    """``total × part / whole`` in whole minor units, rounded half up."""
    if whole <= 0:
        return 0
    return (2 * total * part + whole) // (2 * whole)


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
        description="credit pack purchase",
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
    if early := await _apply_early(conn, payment_id, event_id, settings, policy, now):
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


@dataclass(frozen=True, slots=True)
class MoneyBack:
    """``due`` credits a payment's refund or dispute takes back, under the idempotency
    ``key``, for a ``reason`` (refund, dispute); ``freezer`` holds the freeze it may lay."""

    payment: Any
    due: int
    key: str
    reason: str
    freezer: str


async def take_back(
    conn: AsyncConnection,
    back: MoneyBack,
    settings: Settings,
    policy: ledger_service.Policy,
    now: datetime,
) -> Handled:
    """Claw back what a refund or dispute takes of a payment: from its own lot first, then
    the others.

    What the account has already spent follows ``[stripe] refund_policy``: taken anyway
    (``allow_negative``: the balance goes below zero and the next credits pay it back),
    left unrecovered with the account frozen by ``freezer`` (``block_account``), or
    written off. The transfer's metadata records the policy and the figures.
    """
    payment, due, key, reason, freezer = back.payment, back.due, back.key, back.reason, back.freezer
    money: Money = settings.money
    refund_policy = settings.stripe.refund_policy
    account_id = payment.account_id
    notes: Metadata = {"payment": payment.id, "policy": refund_policy}
    if due <= 0:
        return Handled("nothing_due", notes=notes)
    row = await ledger_repo.get_account_row(conn, account_id, lock=True)  # spendable stays so
    if row is None:  # pragma: no cover - payments belong to accounts
        raise AccountNotFound(account_id)
    held = await ledger_accounts.live_held(conn, account_id, row.held, now)
    spendable = max(int(row.balance) - held, 0)
    taken = due if refund_policy == "allow_negative" else min(due, spendable)
    short = due - taken
    figures = {
        "policy": refund_policy,
        "due": str(money.to_decimal(due)),
        "taken": str(money.to_decimal(taken)),
        "spent_before": str(money.to_decimal(max(due - spendable, 0))),
    }
    if refund_policy != "allow_negative":
        label = "unrecovered" if refund_policy == "block_account" else "written_off"
        figures[label] = str(money.to_decimal(short))
    outcome = Handled("clawed_back", notes={**notes, **figures})
    if taken:
        lot = await lot_repo.find_by_reference(conn, f"stripe:{payment.id}")
        clawback = ledger_service.Movement(
            kind="clawback",
            debit_account_id=account_id,
            credit_account_id=STRIPE,
            amount=taken,
            app=STRIPE_APP,
            idempotency_key=key,
            description=reason,
            metadata={"stripe_payment": payment.id, **figures},
            first_lot=None if lot is None else lot.id,
            system=True,
            forced=refund_policy == "allow_negative",
        )
        transfer = await ledger_service.post_transfer(conn, clawback, policy, now)
        outcome.transfers.append(transfer.id)
    if short and refund_policy == "block_account":
        await ledger_accounts.freeze(
            conn,
            account_id,
            now,
            holder=freezer,
            actor=STRIPE_APP,
            reason=f"{reason}: credits spent",
        )
    await repo.update_payment(conn, payment.id, {"clawed_back": payment.clawed_back + due})
    return outcome


REFUNDED = "charge.refunded"
DISPUTED = "charge.dispute.created"
DISPUTE_CLOSED = "charge.dispute.closed"
# The events that give a disputed payment's credits back, after the dispute took them.
REINSTATING = frozenset({DISPUTE_CLOSED, "charge.dispute.funds_reinstated"})
# The events that take a payment's credits back, or give back what a dispute took.
MONEY_BACK = frozenset({REFUNDED, DISPUTED, *REINSTATING})


async def money_back(
    conn: AsyncConnection,
    event_id: str,
    kind: str,
    item: StripeObject,
    settings: Settings,
    policy: ledger_service.Policy,
    now: datetime,
) -> Handled:
    """A refund or a dispute (``MONEY_BACK``) applied to the payment it is about, or kept,
    when that payment's purchase has not arrived yet, to apply with it."""
    if kind == DISPUTE_CLOSED and item.get("status") != "won":
        notes = {"dispute": str(item.get("id") or ""), "status": str(item.get("status"))[:64]}
        return Handled("not_won", notes=notes)
    payment_id = _id(item.get("payment_intent"))
    if payment_id is None:  # a charge no payment intent made: creditsd never sold it
        return Handled("unknown_payment", notes={"payment": ""})
    payment = await _payment_or_keep(conn, payment_id, event_id)
    if payment is None:
        return Handled("awaiting_purchase", notes={"payment": payment_id})
    if kind == REFUNDED:
        return await refund(conn, payment, item, settings, policy, now)
    if kind == DISPUTED:
        return await dispute(conn, payment, item, settings, policy, now)
    return await reinstate(conn, payment, item, settings, policy, now)


async def _payment_or_keep(conn: AsyncConnection, payment_id: str, event_id: str) -> Any:
    """The payment (locked); else None, the event kept for the payment's purchase.

    A purchase writes the payment's kept row before it reads it (``_apply_early``), and so
    does this before it looks for the payment again: whichever of the two transactions
    comes second waits for the first to commit, then sees what it wrote.
    """
    payment = await repo.get_payment(conn, payment_id, lock=True)
    if payment is not None:
        return payment
    if await repo.keep_early(conn, payment_id, [event_id]):
        payment = await repo.get_payment(conn, payment_id, lock=True)
        if payment is not None:  # its purchase committed while the row waited for it
            await repo.take_early(conn, payment_id)
        return payment
    kept = await repo.lock_early(conn, payment_id)
    if kept is None:  # its purchase took the kept row meanwhile: the payment is there now
        return await repo.get_payment(conn, payment_id, lock=True)
    await repo.set_early(conn, payment_id, [*kept, event_id])
    return None


async def _apply_early(
    conn: AsyncConnection,
    payment_id: str,
    purchase_event: str,
    settings: Settings,
    policy: ledger_service.Policy,
    now: datetime,
) -> list[str]:
    """Apply the refunds and disputes kept for a payment just recorded, each recorded in
    the inbox as handled now; their event ids. A dispute's end comes after its start,
    whatever order they came in."""
    taken = await repo.take_early(conn, payment_id)
    kept = [event for event_id in taken if (event := await inbox.get(conn, SOURCE, event_id))]
    applied = []
    for event in sorted(kept, key=lambda event: event.type in REINSTATING):
        item = event.payload["data"]["object"]
        outcome = await money_back(conn, event.event_id, event.type, item, settings, policy, now)
        outcome.notes["with_purchase"] = purchase_event
        await inbox.mark_handled(conn, SOURCE, event.event_id, outcome.name, outcome.detail(), now)
        applied.append(event.event_id)
    return applied


async def refund(
    conn: AsyncConnection,
    payment: Any,
    charge: StripeObject,
    settings: Settings,
    policy: ledger_service.Policy,
    now: datetime,
) -> Handled:
    """``charge.refunded``: take back credits in proportion to what was refunded so far."""
    payment_id = payment.id
    refunded, charged = int(charge.get("amount_refunded") or 0), int(charge.get("amount") or 0)
    if refunded <= payment.refunded:
        return Handled("already_handled", notes={"payment": payment_id})
    due = share(payment.credits, refunded, charged) - share(
        payment.credits, payment.refunded, charged
    )
    due = min(due, payment.credits - payment.clawed_back)
    await repo.update_payment(conn, payment_id, {"refunded": refunded})
    refund = MoneyBack(
        payment, due, f"stripe:refund:{payment_id}:{refunded}", "refund", f"refund:{payment_id}"
    )
    return await take_back(conn, refund, settings, policy, now)


async def dispute(
    conn: AsyncConnection,
    payment: Any,
    disputed: StripeObject,
    settings: Settings,
    policy: ledger_service.Policy,
    now: datetime,
) -> Handled:
    """``charge.dispute.created``: claw the disputed share back, or freeze the account."""
    freezer = _dispute_freezer(disputed)
    if settings.stripe.dispute_policy == "freeze":
        await ledger_accounts.freeze(
            conn,
            payment.account_id,
            now,
            holder=freezer,
            actor=STRIPE_APP,
            reason="payment disputed",
        )
        return Handled("frozen", notes={"payment": payment.id})
    due = min(
        share(payment.credits, int(disputed.get("amount") or 0), payment.amount),
        payment.credits - payment.clawed_back,
    )
    dispute = MoneyBack(payment, due, f"stripe:dispute:{disputed.get('id')}", "dispute", freezer)
    return await take_back(conn, dispute, settings, policy, now)


async def reinstate(
    conn: AsyncConnection,
    payment: Any,
    disputed: StripeObject,
    settings: Settings,
    policy: ledger_service.Policy,
    now: datetime,
) -> Handled:
    """``charge.dispute.funds_reinstated``, or ``charge.dispute.closed`` as ``won``: give back
    what the dispute took (its clawback, and its freeze), once for both events."""
    dispute_id = str(disputed.get("id") or "")
    payment_id = payment.id
    notes: Metadata = {"dispute": dispute_id, "payment": payment_id}
    lifted = await ledger_accounts.lift_freeze(
        conn,
        payment.account_id,
        now,
        holder=_dispute_freezer(disputed),
        actor=STRIPE_APP,
        reason="dispute won",
    )
    found = await ledger_repo.find_transfer_by_key(conn, STRIPE_APP, f"stripe:dispute:{dispute_id}")
    if found is None:
        return Handled("reinstated" if lifted else "nothing_to_give_back", notes=notes)
    clawback, _fingerprint = found
    reversal = ledger_service.Movement(
        kind="reversal",
        debit_account_id=STRIPE,
        credit_account_id=payment.account_id,
        amount=clawback.amount,
        app=STRIPE_APP,
        idempotency_key=f"stripe:dispute_reinstated:{dispute_id}",
        description="dispute won",
        metadata={"stripe_payment": payment_id, "dispute": dispute_id, "reverses": clawback.id},
        lot=LotSpec("purchase", reference=f"stripe:{payment_id}"),
    )
    transfer = await ledger_service.post_transfer(conn, reversal, policy, now)
    if transfer.replayed:
        return Handled("already_reinstated", notes=notes)
    due = settings.money.to_minor(Decimal((clawback.metadata or {})["due"]))
    await repo.update_payment(conn, payment_id, {"clawed_back": payment.clawed_back - due})
    return Handled("reinstated", [transfer.id], notes)


def _dispute_freezer(disputed: StripeObject) -> str:
    """The holder of the freeze a dispute puts on its account (its won end lifts it)."""
    return f"dispute:{disputed.get('id')}"


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
    if intent := _id(invoice.get("payment_intent")):
        return intent
    for paid in (invoice.get("payments") or {}).get("data") or []:
        if paid.get("status", "paid") == "paid" and (intent := invoice_payment_intent(paid)):
            return intent
    return None


def invoice_payment_intent(paid: StripeObject) -> str | None:
    """The payment intent of one InvoicePayment, expanded or not."""
    return _id((paid.get("payment") or {}).get("payment_intent"))


def _id(value: Any) -> str | None:
    """An object's id, whether Stripe sent the id or the expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value else None
