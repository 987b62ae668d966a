"""Stripe's money going back: a refund or a dispute takes a payment's credits back (as
``[stripe] refund_policy`` and ``dispute_policy`` say), a won dispute gives back what it
took, and one that comes before its payment's purchase is kept to apply with it. Each
function runs in its caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd import inbox
from creditsd.config import Settings
from creditsd.inbox import Handled
from creditsd.kit.money import Money
from creditsd.ledger import accounts as ledger_accounts
from creditsd.ledger import lot_repository as lot_repo
from creditsd.ledger import repository as ledger_repo
from creditsd.ledger import service as ledger_service
from creditsd.ledger.errors import AccountNotFound
from creditsd.ledger.lots import LotSpec
from creditsd.ledger.models import STRIPE, Metadata
from creditsd.stripe import repository as repo
from creditsd.stripe.events import SOURCE, STRIPE_APP, StripeObject, object_id

REFUNDED = "charge.refunded"
DISPUTED = "charge.dispute.created"
DISPUTE_CLOSED = "charge.dispute.closed"
# The events that give a disputed payment's credits back, after the dispute took them.
REINSTATING = frozenset({DISPUTE_CLOSED, "charge.dispute.funds_reinstated"})
# The events that take a payment's credits back, or give back what a dispute took.
MONEY_BACK = frozenset({REFUNDED, DISPUTED, *REINSTATING})


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
    payment_id = object_id(item.get("payment_intent"))
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

    A purchase writes the payment's kept row before it reads it (``apply_early``), and so
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


async def apply_early(
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


def share(total: int, part: int, whole: int) -> int:
    """``total × part / whole`` in whole minor units, rounded half up."""
    if whole <= 0:
        return 0
    return (2 * total * part + whole) // (2 * whole)
