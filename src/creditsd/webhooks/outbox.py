"""What each ledger change sends, written to the outbox in the change's own transaction.

Signed webhooks go to the endpoints that asked for the event. Of seed 000's messages, an
app (``[app_link]``) hears of every charge creditsd billed (the usage payload) and a gateway
(``[gateway]``) of every balance that changed (a balance sync), except the changes the
link made itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.autotopup import trigger as autotopup
from creditsd.config import Settings
from creditsd.gateway.service import GATEWAY_APP, to_dollars
from creditsd.kit import ids
from creditsd.kit.money import plain
from creditsd.ledger.limits import LimitWarning
from creditsd.ledger.models import ExpiredHold, Transfer, is_system, transfer_view
from creditsd.ledger.repository import aliases_of, stored_figures
from creditsd.ledger.runway import RunwayWarning
from creditsd.ledger.statements import Message
from creditsd.pricing.service import PriceBook
from creditsd.webhooks import models
from creditsd.webhooks import repository as repo
from creditsd.webhooks.models import APP, BALANCE_SYNC, GATEWAY, Endpoint

REFRESH_SECONDS = 5.0  # how long a process trusts its list of endpoints
# Seed 000's counts of the catalog's disjoint price lines: reasoning is output and writes of
# every lifetime (``cache_write_1h_tokens``) are writes, as providers report them.
_TOKEN_LINES = {
    "input_tokens": "inputTokens",
    "output_tokens": "outputTokens",
    "reasoning_tokens": "outputTokens",
    "cache_read_tokens": "cacheReadTokens",
    "cache_write_tokens": "cacheWriteTokens",
}
_BILLED = {"charge", "capture"}
SYNCS_SKIPPED = Counter(
    "creditsd_gateway_syncs_skipped_total",
    "Balance syncs not sent to the gateway: the account has no numeric id or alias.",
)

OutboundEvent = tuple[str, str | None, dict[str, Any]]  # type, account, data


class Outbox:
    """The ledger's observer: turns changes into outbox messages."""

    def __init__(
        self, settings: Settings, prices: PriceBook, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._prices = prices
        self._clock = clock
        self._subscribers: dict[str, list[Endpoint]] = {}
        self._endpoints: dict[str, Endpoint] = {}
        self._loaded_at: float | None = None

    # Which endpoints listen

    async def refresh(self, conn: AsyncConnection) -> None:
        """Reload the enabled endpoints in the caller's transaction when the list is older
        than a few seconds."""
        if self._loaded_at is not None and self._clock() - self._loaded_at <= REFRESH_SECONDS:
            return
        subscribers: dict[str, list[Endpoint]] = {}
        enabled = await repo.endpoints(conn)
        for endpoint in enabled:
            for event in endpoint.events:
                subscribers.setdefault(event, []).append(endpoint)
        self._subscribers, self._loaded_at = subscribers, self._clock()
        self._endpoints = {endpoint.id: endpoint for endpoint in enabled}

    def forget(self) -> None:
        """Reload the endpoints in the next transaction that writes or delivers messages
        (after one was added, changed or disabled)."""
        self._loaded_at = None

    def endpoint(self, endpoint_id: str) -> Endpoint | None:
        """An enabled endpoint as of the last look (None: disabled, or not seen yet)."""
        return self._endpoints.get(endpoint_id)

    def wants_transfers(self) -> bool:
        """Whether a transfer may send anything (as of the last look at the endpoints)."""
        links = self._settings.gateway.enabled or self._settings.app_link.enabled
        return links or bool(self._subscribers)

    # What a change sends

    async def after_transfers(
        self, conn: AsyncConnection, transfers: list[Transfer], now: datetime
    ) -> list[Message]:
        """The messages a batch of transfers sends (the engine writes them with it)."""
        await self.refresh(conn)
        if not self.wants_transfers():
            return []
        # What the messages need of the accounts, read once for the batch.
        debited = sorted(
            {t.debit_account_id for t in transfers if not is_system(t.debit_account_id)}
        )
        thresholds = (
            await repo.low_balance_thresholds(conn, debited)
            if "balance.low" in self._subscribers
            else {}
        )
        linked = self._settings.gateway.enabled or self._settings.app_link.enabled
        users: dict[str, int | str] = {}
        rate = Decimal(0)
        if linked:  # the dollar figures seed 000 shows, at the catalog's rate
            users = await _gateway_users(conn, _customers(transfers))
            rate = (await self._prices.current(conn, now)).settings.credits_per_usd
        rows = []
        for transfer in transfers:
            if self._subscribers:  # the links alone need none of the events' bodies
                for event in self._events(transfer, thresholds):
                    rows += self._messages_for(event, now)
            if linked:
                rows += self._link_rows(transfer, users, rate, now)
        return rows

    async def after_names(
        self, conn: AsyncConnection, account_id: str, balance: int, now: datetime
    ) -> list[Message]:
        """A balance sync for an account that has just been given names (the sign-up grant
        was written before them): the gateway learns of it once it has a numeric one."""
        if not self._settings.gateway.enabled:
            return []
        user = (await _gateway_users(conn, [account_id]))[account_id]
        if not isinstance(user, int):
            return []
        rate = (await self._prices.current(conn, now)).settings.credits_per_usd
        dollars = to_dollars(balance, rate, self._settings.money)
        sync = {"user_id": user, "balance_usd": dollars}
        return [_row(GATEWAY, BALANCE_SYNC, account_id, sync, now)]

    async def balances_now(
        self, conn: AsyncConnection, batch: list[models.Message], now: datetime
    ) -> list[models.Message]:
        """The messages a worker just claimed, each balance sync carrying its account's
        balance as it is now, whenever it was written (and stored so, to show what is sent):
        a retry, a late delivery or one retried by hand never sets the gateway back."""
        syncs = {m.account_id for m in batch if m.event_type == BALANCE_SYNC and m.account_id}
        if not syncs:
            return batch
        figures = await stored_figures(conn, syncs)
        rate = (await self._prices.current(conn, now, publish_first=False)).settings.credits_per_usd
        fresh = []
        for message in batch:
            if message.event_type == BALANCE_SYNC and message.account_id in figures:
                balance = int(figures[message.account_id].balance)
                dollars = to_dollars(balance, rate, self._settings.money)
                if dollars != message.payload.get("balance_usd"):
                    payload = {**message.payload, "balance_usd": dollars}
                    await repo.set_payload(conn, message.id, payload)
                    fresh.append(replace(message, payload=payload))
                    continue
            fresh.append(message)
        return fresh

    async def after_holds_expired(
        self, conn: AsyncConnection, expired: list[ExpiredHold], now: datetime
    ) -> list[Message]:
        """``hold.expired`` for each hold the sweeper closed."""
        await self.refresh(conn)
        money = self._settings.money
        rows = []
        for hold in expired:
            data = {
                "hold_id": hold.hold_id,
                "account_id": hold.account_id,
                "released": money.to_decimal(hold.released),
            }
            rows += self._messages_for(("hold.expired", hold.account_id, data), now)
        return rows

    async def after_balances(
        self, conn: AsyncConnection, available: dict[str, int], short: set[str], now: datetime
    ) -> list[Message]:
        """Queue the auto top-ups these balances call for; ``auto_topup.cap_reached`` for
        those the monthly cap stops, once a month (the attempt tells its own outcome)."""
        capped = await autotopup.queue_attempts(conn, available, short, self._settings, now)
        await self.refresh(conn)
        return [
            row
            for account_id, data in capped.items()
            for row in self._messages_for(("auto_topup.cap_reached", account_id, data), now)
        ]

    async def after_limit_warnings(
        self, conn: AsyncConnection, warnings: list[LimitWarning], now: datetime
    ) -> list[Message]:
        """``limit.warning`` for each limit window whose spend has just reached one of the
        percentages ``[webhooks] limit_warning_percentages`` names."""
        await self.refresh(conn)
        money = self._settings.money
        rows = []
        for tally, percent in warnings:
            limit = tally.limit
            data = {
                "account_id": limit.account_id,
                "limit_id": limit.id,
                "limit_source": limit.scope,
                "subject": limit.subject or None,  # the member, app or proxy key; None: wallet
                "period": limit.period,
                "mode": limit.mode,
                "limit": money.to_decimal(limit.amount),
                "spent": money.to_decimal(tally.spent),
                "remaining": money.to_decimal(max(limit.amount - tally.spent, 0)),
                "percent": percent,
                "window_start": tally.window.start,
                "resets_at": tally.window.end,
            }
            rows += self._messages_for(("limit.warning", limit.account_id, data), now)
        return rows

    async def after_runway_warnings(
        self, conn: AsyncConnection, warnings: list[RunwayWarning], now: datetime
    ) -> list[Message]:
        """``balance.runway_low`` for each account whose runway has just fallen below 7, 3
        or 1 days (``level``), with the runway as the change left it."""
        await self.refresh(conn)
        money = self._settings.money
        rows = []
        for account_id, level, runway in warnings:
            data = {
                "account_id": account_id,
                "level_days": level,
                "available": money.to_decimal(runway.available),
                "burn_per_day": money.to_decimal(runway.burn_per_day or 0),
                "method": runway.method,
                "runway_days": None if runway.days is None else plain(runway.days),
                "runs_out_at": runway.runs_out_at,
            }
            rows += self._messages_for(("balance.runway_low", account_id, data), now)
        return rows

    async def after_event(
        self,
        conn: AsyncConnection,
        event_type: str,
        account_id: str | None,
        data: dict[str, Any],
        now: datetime,
    ) -> list[Message]:
        """One event of a domain's own, to the endpoints that asked for it."""
        await self.refresh(conn)
        return self._messages_for((event_type, account_id, data), now)

    def _messages_for(self, event: OutboundEvent, now: datetime) -> list[Message]:
        """One outbox row per endpoint that asked for the event."""
        event_type, account, data = event
        payload = {"type": event_type, "timestamp": now, "data": data}
        return [
            _row(endpoint.id, event_type, account, payload, now)
            for endpoint in self._subscribers.get(event_type, [])
        ]

    def _events(self, transfer: Transfer, thresholds: dict[str, int | None]) -> list[OutboundEvent]:
        money = self._settings.money
        customer = transfer.customer_account_id
        data = {"transfer": transfer_view(transfer, money)}
        events: list[OutboundEvent] = []
        if transfer.kind in _BILLED:
            events.append(("charge.succeeded", customer, data))
            pricing = transfer.pricing or {}
            if "event_id" in pricing or pricing.get("source") == "gateway":
                events.append(("usage.recorded", customer, data))
        if transfer.kind == "purchase":
            events.append(("topup.completed", customer, data))
        if transfer.kind == "expiry":
            events.append(("grant.expired", customer, data))
        if not is_system(transfer.debit_account_id) and transfer.debit_balance_after is not None:
            after = transfer.debit_balance_after
            before = after + transfer.amount
            account = transfer.debit_account_id
            figures = {
                "account_id": account,
                "balance": money.to_decimal(after),
                "transfer_id": transfer.id,
            }
            if before > 0 >= after:
                events.append(("balance.depleted", account, figures))
            if "balance.low" in self._subscribers:
                threshold = self._settings.low_balance_threshold_of(thresholds.get(account))
                if threshold and before >= threshold > after:
                    figures = {**figures, "threshold": money.to_decimal(threshold)}
                    events.append(("balance.low", account, figures))
        return events

    def _link_rows(
        self, transfer: Transfer, users: dict[str, int | str], rate: Decimal, now: datetime
    ) -> list[Message]:
        """Seed 000's messages: to the app (``[app_link]``) the usage creditsd billed, the
        gateway's included, with a ``requestId`` its retries repeat; to the gateway
        (``[gateway]``) the balance each account now has, when the account has the numeric
        id the gateway keeps (else the sync is skipped and counted, never queued for a 400).
        Neither hears of its own call: the app's syncs bill nothing, and the gateway's
        usage sends it no sync (it has already taken the cost)."""
        money = self._settings.money
        to_gateway = self._settings.gateway.enabled and not _from_gateway(transfer)
        rows = []
        for account in _customers([transfer]):
            user = users[account]
            balance = transfer.balance_after(account)
            dollars = None if balance is None else to_dollars(balance, rate, money)
            billed = transfer.kind in _BILLED and account == transfer.debit_account_id
            if billed and self._settings.app_link.enabled:
                usage = _usage_payload(
                    transfer, user, _cost(money.to_decimal(transfer.amount), rate)
                )
                if dollars is not None:
                    usage["sub2api_balance_usd"] = dollars
                row = _row(APP, "gateway.usage", account, usage, now)
                usage["requestId"] = row["message_id"]
                rows.append(row)
            if dollars is not None and to_gateway:
                if isinstance(user, int):
                    sync = {"user_id": user, "balance_usd": dollars}
                    rows.append(_row(GATEWAY, BALANCE_SYNC, account, sync, now))
                else:
                    SYNCS_SKIPPED.inc()
        return rows


def _customers(transfers: list[Transfer]) -> list[str]:
    """The customer accounts these transfers touch, in id order."""
    return sorted(
        {
            side
            for t in transfers
            for side in (t.debit_account_id, t.credit_account_id)
            if not is_system(side)
        }
    )


async def _gateway_users(conn: AsyncConnection, customers: list[str]) -> dict[str, int | str]:
    """The gateway's id of each account: its decimal id or alias (an int, as sub2api keeps
    user ids), else its id."""
    aliases = await aliases_of(conn, customers) if customers else {}
    users: dict[str, int | str] = {}
    for account_id in customers:
        names = [account_id, *aliases.get(account_id, [])]
        decimal = next((name for name in names if name.isdigit()), None)
        users[account_id] = int(decimal) if decimal is not None else account_id
    return users


def _cost(credits: Decimal, rate: Decimal) -> Decimal:
    """Credits as dollars, to 8 places (the gateway bills fractions of a cent)."""
    with localcontext() as context:
        context.prec = 60
        return plain((credits / rate).quantize(Decimal("1e-8"), rounding=ROUND_HALF_UP))


def _from_gateway(transfer: Transfer) -> bool:
    """Whether the gateway's own call made the transfer: a usage post it billed (the
    app's balance syncs come in under the same app name)."""
    return transfer.app == GATEWAY_APP and transfer.kind in _BILLED


def _usage_payload(transfer: Transfer, user: int | str, dollars: Decimal) -> dict[str, Any]:
    """Seed 000's usage body for a charge creditsd billed: a gateway's post passes on its
    own counts and multiplier (kept as the charge's price stamp), a priced charge its
    catalog lines'."""
    pricing = transfer.pricing or {}
    tokens = dict.fromkeys(_TOKEN_LINES.values(), 0)
    if _from_gateway(transfer):
        tokens = {field: int(pricing.get(field) or 0) for field in tokens}
        multiplier = pricing.get("rateMultiplier", 1)
    else:
        for line in pricing.get("lines", []):
            item = str(line.get("item"))
            cache_write = item.startswith("cache_write_")
            field = "cacheWriteTokens" if cache_write else _TOKEN_LINES.get(item)
            if field is not None:
                tokens[field] += int(line.get("quantity", 0))
        multiplier = pricing.get("rate_multiplier", 1)
    model = (
        pricing.get("model")
        or pricing.get("feature")
        or pricing.get("meter")
        or transfer.description
        or transfer.kind
    )
    return {
        "event": "usage",
        "userId": user,
        "model": model,
        **tokens,
        "cost": dollars,
        "totalCost": dollars,
        "rateMultiplier": multiplier,
        "timestamp": int(transfer.created_at.timestamp() * 1000),
        "apiKey": "",
    }


def _row(
    destination: str, event_type: str, account: str | None, payload: dict[str, Any], now: datetime
) -> Message:
    return {
        "destination": destination,
        "message_id": ids.new_id("msg"),
        "event_type": event_type,
        "account_id": account,
        "payload": payload,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
