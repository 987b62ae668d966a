"""The fake Stripe's saved cards: ``setup`` Checkout Sessions that save one, off-session
PaymentIntents that charge it (each ending as scripted), and how a payment left
``processing`` ends."""

from __future__ import annotations

import copy
import secrets
import threading
import time
from typing import Any, Protocol

from tests.stripe.wire import JSON, LostAnswer, StripeError, missing, required


class Account(Protocol):
    """What saved cards need of the fake's account."""

    objects: dict[str, JSON]
    intent_outcomes: list[str]
    _intent_metadata: dict[str, JSON]
    _lock: threading.RLock

    def _new(self, kind: str, prefix_or_id: str, **fields: Any) -> JSON: ...

    def _get(self, kind: str, oid: str) -> JSON: ...

    def _pay(self, amount: int, customer: str | None, metadata: JSON, *, paid: bool) -> JSON: ...


class SavedCards:
    """Saving a card and charging it off-session (mixed into ``FakeStripe``)."""

    def _create_setup_session(self: Account, params: JSON) -> JSON:
        """A hosted session that saves a payment method for later (``mode=setup``): no line
        items, a currency (for the payment methods it offers), no payment."""
        if "line_items" in params:
            raise StripeError("You cannot pass `line_items` in `setup` mode.", "line_items")
        if "currency" not in params and "payment_method_types" not in params:
            raise required("currency")
        customer = params.get("customer")
        if customer is not None and self.objects.get(customer, {}).get("object") != "customer":
            raise missing("customer", customer, "customer", 400)
        passed = ("client_reference_id", "success_url", "cancel_url")
        session = self._new(
            "checkout.session",
            "cs_test_",
            mode="setup",
            ui_mode=params.get("ui_mode", "hosted_page"),
            status="open",
            payment_status="no_payment_required",
            amount_subtotal=None,
            amount_total=None,
            currency=params.get("currency"),
            customer=customer,
            metadata=params.get("metadata", {}),
            payment_intent=None,
            setup_intent=None,
            client_secret=None,
            expires_at=int(time.time()) + 24 * 3600,
            **{name: params.get(name) for name in passed},
        )
        session["url"] = f"https://checkout.stripe.com/c/pay/{session['id']}"
        intent_data = params.get("setup_intent_data", {})
        self._intent_metadata[session["id"]] = intent_data.get("metadata", {})
        return session

    def _create_intent(self: Account, params: JSON) -> JSON:
        """A PaymentIntent confirmed at once with a saved card, ending as the next of
        :attr:`intent_outcomes` says (succeeded when none is scripted). A decline or a
        request for authentication is a 402 ``card_error`` carrying the intent, as Stripe
        answers it."""
        for name in ("amount", "currency", "payment_method", "customer"):
            if name not in params:
                raise required(name)
        outcome = self.intent_outcomes.pop(0) if self.intent_outcomes else "succeeded"
        if outcome == "rate_limited":  # refused before anything was made
            message = "Too many requests hit the API too quickly."
            raise StripeError(message, status=429, code="rate_limit", kind="invalid_request_error")
        if outcome == "key_in_use":  # another request with the key is running: nothing made
            message = "There is currently another in-progress request using this idempotency key."
            code = "idempotency_key_in_use"
            raise StripeError(message, status=409, code=code, kind="invalid_request_error")
        kind, _, advice = outcome.partition(":")
        paid = kind in ("succeeded", "lost")
        amount, metadata = int(params["amount"]), params.get("metadata", {})
        intent = self._pay(amount, params["customer"], metadata, paid=paid)
        intent.update(payment_method=params["payment_method"], last_payment_error=None)
        if kind in ("succeeded", "processing"):
            return copy.deepcopy(intent)
        if kind == "lost":
            intent.update(status="succeeded", amount_received=amount)
            raise LostAnswer(copy.deepcopy(intent))
        decline_code, _, advice_code = advice.partition(":")
        code = "authentication_required" if kind == "authentication_required" else "card_declined"
        # Off-session, a card whose bank wants the customer is left wanting a payment method,
        # as any decline; confirming it again on-session brings the check (requires_action).
        raise declined(self.objects, intent, code, decline_code or None, advice_code or None)

    def complete_setup(
        self: Account, session_id: str, *, last4: str = "4242", fingerprint: str | None = None
    ) -> JSON:
        """The customer saved a card in a ``mode=setup`` session: a PaymentMethod attached
        to the session's customer and a succeeded SetupIntent (``usage: off_session``)
        naming it; the completed session."""
        with self._lock:
            session = self._get("checkout.session", session_id)
            if session["mode"] != "setup" or session["status"] != "open":
                raise ValueError(f"{session_id} is not an open setup session")
            card = {"brand": "visa", "last4": last4, "exp_month": 12, "exp_year": 2030}
            card["fingerprint"] = fingerprint or secrets.token_hex(8)
            card.update(country="US", funding="credit")
            method = self._new("payment_method", "pm_", type="card", card=card)
            method.update(customer=session["customer"], metadata={}, billing_details={})
            intent = self._new("setup_intent", "seti_", status="succeeded", usage="off_session")
            intent.update(customer=session["customer"], payment_method=method["id"])
            intent.update(metadata=copy.deepcopy(self._intent_metadata[session_id]))
            intent.update(payment_method_types=["card"], last_setup_error=None)
            session.update(status="complete", setup_intent=intent["id"])
            return copy.deepcopy(session)

    def succeed_payment(self: Account, intent_id: str) -> JSON:
        """A payment left ``processing`` has succeeded (``payment_intent.succeeded``); the
        intent."""
        with self._lock:
            intent = self._get("payment_intent", intent_id)
            if intent["status"] != "processing":
                raise ValueError(f"{intent_id} is {intent['status']}, not processing")
            intent.update(status="succeeded", amount_received=intent["amount"])
            self._get("charge", intent["latest_charge"]).update(paid=True, status="succeeded")
            return copy.deepcopy(intent)

    def fail_payment(
        self: Account,
        intent_id: str,
        decline_code: str | None = None,
        advice_code: str | None = None,
        *,
        code: str = "card_declined",
    ) -> JSON:
        """A payment left ``processing`` failed after all (``payment_intent.payment_failed``):
        the intent wants a new payment method; the intent."""
        with self._lock:
            intent = self._get("payment_intent", intent_id)
            if intent["status"] != "processing":
                raise ValueError(f"{intent_id} is {intent['status']}, not processing")
            _fail(self.objects, intent, code, decline_code, advice_code)
            return copy.deepcopy(intent)

    def cancel_payment(self: Account, intent_id: str, reason: str = "automatic") -> JSON:
        """Stripe (``automatic``) or the merchant canceled an unfinished payment
        (``payment_intent.canceled``); the intent."""
        with self._lock:
            intent = self._get("payment_intent", intent_id)
            if intent["status"] in ("succeeded", "canceled"):
                raise ValueError(f"{intent_id} is already {intent['status']}")
            intent.update(status="canceled", canceled_at=int(time.time()))
            intent["cancellation_reason"] = reason
            return copy.deepcopy(intent)


def _fail(
    objects: dict[str, JSON],
    intent: JSON,
    code: str,
    decline_code: str | None,
    advice_code: str | None,
) -> None:
    """Fail the intent's charge and write why in ``last_payment_error`` as Stripe does:
    ``decline_code`` null when the issuer gave none, ``advice_code`` only when it gave
    one."""
    objects[intent["latest_charge"]].update(status="failed", paid=False)
    error: JSON = {"type": "card_error", "code": code, "decline_code": decline_code}
    error.update(message="Your card was declined.", charge=intent["latest_charge"])
    error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    method = objects.get(intent.get("payment_method") or "")
    if method is not None:
        error["payment_method"] = copy.deepcopy(method)
    if advice_code:
        error["advice_code"] = advice_code
    intent.update(status="requires_payment_method", amount_received=0)
    intent["last_payment_error"] = error


def declined(
    objects: dict[str, JSON],
    intent: JSON,
    code: str,
    decline_code: str | None,
    advice_code: str | None,
) -> StripeError:
    """Fail ``intent`` (:func:`_fail`): the 402 ``card_error`` carrying it that Stripe
    answers."""
    _fail(objects, intent, code, decline_code, advice_code)
    error = StripeError("Your card was declined.", status=402, code=code, kind="card_error")
    error.body["error"] = copy.deepcopy(intent["last_payment_error"])
    error.body["error"]["payment_intent"] = copy.deepcopy(intent)
    return error
