"""Stripe events against ledger transfers: every mismatch, for ``creditsd stripe reconcile``
and the console's reconciliation page."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd import inbox
from creditsd.ledger import repository as ledger_repo
from creditsd.ledger.models import Transfer
from creditsd.stripe import repository as repo
from creditsd.stripe.events import SOURCE, STRIPE_APP

# Outcomes of a paid checkout or invoice that took money without granting credits.
_UNGRANTED = {"no_known_price", "unknown_account", "conflicting_payment"}
# How long Stripe retries an event whose delivery failed (live mode): a refund or dispute
# kept longer than this for its purchase will not see it come.
STRIPE_RETRIES = timedelta(days=3)


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One thing that does not add up, with the ids to look at."""

    # event_without_transfer, transfer_without_event, amount_differs, unhandled_event,
    # needs_review, purchase_missing; awaiting_purchase (not a failure yet)
    kind: str
    reference: str
    detail: str

    @property
    def fails(self) -> bool:
        """Whether it is wrong now, rather than waiting for Stripe's next delivery."""
        return self.kind != "awaiting_purchase"


async def reconcile(conn: AsyncConnection, now: datetime) -> list[Mismatch]:
    """Compare handled Stripe events, recorded payments and Stripe-made transfers; list
    the refunds and disputes still kept for their purchase."""
    events: dict[str, inbox.StoredEvent] = {}
    async for page in inbox.pages(conn, SOURCE):
        events.update((event.event_id, event) for event in page)
    transfers = {t.id: t for t in await ledger_repo.transfers_of_app(conn, STRIPE_APP)}
    payments = {payment.id: payment for payment in await repo.all_payments(conn)}
    # Events also make transfers of other apps (a plan's allowance is creditsd's own).
    named = {t for event in events.values() for t in (event.detail or {}).get("transfers", [])}
    in_ledger = await ledger_repo.existing_transfer_ids(conn, named)

    found = [
        *_event_mismatches(events.values(), in_ledger),
        *_transfer_mismatches(transfers.values(), payments, events),
        *_payment_mismatches(payments.values(), transfers),
    ]
    for early in await repo.all_early(conn):
        for event_id in early.event_ids:
            found.append(_kept(events[event_id], early.payment_id, now))
    return found


def _event_mismatches(
    events: Iterable[inbox.StoredEvent], in_ledger: set[str]
) -> Iterator[Mismatch]:
    """Events never handled, held for review, that took money without granting credits,
    or that name transfers the ledger lacks."""
    for event in events:
        if event.handled_at is None:
            refused = f" (refused: {event.outcome})" if event.outcome else ""
            yield Mismatch(
                "unhandled_event", event.event_id, f"{event.type} never handled{refused}"
            )
            continue
        if event.outcome == "needs_review":
            yield Mismatch("needs_review", event.event_id, _review(event.detail or {}))
        if event.outcome in _UNGRANTED:
            yield Mismatch(
                "event_without_transfer", event.event_id, f"{event.type}: {event.outcome}"
            )
        for transfer_id in (event.detail or {}).get("transfers", []):
            if transfer_id not in in_ledger:
                yield Mismatch(
                    "event_without_transfer",
                    event.event_id,
                    f"{event.type} made {transfer_id}, which the ledger lacks",
                )


def _transfer_mismatches(
    transfers: Iterable[Transfer], payments: dict[str, Any], events: dict[str, inbox.StoredEvent]
) -> Iterator[Mismatch]:
    """Stripe-made transfers with no event behind their payment, and purchases of another
    amount than their payment bought."""
    for transfer in transfers:
        payment_id = (transfer.metadata or {}).get("stripe_payment")
        payment = payments.get(payment_id or "")
        if payment is None or payment.event_id not in events:
            yield Mismatch(
                "transfer_without_event",
                transfer.id,
                f"{transfer.kind} of {transfer.amount} for payment {payment_id or '?'} "
                "has no Stripe event behind it",
            )
        elif transfer.kind == "purchase" and transfer.amount != payment.credits:
            yield Mismatch(
                "amount_differs",
                transfer.id,
                f"purchase of {transfer.amount} but payment {payment.id} bought {payment.credits}",
            )


def _payment_mismatches(
    payments: Iterable[Any], transfers: dict[str, Transfer]
) -> Iterator[Mismatch]:
    """Payments whose grant the ledger lacks, and payments clawed back more than their
    refunds and disputes were due."""
    for payment in payments:
        if payment.transfer_id not in transfers:
            yield Mismatch(
                "event_without_transfer",
                payment.event_id,
                f"payment {payment.id} granted {payment.transfer_id}, which the ledger lacks",
            )
        taken = sum(
            t.amount if t.kind == "clawback" else -t.amount
            for t in transfers.values()
            if t.kind in {"clawback", "reversal"}
            and (t.metadata or {}).get("stripe_payment") == payment.id
        )
        if taken > payment.clawed_back:
            yield Mismatch(
                "amount_differs",
                payment.id,
                f"clawbacks took {taken}, refunds and disputes were due {payment.clawed_back}",
            )


def _kept(event: inbox.StoredEvent, payment_id: str, now: datetime) -> Mismatch:
    """A refund or dispute kept for its payment's purchase: waiting within Stripe's
    retries, missing past them."""
    at = f"{event.received_at:%Y-%m-%d %H:%M} UTC"
    received = f"{event.type} for payment {payment_id}, received {at}"
    if now - event.received_at <= STRIPE_RETRIES:
        return Mismatch("awaiting_purchase", event.event_id, f"{received}, awaits its purchase")
    return Mismatch(
        "purchase_missing",
        event.event_id,
        f"{received}: its purchase never came, and Stripe retries for {STRIPE_RETRIES.days} days",
    )


def _review(detail: dict[str, Any]) -> str:
    """Why a payment was held for review, in one line."""
    return (
        f"payment {detail.get('payment')} names account {detail.get('account_named')}, but "
        f"customer {detail.get('customer')} pays for {detail.get('customer_account')}: "
        "nothing granted"
    )
