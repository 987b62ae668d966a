"""The background work of a ledger: expiry sweeps and outbox delivery. It runs beside the
API in ``creditsd serve`` and alone in ``creditsd worker``."""

from __future__ import annotations

import asyncio
import logging

from creditsd.inprocess import Ledger
from creditsd.webhooks.delivery import Deliverer

log = logging.getLogger("creditsd")


async def sweep_expired(ledger: Ledger, interval: float) -> None:
    """Close expired holds, then lapse expired lots, every ``interval`` seconds.

    Errors are logged, never fatal.
    """
    while True:
        try:
            while await ledger.expire_holds():
                pass
            while await ledger.expire_lots():
                pass
        except Exception:
            log.exception("expiry sweep failed; trying again in %.0fs", interval)
        await asyncio.sleep(interval)


async def background(ledger: Ledger) -> None:
    """What runs beside the API (and alone in ``creditsd worker``): the expiry sweeps and
    the outbox's delivery."""
    deliverer = Deliverer(ledger)
    try:
        await asyncio.gather(
            sweep_expired(ledger, ledger.settings.holds.sweep_interval), deliverer.run()
        )
    finally:
        await deliverer.close()
