"""The background work of a ledger, beside the API in ``creditsd serve`` and alone in
``creditsd worker``: expiry sweeps, the outbox's delivery, the burn behind runway
warnings, and scheduled reconciliation.

Any number of processes may deliver at once (a message is leased to one of them at a
time). A message that fails is tried again after a backoff that doubles, with jitter,
until its maximum age; then it is dead until someone retries it by hand. Each step is an
entry point: it opens its own transactions.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import datetime, timedelta
from functools import partial

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.autotopup import charging
from creditsd.config import LinkSettings
from creditsd.inprocess import Ledger
from creditsd.integrity import checkpoints
from creditsd.integrity import repository as integrity_repo
from creditsd.integrity import service as integrity
from creditsd.integrity.models import ChainBreak, ChainReport, Checkpoint
from creditsd.kit import db, ids, jsonio
from creditsd.kit.repeats import repeats
from creditsd.stripe.billing import StripeBilling
from creditsd.webhooks import repository as repo
from creditsd.webhooks import signing
from creditsd.webhooks.models import APP, BALANCE_SYNC, GATEWAY, Message

log = logging.getLogger("creditsd")
RUNWAY_REFRESH_SECONDS = 300.0  # how often the burn behind runway warnings is worked out
AUTO_TOPUP_INTERVAL_SECONDS = 5.0  # how soon a queued auto top-up is charged


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
        except db.OUTAGES as exc:
            repeats.say(log, f"expiry sweep waits for the database: {db.described(exc)}")
        except Exception:
            log.exception("expiry sweep failed; trying again in %.0fs", interval)
        await asyncio.sleep(interval)


async def refresh_runways(ledger: Ledger, interval: float = RUNWAY_REFRESH_SECONDS) -> None:
    """Store each account's burn per day for its runway warnings every ``interval`` seconds.

    Errors are logged, never fatal.
    """
    while True:
        try:
            await ledger.refresh_runway_burns()
        except db.OUTAGES as exc:
            repeats.say(log, f"runway refresh waits for the database: {db.described(exc)}")
        except Exception:
            log.exception("runway refresh failed; trying again in %.0fs", interval)
        await asyncio.sleep(interval)


async def reconcile_once(ledger: Ledger, *, full: bool = False) -> integrity.Reconciliation | None:
    """One reconciliation run, unless another process is running one (then None); each
    step its own transaction, so a long history never makes one long transaction."""
    owner = ids.new_id("run")
    database, now, settings = ledger.database, ledger.now(), ledger.settings
    if not await database.write(lambda conn, _now: integrity.take_lease(conn, owner, now)):
        return None
    started = time.monotonic()
    finished: integrity.Reconciliation | None = None
    try:
        written: list[Checkpoint] = []
        while link := await database.write(
            lambda conn, _now: checkpoints.write_checkpoint(conn, now)
        ):
            written.append(link)
            if link.transfers < checkpoints.LINK_TRANSFERS:
                break
        planned = await database.read(
            lambda conn, _now: integrity.plan(conn, now, settings, full=full)
        )
        broken = (await verify_chain(ledger)).broken if planned.whole_chain else None
        finished = await database.write(
            lambda conn, _now: integrity.reconcile(
                conn,
                now,
                settings,
                ledger.outbox,
                planned=planned,
                chain_break=broken,
                written=written,
            ),
        )
    finally:
        duration_ms = round((time.monotonic() - started) * 1000)
        await database.write(
            lambda conn, _now: integrity.end_lease(
                conn, owner, finished=finished, began=now, duration_ms=duration_ms
            ),
        )
    return finished


async def _check_link(
    conn: AsyncConnection, _now: datetime, checkpoint: Checkpoint, previous: Checkpoint | None
) -> ChainBreak | None:
    return await checkpoints.check_link(conn, checkpoint, previous)


async def verify_chain(ledger: Ledger) -> ChainReport:
    """Re-derive the checkpoint chain from the stored transfers, one link per transaction,
    up to its first break."""
    links = await ledger.database.read(lambda conn, _now: integrity_repo.checkpoints(conn))
    previous: Checkpoint | None = None
    for link in links:
        broken = await ledger.database.read(
            partial(_check_link, checkpoint=link, previous=previous)
        )
        if broken is not None:
            return ChainReport(broken, links[-1], sum(link.transfers for link in links))
        previous = link
    return ChainReport(None, previous, sum(link.transfers for link in links))


async def reconcile_every(ledger: Ledger, interval: float) -> None:
    """Reconcile every ``interval`` seconds (the first run at once); errors are logged,
    never fatal."""
    while True:
        try:
            await reconcile_once(ledger)
        except db.OUTAGES as exc:
            repeats.say(log, f"reconciliation waits for the database: {db.described(exc)}")
        except Exception:
            log.exception("reconciliation failed; trying again in %.0fs", interval)
        await asyncio.sleep(interval)


LEASE_MARGIN_SECONDS = 5
LINK_PATHS = {
    "gateway.usage": "/api/internal/webhooks/usage",
    BALANCE_SYNC: "/api/internal/balance/sync",
}


RETRYABLE_4XX = frozenset({408, 425, 429})  # a 4xx that may change by trying again


class Failed(Exception):
    """A delivery that did not get a 2xx; the message says why (never a secret).
    ``retryable`` is false for an answer that trying again cannot change (a 4xx other
    than 408, 425 and 429): the message is dead at once, with the answer recorded."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.retryable = status is None or status >= 500 or status in RETRYABLE_4XX


class Deliverer:
    """Delivers the outbox of one ledger."""

    def __init__(self, ledger: Ledger, http: httpx.AsyncClient | None = None) -> None:
        self.ledger = ledger
        self.settings = ledger.settings
        self._http = http or httpx.AsyncClient()
        self._owns_http = http is None
        # A batch is delivered all at once, so each message is leased for one delivery's
        # time, plus a margin: a worker killed mid-delivery leaves it to the others then.
        slowest = self.settings.webhooks.timeout_seconds
        for link in (self.settings.gateway, self.settings.app_link):
            if link.enabled:
                tries = link.retry_count + 1
                slowest = max(
                    slowest, link.timeout_seconds * tries + link.retry_delay_seconds * (tries - 1)
                )
        self.lease = timedelta(seconds=slowest + LEASE_MARGIN_SECONDS)

    async def close(self) -> None:
        """Close the HTTP connections (when this deliverer made them)."""
        if self._owns_http:
            await self._http.aclose()

    async def run(self) -> None:
        """Deliver forever; errors are logged, never fatal."""
        while True:
            try:
                if await self.deliver_due():
                    continue
            except db.OUTAGES as exc:
                repeats.say(log, f"outbox delivery waits for the database: {db.described(exc)}")
            except Exception:
                log.exception("outbox delivery failed; trying again")
            await asyncio.sleep(self.settings.webhooks.poll_interval)

    async def deliver_due(self) -> int:
        """Deliver one batch of due messages; how many were taken."""
        now = self.ledger.now()

        async def claim(conn: AsyncConnection, _now: datetime) -> list[Message]:
            await self.ledger.outbox.refresh(conn)  # the endpoints the batch is sent to
            batch = await repo.claim(conn, now, now + self.lease, self.settings.webhooks.batch)
            return await self.ledger.outbox.balances_now(conn, batch, now)

        batch = await self.ledger.database.write(claim)
        if batch:
            await asyncio.gather(*(self._deliver(message) for message in batch))
        return len(batch)

    async def _deliver(self, message: Message) -> None:
        try:
            if message.destination == GATEWAY:
                await self._to_link(message, self.settings.gateway)
            elif message.destination == APP:
                await self._to_link(message, self.settings.app_link)
            else:
                await self._to_endpoint(message)
        except Failed as failure:
            await self._failed(message, failure)
        else:
            await self.ledger.database.write(
                lambda conn, now: repo.settle(
                    conn, message.id, status="delivered", next_attempt_at=None, error=None, now=now
                )
            )

    async def _failed(self, message: Message, failure: Failed) -> None:
        now = self.ledger.now()
        webhooks = self.settings.webhooks
        error = str(failure)
        dead = not failure.retryable or (
            now - message.created_at > timedelta(seconds=webhooks.max_age_seconds)
        )
        wait = min(
            webhooks.max_backoff_seconds, webhooks.backoff_seconds * 2 ** (message.attempts - 1)
        )
        wait *= random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not a secret
        log.warning("delivery %s to %s failed (%s)", message.message_id, message.destination, error)
        await self.ledger.database.write(
            lambda conn, _now: repo.settle(
                conn,
                message.id,
                status="dead" if dead else "pending",
                next_attempt_at=None if dead else now + timedelta(seconds=wait),
                error=error[:500],
                now=now,
            )
        )

    async def _post(self, url: str, body: str, headers: dict[str, str], seconds: float) -> None:
        try:
            response = await self._http.post(
                url,
                content=body.encode(),
                headers={"Content-Type": "application/json", **headers},
                timeout=seconds,
            )
        except httpx.HTTPError as exc:
            raise Failed(type(exc).__name__) from exc
        if not response.is_success:
            said = " ".join(response.text[:200].split())
            raise Failed(f"HTTP {response.status_code}: {said}", response.status_code)

    async def _to_endpoint(self, message: Message) -> None:
        endpoint = self.ledger.outbox.endpoint(message.destination)  # refreshed each batch
        if endpoint is None:
            endpoint = await self.ledger.database.read(
                lambda conn, _now: repo.get_endpoint(conn, message.destination)
            )
        if endpoint is None or endpoint.disabled_at is not None:
            raise Failed("the endpoint is disabled")
        body = jsonio.dumps({"id": message.message_id, **message.payload})
        headers = signing.headers(endpoint.secret, message.message_id, int(time.time()), body)
        await self._post(endpoint.url, body, headers, self.settings.webhooks.timeout_seconds)

    async def _to_link(self, message: Message, link: LinkSettings) -> None:
        """Seed 000's client: the secret header, the configured timeout, then
        ``retry_count`` more tries ``retry_delay_seconds`` apart before the outbox's own
        backoff takes over."""
        if not link.enabled or link.base_url is None or link.internal_secret is None:
            raise Failed(f"the {message.destination} link is not enabled")
        url = link.base_url.rstrip("/") + LINK_PATHS[message.event_type]
        headers = {"X-Internal-Secret": link.internal_secret.get_secret_value()}
        body = jsonio.dumps(message.payload)
        for attempt in range(link.retry_count + 1):
            if attempt:
                await asyncio.sleep(link.retry_delay_seconds)
            try:
                await self._post(url, body, headers, link.timeout_seconds)
            except Failed as failure:
                if attempt == link.retry_count or not failure.retryable:
                    raise
            else:
                return


async def charge_auto_topups(ledger: Ledger, billing: StripeBilling) -> list[str]:
    """One pass over the queued auto top-ups: those of rules turned off or paused since are
    canceled; each other is charged (Stripe called between two transactions) and its answer
    recorded; the status each attempt is left in."""
    await ledger.database.write(charging.cancel_stale)
    due = await ledger.database.read(lambda conn, _now: charging.due_attempts(conn))
    return [
        await _settle(ledger, attempt, await charge_attempt(ledger, billing, attempt))
        for attempt in due
    ]


async def charge_attempt(
    ledger: Ledger, billing: StripeBilling, attempt: charging.Due
) -> charging.Answer:
    """Charge one queued attempt at the price stored with it (priced and stored first when
    it has none, so that a retry after a crash or a lost answer sends Stripe the same
    request under the same key); Stripe's answer."""
    if attempt.amount is not None and attempt.currency is not None:
        amount, currency = attempt.amount, attempt.currency
    else:
        quoted = await billing.quote(attempt)
        if quoted is None:
            return charging.Answer(outcome="retry")
        amount, currency = await ledger.database.write(
            lambda conn, now: charging.price(conn, attempt, *quoted, now)
        )
    return await billing.charge_saved_card(attempt, amount, currency)


async def _settle(ledger: Ledger, attempt: charging.Due, answer: charging.Answer) -> str:
    """Record Stripe's answer to one attempt in its own transaction."""
    settings, policy = ledger.settings, ledger.policy
    return await ledger.database.write(
        lambda conn, now: charging.settle(conn, attempt, answer, settings, policy, now)
    )


async def charge_auto_topups_every(ledger: Ledger, interval: float) -> None:
    """Charge the queued auto top-ups every ``interval`` seconds; errors are logged."""
    billing = StripeBilling(ledger)
    try:
        while True:
            try:
                await charge_auto_topups(ledger, billing)
            except db.OUTAGES as exc:
                repeats.say(log, f"auto top-up waits for the database: {db.described(exc)}")
            except Exception:
                log.exception("auto top-up pass failed; trying again in %.0fs", interval)
            await asyncio.sleep(interval)
    finally:
        await billing.close()


async def background(ledger: Ledger) -> None:
    """What runs beside the API (and alone in ``creditsd worker``): the expiry sweeps, the
    outbox's delivery and, unless ``[reconcile] interval_seconds`` is 0, reconciliation."""
    deliverer = Deliverer(ledger)
    settings = ledger.settings
    jobs = [
        sweep_expired(ledger, settings.holds.sweep_interval),
        deliverer.run(),
        refresh_runways(ledger),
    ]
    if settings.reconcile.interval_seconds:
        jobs.append(reconcile_every(ledger, settings.reconcile.interval_seconds))
    if settings.stripe.enabled:
        jobs.append(charge_auto_topups_every(ledger, AUTO_TOPUP_INTERVAL_SECONDS))
    try:
        await asyncio.gather(*jobs)
    finally:
        await deliverer.close()
