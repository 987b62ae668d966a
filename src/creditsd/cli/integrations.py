"""``creditsd webhooks retry`` and ``creditsd stripe reconcile``."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Annotated

import typer

from creditsd.cli.apps import stripe_app, webhooks_app
from creditsd.cli.common import RUNTIME_FAILURE, Command, cli_actor, err, out, with_ledger

if TYPE_CHECKING:  # the server's modules load inside the commands, so that --help is quick
    from sqlalchemy.ext.asyncio import AsyncConnection

    from creditsd.inprocess import Ledger
    from creditsd.stripe.reconcile import Mismatch
    from creditsd.webhooks.models import Message


@webhooks_app.command("retry", cls=Command)
def webhooks_retry(
    delivery_ids: Annotated[
        list[int], typer.Argument(min=1, max=2**63 - 1, help="Delivery ids to send again.")
    ],
) -> None:
    """Deliver messages again, whatever became of them (GET /v1/webhook-deliveries lists them)."""
    from creditsd.webhooks import service as webhook_service

    async def _retry_delivery(conn: AsyncConnection, now: datetime, delivery_id: int) -> Message:
        return await webhook_service.retry(conn, delivery_id, now, actor=cli_actor())

    async def work(ledger: Ledger) -> None:
        for delivery_id in delivery_ids:
            message = await ledger.database.write(partial(_retry_delivery, delivery_id=delivery_id))
            out.print(f"{message.id}\t{message.event_type}\tto {message.destination}: queued again")

    with_ledger(work)


@stripe_app.command("reconcile", cls=Command)
def stripe_reconcile() -> None:
    """List every mismatch between Stripe events and ledger transfers; exit 1 if any.

    An event that took money without a transfer, a Stripe transfer without its event,
    amounts that differ, events never handled, and refunds or disputes whose purchase
    never came (``purchase_missing``); those whose purchase Stripe may still deliver are
    listed (``awaiting_purchase``) without failing.
    """
    from creditsd.stripe.reconcile import reconcile as reconcile_stripe

    async def work(ledger: Ledger) -> list[Mismatch]:
        now = ledger.now()
        return await ledger.database.read(lambda conn, _now: reconcile_stripe(conn, now))

    found = with_ledger(work)
    if not found:
        out.print("every Stripe event matches the ledger")
        return
    for mismatch in found:  # one line each, tab-separated, for grep and scripts
        print(f"{mismatch.kind}\t{mismatch.reference}\t{mismatch.detail}")
    if failing := [mismatch for mismatch in found if mismatch.fails]:
        err.print(f"{len(failing)} mismatch(es)")
        raise typer.Exit(RUNTIME_FAILURE)
    err.print(f"no mismatch; {len(found)} refund(s) or dispute(s) await their purchase")
