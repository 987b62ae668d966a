"""The asyncio client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, TypeVar

import httpx

from creditsd.client._autotopup import AutoTopup, AutoTopupCardSession
from creditsd.client._base import Amount, BaseClient, Call
from creditsd.client._models import (
    Account,
    AuditRecord,
    AuditRecordPage,
    Capture,
    CheckoutSession,
    Hold,
    Limit,
    LimitState,
    Member,
    MemberPage,
    Pack,
    PortalSession,
    ProxyKey,
    ProxyKeyPage,
    Quote,
    Runway,
    TransactionPage,
    Transfer,
    Usage,
    UsageResult,
    Verification,
    WebhookDelivery,
    WebhookDeliveryPage,
    WebhookEndpoint,
)

T = TypeVar("T")


class AsyncClient(BaseClient):
    """A creditsd client for asyncio; use it as an async context manager or call aclose().

    Failed attempts (network errors, 5xx, 429) are retried up to ``max_retries`` times with
    exponential backoff; every write carries one idempotency key across all its attempts,
    so a retry never charges twice.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 2,
        backoff: float = 0.2,
        transport: httpx.AsyncBaseTransport | None = None,
        app: str | None = None,
    ) -> None:
        super().__init__(
            base_url, api_key, timeout=timeout, max_retries=max_retries, backoff=backoff, app=app
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=self._headers,
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )
        self._sleep = asyncio.sleep

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def _send(self, call: Call[T]) -> T:
        request = self._http.build_request(
            call.method, call.path, params=call.params, content=call.body, headers=call.headers
        )
        attempt = 0
        while True:
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                delay = self._retry_delay_after(exc, call, attempt)
            else:
                retry = self._retry_delay(call, response, attempt)
                if retry is None:
                    return self._answer(call, response)
                delay = retry
            attempt += 1
            if delay > 0:
                await self._sleep(delay)

    # Accounts and transfers ------------------------------------------------------------

    async def get_balance(self, account_id: str) -> Decimal:
        """The credits the account can spend now (its ``available`` figure)."""
        return await self._send(self._get_balance(account_id))

    async def get_account(self, account_id: str) -> Account:
        """The account's balance, held and available credits, aliases and metadata."""
        return await self._send(self._get_account(account_id))

    async def get_runway(self, account_id: str) -> Runway:
        """How long the account's credits last at the rate it spends them (NotFoundError for
        an account that does not exist yet)."""
        return await self._send(self._get_runway(account_id))

    async def initialize_account(
        self,
        account_id: str,
        *,
        initial_grant: Amount | None = None,
        overdraft_limit: Amount | None = None,
        aliases: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
        status: str | None = None,
        low_balance_threshold: Amount | None = None,
        time_zone: str | None = None,
    ) -> Account:
        """Create the account if absent, or apply the settings given.

        ``status`` (``active``, ``frozen`` or ``closed``), ``initial_grant`` and
        ``overdraft_limit`` need an admin key. ``balance.low`` fires when a debit takes the
        balance below ``low_balance_threshold`` (credits; 0: never for this account).
        ``time_zone`` (an IANA name such as ``"Europe/Berlin"``; ``"UTC"`` sets it back)
        is the zone whose days, weeks and months its spend limits count in; None leaves it.
        """
        return await self._send(
            self._initialize_account(
                account_id,
                initial_grant=initial_grant,
                overdraft_limit=overdraft_limit,
                aliases=aliases,
                metadata=metadata,
                status=status,
                low_balance_threshold=low_balance_threshold,
                time_zone=time_zone,
            )
        )

    async def charge(
        self,
        account_id: str,
        amount: Amount | None = None,
        *,
        feature: str | None = None,
        quantity: Amount | None = None,
        usage: Usage | None = None,
        member: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Transfer:
        """Spend credits: an ``amount``, a priced ``feature`` (× ``quantity``) or model ``usage``.

        A ``member`` of the wallet spends within its limits too. Raises
        InsufficientCreditsError (402) when the account cannot afford it, LimitReachedError
        (402) when a spend limit does not allow it, NotFoundError (404 ``member_not_found``)
        for a member the wallet does not have.
        """
        return await self._send(
            self._charge(
                account_id,
                amount,
                feature=feature,
                quantity=quantity,
                usage=usage,
                member=member,
                description=description,
                metadata=metadata,
                idempotency_key=idempotency_key,
            )
        )

    deduct = charge

    async def grant(
        self,
        account_id: str,
        amount: Amount,
        *,
        source: str | None = None,
        expires_at: datetime | None = None,
        priority: int | None = None,
        reason: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Transfer:
        """Give the account credits (needs an admin key), into a lot of their own.

        ``source`` is ``promotion`` (the server's default) or ``adjustment``; what is left of
        the lot lapses at ``expires_at`` (timezone-aware, in the future; None: never), and a
        lower ``priority`` (0 to 1000) is spent first.
        """
        return await self._send(
            self._grant(
                account_id,
                amount,
                source=source,
                expires_at=expires_at,
                priority=priority,
                reason=reason,
                metadata=metadata,
                idempotency_key=idempotency_key,
            )
        )

    add = grant

    async def get_transactions(
        self, account_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> TransactionPage:
        """One page of the account's transfers, newest first."""
        return await self._send(self._get_transactions(account_id, limit=limit, cursor=cursor))

    async def iter_transactions(
        self, account_id: str, *, page_size: int = 100
    ) -> AsyncIterator[Transfer]:
        """Every transfer of the account, newest first, fetching pages as needed."""
        cursor: str | None = None
        while True:
            page = await self.get_transactions(account_id, limit=page_size, cursor=cursor)
            for transfer in page.data:
                yield transfer
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def get_transaction(self, transfer_id: str) -> Transfer:
        """One transfer by id."""
        return await self._send(self._get_transaction(transfer_id))

    async def verify_balance(self, account_id: str) -> Verification:
        """Check the stored balance and held total against the account's history."""
        return await self._send(self._verify_balance(account_id))

    async def rebuild_balance(self, account_id: str) -> Verification:
        """Reset a drifted balance from its transfers (admin); answers the check made before."""
        return await self._send(self._rebuild_balance(account_id))

    # Pricing and usage -------------------------------------------------------------------

    async def quote(
        self,
        *,
        amount: Amount | None = None,
        feature: str | None = None,
        quantity: Amount | None = None,
        usage: Usage | None = None,
    ) -> Quote:
        """What a charge would cost now, without charging."""
        return await self._send(
            self._quote(amount=amount, feature=feature, quantity=quantity, usage=usage)
        )

    async def send_usage(self, events: Iterable[Mapping[str, Any]]) -> list[UsageResult]:
        """Report a batch of usage events; one result per event, in order.

        Each event is ``{"id": …, "account_id": …}`` with a ``feature`` (and ``quantity``)
        or a ``usage``, and optionally the wallet's ``member`` it is for, a ``timestamp``
        (RFC 3339 text) and ``metadata``. An event past a spend limit answers
        ``limit_reached``.
        """
        return await self._send(self._send_usage(events))

    # Credit packs ---------------------------------------------------------------------------

    async def list_packs(self) -> list[Pack]:
        """The credit packs on sale."""
        return await self._send(self._list_packs())

    async def create_checkout_session(
        self,
        account_id: str,
        pack: str,
        *,
        success_url: str,
        cancel_url: str | None = None,
        ui_mode: str = "hosted",
        idempotency_key: str | None = None,
    ) -> CheckoutSession:
        """Start selling ``pack`` to the account through Stripe Checkout (needs an app key).

        ``hosted`` (needs ``cancel_url``) answers a ``url`` to send the buyer to; ``embedded``
        a ``client_secret`` to mount, returning to ``success_url``. The same idempotency key
        gives back the same session. The credits arrive when Stripe reports the payment.
        Raises ValidationError (422 ``unknown_pack``) for a pack not on sale and
        PaymentProviderError when Stripe refuses or fails (502) or cannot be reached (503).
        """
        return await self._send(
            self._create_checkout_session(
                account_id,
                pack,
                success_url=success_url,
                cancel_url=cancel_url,
                ui_mode=ui_mode,
                idempotency_key=idempotency_key,
            )
        )

    # Auto top-up ------------------------------------------------------------------------------

    async def get_auto_topup(self, account_id: str) -> AutoTopup:
        """The account's auto top-up: its rule, saved card and consent, state, last attempt
        and this month's total. NotFoundError (``auto_topup_not_found``) when it has none."""
        return await self._send(self._get_auto_topup(account_id))

    async def set_auto_topup(
        self,
        account_id: str,
        *,
        enabled: bool = True,
        threshold: Amount,
        target_balance: Amount | None = None,
        pack: str | None = None,
        monthly_cap: Amount,
    ) -> AutoTopup:
        """Set the account's rule (needs an app key; audited): when ``available`` falls
        below ``threshold``, buy enough to reach ``target_balance``, or one ``pack`` (give
        exactly one), never more than ``monthly_cap`` credits a calendar month (UTC).
        ``enabled=False`` turns it off at once. Nothing is charged until the customer saves
        a card (:meth:`create_auto_topup_card_session`). Raises ValidationError (422
        ``invalid_auto_topup``, ``unknown_pack``, ``invalid_amount``) for a rule that
        cannot work.
        """
        return await self._send(
            self._set_auto_topup(
                account_id,
                enabled=enabled,
                threshold=threshold,
                target_balance=target_balance,
                pack=pack,
                monthly_cap=monthly_cap,
            )
        )

    async def create_auto_topup_card_session(
        self,
        account_id: str,
        success_url: str,
        cancel_url: str,
        *,
        idempotency_key: str | None = None,
    ) -> AutoTopupCardSession:
        """A Stripe Checkout Session in ``setup`` mode for the customer to save the card
        auto top-up charges (needs an app key): send them to its ``url``. Set the rule first
        (NotFoundError ``auto_topup_not_found`` otherwise); PaymentProviderError when Stripe
        refuses or cannot be reached.
        """
        return await self._send(
            self._create_auto_topup_card_session(
                account_id, success_url, cancel_url, idempotency_key
            )
        )

    # The billing page -----------------------------------------------------------------------

    async def create_portal_session(
        self, account_id: str, return_url: str, *, member: str | None = None
    ) -> PortalSession:
        """A short-lived link to the account's billing page, for its signed-in user (needs an
        app key): redirect their browser to its ``url``; ``return_url`` is the page's way
        back. Raises NotFoundError for an unknown account when accounts are not created on
        first use; asking never creates one. With ``member``, the link opens that member's
        page of the wallet (their limits' allowance); a member the wallet does not have is
        NotFoundError ``member_not_found``.
        """
        return await self._send(self._create_portal_session(account_id, return_url, member))

    # Holds ------------------------------------------------------------------------------

    async def hold(
        self,
        account_id: str,
        amount: Amount | None = None,
        *,
        feature: str | None = None,
        quantity: Amount | None = None,
        usage: Usage | None = None,
        member: str | None = None,
        expires_in: int | None = None,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Hold:
        """Reserve credits for ``expires_in`` seconds (server default 900) until captured.

        A hold for a ``member`` needs room under its limits as a charge does, and counts
        against them while open.
        """
        return await self._send(
            self._hold(
                account_id,
                amount,
                feature=feature,
                quantity=quantity,
                usage=usage,
                member=member,
                expires_in=expires_in,
                description=description,
                metadata=metadata,
                idempotency_key=idempotency_key,
            )
        )

    async def capture(
        self,
        hold_id: str,
        amount: Amount | None = None,
        *,
        feature: str | None = None,
        quantity: Amount | None = None,
        usage: Usage | None = None,
        final: bool = True,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Capture:
        """Charge the actual cost against a hold; a final capture gives back the rest."""
        return await self._send(
            self._capture(
                hold_id,
                amount,
                feature=feature,
                quantity=quantity,
                usage=usage,
                final=final,
                description=description,
                metadata=metadata,
                idempotency_key=idempotency_key,
            )
        )

    async def extend(self, hold_id: str, expires_in: int) -> Hold:
        """Keep an open hold alive for ``expires_in`` more seconds from now."""
        return await self._send(self._extend(hold_id, expires_in))

    async def release(self, hold_id: str) -> Hold:
        """Give back what the hold reserves; releasing twice is harmless."""
        return await self._send(self._release(hold_id))

    async def get_hold(self, hold_id: str) -> Hold:
        """The hold as it stands now."""
        return await self._send(self._get_hold(hold_id))

    # Team wallets: members and spend limits ----------------------------------------------

    async def put_member(
        self,
        account_id: str,
        member_id: str,
        *,
        display_name: str | None = None,
        limits: Iterable[Limit] | None = None,
    ) -> Member:
        """Add a member to the wallet, or update it. ``limits`` replaces its whole set (a
        limit whose amount and period stay keeps its window's spend); None leaves them.
        Raises ValidationError (422 ``limits_not_nested``) unless day ≤ week ≤ month ≤
        lifetime.
        """
        return await self._send(
            self._put_member(account_id, member_id, display_name=display_name, limits=limits)
        )

    async def list_members(
        self, account_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> MemberPage:
        """One page of the wallet's members by id, each limit with its current window's spend."""
        return await self._send(self._list_members(account_id, limit=limit, cursor=cursor))

    async def iter_members(self, account_id: str, *, page_size: int = 100) -> AsyncIterator[Member]:
        """Every member of the wallet by id, fetching pages as needed."""
        cursor: str | None = None
        while True:
            page = await self.list_members(account_id, limit=page_size, cursor=cursor)
            for member in page.data:
                yield member
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def remove_member(self, account_id: str, member_id: str) -> Member:
        """Remove a member and its limits; its open holds still settle, its past spend stays
        attributed to it. Answers the member as it was."""
        return await self._send(self._remove_member(account_id, member_id))

    async def list_limits(self, account_id: str) -> list[LimitState]:
        """Every limit on the wallet (its own, its members', apps' and proxy keys'), with
        what its current window has spent and held, and when it resets."""
        return await self._send(self._list_limits(account_id))

    async def set_wallet_limits(self, account_id: str, limits: Iterable[Limit]) -> list[LimitState]:
        """Set the limits on all the wallet's spend, whoever spends; answers every limit on
        the wallet."""
        return await self._send(self._set_wallet_limits(account_id, limits))

    async def set_app_limits(
        self, account_id: str, app: str, limits: Iterable[Limit]
    ) -> list[LimitState]:
        """Set the limits on what one ``app`` (an API key's name) spends from the wallet;
        answers every limit on the wallet."""
        return await self._send(self._set_app_limits(account_id, app, limits))

    async def set_proxy_key_limits(self, key_id: str, limits: Iterable[Limit]) -> list[LimitState]:
        """Set the period limits on what calls through one proxy key spend (beside the
        lifetime limit it was minted with); answers every limit on its account."""
        return await self._send(self._set_proxy_key_limits(key_id, limits))

    # Proxy keys (app key) -----------------------------------------------------------------

    async def mint_proxy_key(
        self,
        account_id: str,
        *,
        member: str | None = None,
        limit: Amount | None = None,
        expires_in: int | None = None,
        name: str | None = None,
        rate_limit: int | None = None,
    ) -> ProxyKey:
        """A key that pays for one account's calls to ``/openai/v1`` (the API key of an
        OpenAI SDK pointed there), within ``limit`` credits, each call ``member``'s when
        given (NotFoundError ``member_not_found`` unless the account has it now). Its
        ``secret`` is in this answer only. Not retried: a key whose answer was lost is
        listed by :meth:`list_proxy_keys`, to be revoked."""
        return await self._send(
            self._mint_proxy_key(
                account_id,
                member=member,
                limit=limit,
                expires_in=expires_in,
                name=name,
                rate_limit=rate_limit,
            )
        )

    async def list_proxy_keys(
        self, account_id: str | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> ProxyKeyPage:
        """One page of proxy keys (of one account, when given), newest first, revoked and
        expired ones included."""
        return await self._send(self._list_proxy_keys(account_id, limit=limit, cursor=cursor))

    async def iter_proxy_keys(
        self, account_id: str | None = None, *, page_size: int = 100
    ) -> AsyncIterator[ProxyKey]:
        """Every proxy key (of one account, when given), newest first, fetching pages as
        needed."""
        cursor: str | None = None
        while True:
            page = await self.list_proxy_keys(account_id, limit=page_size, cursor=cursor)
            for key in page.data:
                yield key
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def revoke_proxy_key(self, key_id: str) -> ProxyKey:
        """Stop a proxy key paying for new calls (calls it began still settle); revoking
        twice is harmless."""
        return await self._send(self._revoke_proxy_key(key_id))

    # Webhooks (admin) ---------------------------------------------------------------------

    async def create_webhook_endpoint(
        self,
        url: str,
        events: Iterable[str],
        *,
        description: str | None = None,
        idempotency_key: str | None = None,
    ) -> WebhookEndpoint:
        """Send signed webhooks of ``events`` (``charge.succeeded``, ``balance.low``, …) to ``url``.

        The answer holds the signing ``secret`` in full: keep it. A retry with the same
        idempotency key answers the same endpoint.
        """
        return await self._send(
            self._create_webhook_endpoint(
                url, events, description=description, idempotency_key=idempotency_key
            )
        )

    async def list_webhook_endpoints(self) -> list[WebhookEndpoint]:
        """Every endpoint, disabled ones included, oldest first, their secrets masked."""
        return await self._send(self._list_webhook_endpoints())

    async def disable_webhook_endpoint(self, endpoint_id: str) -> WebhookEndpoint:
        """Stop sending to the endpoint; its past deliveries stay listed."""
        return await self._send(self._disable_webhook_endpoint(endpoint_id))

    async def list_webhook_deliveries(
        self,
        *,
        destination: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> WebhookDeliveryPage:
        """One page of deliveries, newest first: to one ``destination`` (an endpoint id, or
        ``gateway``), in one ``status`` (``pending``, ``delivered`` or ``dead``)."""
        return await self._send(
            self._list_webhook_deliveries(
                destination=destination, status=status, limit=limit, cursor=cursor
            )
        )

    async def iter_webhook_deliveries(
        self,
        *,
        destination: str | None = None,
        status: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[WebhookDelivery]:
        """Every delivery that matches, newest first, fetching pages as needed."""
        cursor: str | None = None
        while True:
            page = await self.list_webhook_deliveries(
                destination=destination, status=status, limit=page_size, cursor=cursor
            )
            for delivery in page.data:
                yield delivery
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def retry_webhook_delivery(self, delivery_id: int) -> WebhookDelivery:
        """Deliver a message again (a dead one, or one its receiver lost), with the same
        ``webhook-id``; answers it back in ``pending``."""
        return await self._send(self._retry_webhook_delivery(delivery_id))

    async def list_audit_records(
        self,
        *,
        target: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> AuditRecordPage:
        """One page of the audit log, newest first (admin key): only records with this
        exact ``target``, ``actor`` and ``action``, made in ``[since, until)``."""
        return await self._send(
            self._list_audit_records(
                target=target,
                actor=actor,
                action=action,
                since=since,
                until=until,
                limit=limit,
                cursor=cursor,
            )
        )

    async def iter_audit_records(
        self,
        *,
        target: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[AuditRecord]:
        """Every audit record that matches, newest first, fetching pages as needed."""
        cursor: str | None = None
        while True:
            page = await self.list_audit_records(
                target=target,
                actor=actor,
                action=action,
                since=since,
                until=until,
                limit=page_size,
                cursor=cursor,
            )
            for record in page.data:
                yield record
            if page.next_cursor is None:
                return
            cursor = page.next_cursor
