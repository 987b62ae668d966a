"""Stripe as creditsd uses it: Checkout for credit packs and verified webhooks.

Nothing here opens a database transaction: the endpoints call Stripe between theirs, and
hand ``handle`` the transaction that marks an event handled in the inbox.
"""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import stripe
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.autotopup import charging
from creditsd.autotopup import service as autotopup
from creditsd.autotopup.charging import Answer, Due
from creditsd.autotopup.models import Card
from creditsd.config import PackSettings
from creditsd.inbox import Handled
from creditsd.kit.errors import InvalidEvent, InvalidSignature
from creditsd.ledger import repository as ledger_repo
from creditsd.ledger.errors import IdempotencyConflict
from creditsd.ledger.runtime import Runtime
from creditsd.stripe import purchases, refunds
from creditsd.stripe.errors import (
    PaymentProviderError,
    PaymentProviderUnreachable,
    StripeNotConfigured,
    UnknownPack,
)
from creditsd.stripe.events import EventEnvelope, StripeEvent, StripeObject, object_id

log = logging.getLogger("creditsd.stripe")

_UI_MODES = {"hosted": "hosted_page", "embedded": "embedded_page"}


@dataclass(frozen=True, slots=True)
class Checkout:
    """A Checkout Session for one credit pack."""

    id: str
    account_id: str
    pack: str
    credits: int
    ui_mode: str
    url: str | None
    client_secret: str | None


@dataclass(frozen=True, slots=True)
class CheckoutState:
    """Where a Checkout Session stands: ``status`` open, complete or expired."""

    id: str
    account_id: str | None
    status: str
    paid: bool


class StripeBilling:
    """Checkout and webhooks for one ledger."""

    def __init__(self, ledger: Runtime) -> None:
        self.ledger = ledger
        self.settings = ledger.settings.stripe
        self._client: stripe.StripeClient | None = None
        self._http: stripe.HTTPXClient | None = None

    @property
    def client(self) -> stripe.StripeClient:
        """The Stripe API client (made on first use)."""
        if self._client is None:
            if self.settings.secret_key is None:
                raise StripeNotConfigured("secret_key")
            self._http = stripe.HTTPXClient(timeout=self.settings.timeout_seconds)
            addresses: Any = {"api": self.settings.api_base} if self.settings.api_base else None
            self._client = stripe.StripeClient(
                self.settings.secret_key.get_secret_value(),
                base_addresses=addresses,
                http_client=self._http,
                max_network_retries=2,
            )
        return self._client

    async def close(self) -> None:
        """Close the HTTP connections to Stripe."""
        if self._http is not None:
            await self._http.close_async()  # type: ignore[no-untyped-call]

    # Checkout

    def pack(self, pack: str) -> PackSettings:
        """A pack on sale, by name."""
        packs = self.ledger.settings.packs
        if pack not in packs:
            raise UnknownPack(pack, sorted(packs))
        return packs[pack]

    async def create_customer(self, account_id: str) -> str:
        """A Stripe customer for the account (Stripe's idempotency key keeps two racing
        requests to one customer)."""
        customer = await self._call(
            self.client.v1.customers.create_async(
                params={"metadata": {"creditsd_account": account_id}},
                options={"idempotency_key": f"creditsd:customer:{account_id}"},
            )
        )
        return str(customer.id)

    async def create_checkout(
        self,
        account_id: str,
        customer: str,
        pack: str,
        *,
        success_url: str,
        cancel_url: str | None,
        ui_mode: str,
        app: str,
        idempotency_key: str | None,
    ) -> Checkout:
        """A Checkout Session selling ``pack`` to ``account_id``, as Stripe's ``customer``."""
        on_sale = self.pack(pack)
        metadata = {"creditsd_account": account_id, "creditsd_pack": pack}
        params: Any = {
            "mode": "payment",
            "line_items": [{"price": on_sale.price_id, "quantity": 1}],
            "customer": customer,
            "client_reference_id": account_id,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "ui_mode": _UI_MODES[ui_mode],
        }
        if ui_mode == "embedded":
            params["return_url"] = success_url
        else:
            params |= {"success_url": success_url, "cancel_url": cancel_url}
        options: Any = {}
        if idempotency_key:
            options["idempotency_key"] = f"creditsd:{app}:checkout:{idempotency_key}"
        session = await self._call(
            self.client.v1.checkout.sessions.create_async(params=params, options=options)
        )
        return Checkout(
            id=session.id,
            account_id=account_id,
            pack=pack,
            credits=self.ledger.money.to_minor(on_sale.credits),
            ui_mode=ui_mode,
            url=session.url,
            client_secret=session.client_secret,
        )

    async def create_card_session(
        self,
        account_id: str,
        customer: str,
        *,
        success_url: str,
        cancel_url: str,
        app: str,
        idempotency_key: str | None,
    ) -> Checkout:
        """A hosted Checkout Session in ``setup`` mode where the customer saves the card
        auto top-up charges; ``app`` is who asked, recorded with the consent."""
        metadata = {"creditsd_account": account_id, "creditsd_purpose": "auto_topup"}
        metadata["creditsd_app"] = app
        params: Any = {
            "mode": "setup",
            "currency": self.ledger.settings.stripe.currency,
            "customer": customer,
            "client_reference_id": account_id,
            "metadata": metadata,
            "setup_intent_data": {"metadata": metadata},
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
        options: Any = {}
        if idempotency_key:
            options["idempotency_key"] = f"creditsd:{app}:card:{idempotency_key}"
        try:
            session = await self._call(
                self.client.v1.checkout.sessions.create_async(params=params, options=options)
            )
        except PaymentProviderError as exc:  # the key, sent before with another request: 409
            if isinstance(exc.__cause__, stripe.IdempotencyError):
                raise IdempotencyConflict(str(idempotency_key)) from exc
            raise
        return Checkout(
            id=session.id,
            account_id=account_id,
            pack="",
            credits=0,
            ui_mode="hosted",
            url=session.url,
            client_secret=None,
        )

    async def saved_card(self, session: StripeObject) -> Card | None:
        """The card a completed setup session saved, from its SetupIntent and PaymentMethod."""
        intent_id = object_id(session.get("setup_intent"))
        if session.get("status") != "complete" or intent_id is None:
            return None
        params: Any = {"expand": ["payment_method"]}
        intent = (
            await self._call(self.client.v1.setup_intents.retrieve_async(intent_id, params))
        ).to_dict()
        method = intent.get("payment_method")
        if intent.get("status") != "succeeded" or not isinstance(method, dict):
            return None
        card = method.get("card") or {}
        return Card(
            customer_id=str(intent.get("customer") or session.get("customer")),
            payment_method_id=str(method["id"]),
            fingerprint=card.get("fingerprint"),
            last4=card.get("last4"),
            brand=card.get("brand"),
        )

    async def price_of(self, due: Due) -> tuple[int, str]:
        """What an attempt's credits cost, in the currency's minor unit, rounded up: at the
        Stripe price of its pack, or, for a target balance, of the smallest pack on sale."""
        packs = self.ledger.settings.packs
        if due.pack is None and not packs:
            raise StripeNotConfigured("packs (auto top-up prices credits by a pack)")
        name = due.pack or min(packs, key=lambda pack: packs[pack].credits)
        pack = self.pack(name)
        price = await self._call(self.client.v1.prices.retrieve_async(pack.price_id))
        pack_credits = self.ledger.money.to_minor(pack.credits)
        amount = -(-int(price.unit_amount) * due.credits // pack_credits)
        return amount, str(price.currency)

    async def quote(self, due: Due) -> tuple[int, str] | None:
        """:meth:`price_of`, or None when Stripe failed, was out of reach or rate limited
        (to try again)."""
        try:
            return await self.price_of(due)
        except PaymentProviderError:  # logged by _call
            return None

    async def charge_saved_card(self, due: Due, amount: int, currency: str) -> Answer:
        """Charge the saved card off-session for a queued attempt, confirmed at once, under
        an idempotency key of the attempt (a retry after a crash, at the same price, gets
        Stripe's first answer). Stripe failing, unreachable or rate limiting answers
        ``retry``."""
        try:
            metadata = {"creditsd_account": due.account_id, "creditsd_auto_topup": due.id}
            params: Any = {
                "amount": amount,
                "currency": currency,
                "customer": due.customer_id,
                "payment_method": due.payment_method_id,
                "off_session": True,
                "confirm": True,
                "metadata": metadata,
            }
            options: Any = {"idempotency_key": f"creditsd:auto_topup:{due.id}"}
            intent = await self.client.v1.payment_intents.create_async(params, options)
        except stripe.CardError as exc:
            return _card_error(exc)
        except stripe.StripeError as exc:
            log.warning("auto top-up %s waits: %s", due.id, _why(exc))
            return Answer(outcome="retry")
        status = str(intent.status)
        outcome = status if status in {"succeeded", "processing"} else "authentication_required"
        return Answer(
            outcome=outcome,
            payment_intent_id=str(intent.id),
            amount=int(intent.amount),
            currency=str(intent.currency),
        )

    async def confirm_on_session(
        self, intent_id: str, payment_method_id: str, return_url: str
    ) -> dict[str, Any]:
        """Confirm an auto top-up's PaymentIntent again with the customer at hand, with the
        saved card and a ``return_url`` their bank sends them back to: the PaymentIntent as
        Stripe leaves it (``requires_action`` with ``next_action.redirect_to_url``, or
        settled at once; the intent a card error carries when the card is refused)."""
        params: Any = {"payment_method": payment_method_id, "return_url": return_url}

        async def confirm() -> dict[str, Any]:
            try:
                intent = await self.client.v1.payment_intents.confirm_async(intent_id, params)
            except stripe.CardError as exc:
                body = exc.json_body if isinstance(exc.json_body, dict) else {}
                refused = (body.get("error") or {}).get("payment_intent")
                if not isinstance(refused, dict):
                    raise
                return refused
            found: dict[str, Any] = intent.to_dict()
            return found

        confirmed: dict[str, Any] = await self._call(confirm())
        return confirmed

    async def payment_intent(self, intent_id: str) -> dict[str, Any]:
        """A PaymentIntent as Stripe has it now."""
        intent = await self._call(self.client.v1.payment_intents.retrieve_async(intent_id))
        found: dict[str, Any] = intent.to_dict()
        return found

    async def find_checkout(self, session_id: str) -> CheckoutState | None:
        """Where a Checkout Session stands, as Stripe tells it; None when Stripe has no such
        session."""
        session = await self._call(
            _none_if_missing(self.client.v1.checkout.sessions.retrieve_async(session_id))
        )
        if session is None:
            return None
        found = session.to_dict()
        return CheckoutState(
            id=found["id"],
            account_id=found.get("client_reference_id")
            or (found.get("metadata") or {}).get("creditsd_account"),
            status=str(found.get("status")),
            paid=found.get("payment_status") in {"paid", "no_payment_required"},
        )

    @staticmethod
    async def _call(request: Any) -> Any:
        try:
            return await request
        except stripe.APIConnectionError as exc:
            log.warning("Stripe could not be reached: %s", unreachable(exc))
            raise PaymentProviderUnreachable from exc
        except stripe.StripeError as exc:
            log.warning("%s", refused(exc))
            raise PaymentProviderError(exc.request_id) from exc

    # Webhooks

    def verify(self, payload: bytes, signature: str | None) -> StripeEvent:
        """The event a webhook carries, once its ``Stripe-Signature`` checks out and its body
        has the shape of an event (any field beyond ``id``, ``type``, ``livemode`` and
        ``data.object`` is kept as sent)."""
        secret = self.settings.webhook_secret
        if secret is None:
            raise StripeNotConfigured("webhook_secret")
        if not signature:
            raise InvalidSignature
        try:
            stripe.WebhookSignature.verify_header(
                payload, signature, secret.get_secret_value(), self.settings.webhook_tolerance
            )
        except (stripe.SignatureVerificationError, ValueError) as exc:
            raise InvalidSignature from exc
        try:
            event: StripeEvent = json.loads(payload)
        except ValueError as exc:
            raise InvalidEvent("the body is not JSON") from exc
        try:
            EventEnvelope.model_validate(event)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"]) or "the body"
            raise InvalidEvent(f"not a Stripe event: {where}: {problem['msg']}") from exc
        return event

    def mode_mismatch(self, event: StripeEvent) -> bool:
        """Whether the event's ``livemode`` differs from the configured key's mode."""
        mode = self.settings.livemode
        return mode is not None and event["livemode"] is not mode

    async def ask(self, event: StripeEvent) -> purchases.Asked:
        """What handling the event needs from Stripe's API (a paid session's line items, the
        payment behind an invoice sent without it), asked outside any transaction."""
        kind, item = event["type"], event["data"]["object"]
        if _paid_pack_session(event):
            items = await self._call(
                self.client.v1.checkout.sessions.line_items.list_async(item["id"], {"limit": 100})
            )
            lines = [(entry.price.id, int(entry.quantity or 0)) for entry in items.data]
            return purchases.Asked(lines=lines)
        if kind == purchases.INVOICE_PAID and purchases.needs_invoice_payment(
            item, self.ledger.settings
        ):
            params: Any = {"invoice": str(item.get("id")), "status": "paid", "limit": 1}
            listed = await self._call(self.client.v1.invoice_payments.list_async(params))
            paid = [purchases.invoice_payment_intent(entry.to_dict()) for entry in listed.data]
            return purchases.Asked(invoice_payment=next((p for p in paid if p), None))
        if kind == "checkout.session.completed" and item.get("mode") == "setup":
            return purchases.Asked(saved_card=await self.saved_card(item))
        return purchases.Asked()

    async def handle(
        self, conn: AsyncConnection, event: StripeEvent, asked: purchases.Asked, now: datetime
    ) -> Handled:
        """What one verified event does to the ledger, in the transaction that marks it
        handled (``asked``: what :meth:`ask` learned from Stripe beforehand)."""
        settings, policy = self.ledger.settings, self.ledger.policy
        kind, item = event["type"], event["data"]["object"]
        if kind == "checkout.session.completed" and item.get("mode") == "setup":
            return await autotopup.card_saved(conn, item, asked.saved_card, policy, now)
        if kind in {"checkout.session.completed", "checkout.session.async_payment_succeeded"}:
            if item.get("mode") != "payment":
                return Handled("not_a_pack_purchase", notes={"session": item.get("id")})
            if not _paid_pack_session(event):
                return Handled("awaiting_payment", notes={"session": item.get("id")})
            paid = purchases.Purchase(
                payment_id=item.get("payment_intent") or item["id"],
                account=item.get("client_reference_id")
                or (item.get("metadata") or {}).get("creditsd_account"),
                customer=item.get("customer"),
                amount=int(item.get("amount_total") or 0),
                currency=str(item.get("currency") or ""),
                priced=purchases.price_items(asked.lines, settings),
                event_id=event["id"],
                session_id=item["id"],
            )
            bought = await purchases.record_purchase(conn, paid, settings, policy, now)
            if bought.name == "granted" and paid.account is not None:
                account_id = await ledger_repo.resolve_name(conn, paid.account)
                if account_id is not None:
                    await autotopup.resume(conn, account_id, "a purchase went through", policy, now)
            return bought
        if kind == "payment_intent.succeeded":
            topped_up = await charging.intent_succeeded(conn, item, settings, policy, now)
            if topped_up is not None and topped_up.name == "granted":
                account_id = str(item["metadata"]["creditsd_account"])
                await charging.lift_needs_action(conn, account_id, policy, now)
            return topped_up or await purchases.confirm_payment(conn, item["id"], now)
        if kind in {charging.INTENT_FAILED, charging.INTENT_CANCELED}:
            ended = await charging.intent_ended(conn, kind, item, settings, policy, now)
            return ended or Handled("ignored")
        if kind in refunds.MONEY_BACK:
            return await refunds.money_back(conn, event["id"], kind, item, settings, policy, now)
        if kind == purchases.INVOICE_PAID:
            return await purchases.invoice_paid(
                conn, item, event["id"], asked, settings, policy, now
            )
        return Handled("ignored")


def _card_error(exc: stripe.CardError) -> Answer:
    """A decline, or the bank asking the customer to authenticate, as Stripe reports it."""
    body = exc.json_body if isinstance(exc.json_body, dict) else {}
    error = body.get("error") or {}
    intent = error.get("payment_intent") or {}
    outcome = "authentication_required" if exc.code == "authentication_required" else "declined"
    return Answer(
        outcome=outcome,
        payment_intent_id=intent.get("id"),
        decline_code=error.get("decline_code"),
        advice_code=error.get("advice_code"),
    )


def _why(exc: Exception) -> str:
    if isinstance(exc, stripe.APIConnectionError):
        return unreachable(exc)
    return refused(exc) if isinstance(exc, stripe.StripeError) else str(exc)


def unreachable(exc: BaseException) -> str:
    """Why a request did not reach Stripe, and where it was going, from the errors beneath
    the client's: ``connection refused (api.stripe.com)``, ``timed out (127.0.0.1)``."""
    chain: list[BaseException] = []
    found: BaseException | None = exc
    while found is not None and found not in chain:
        chain.append(found)
        found = found.__cause__ or found.__context__
    host = next((e.request.url.host for e in chain if isinstance(e, httpx.RequestError)), None)
    if any(isinstance(e, httpx.TimeoutException) for e in chain):
        cause = "timed out"
    else:
        causes = (words for e in chain for kind, words in _OS_CAUSES if isinstance(e, kind))
        cause = next(causes, "no connection")
    return f"{cause} ({host or 'unknown host'})"


_OS_CAUSES = (
    (ConnectionRefusedError, "connection refused"),
    (ConnectionResetError, "connection reset"),
    (socket.gaierror, "host name not found"),
)


def refused(exc: stripe.StripeError) -> str:
    """What Stripe answered, for the log, in its own codes and never its message (which may
    quote what was sent): ``Stripe refused the request: resource_missing (HTTP 400, request
    req_…)``; an answer of 500 and above is Stripe failing, not refusing."""
    error = exc.error
    code = exc.code or (error.type if error is not None else None) or type(exc).__name__
    status = exc.http_status
    verb = "failed" if status is not None and status >= 500 else "refused"
    return f"Stripe {verb} the request: {code} (HTTP {status}, request {exc.request_id})"


async def _none_if_missing(request: Any) -> Any:
    """What Stripe answers, or None when it says there is no such object (404)."""
    try:
        return await request
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404:
            return None
        raise


def _paid_pack_session(event: StripeEvent) -> bool:
    """A Checkout Session event whose one-off payment is complete."""
    session = event["data"]["object"]
    return (
        event["type"].startswith("checkout.session.")
        and session.get("mode") == "payment"
        and session.get("payment_status") in {"paid", "no_payment_required"}
    )
