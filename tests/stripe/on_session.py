"""The fake Stripe's on-session confirmation: a PaymentIntent the bank wanted authenticated,
confirmed again with the customer at hand (``requires_action`` with
``next_action.redirect_to_url``), and the bank's check the browser is sent to, served at
Stripe's path (``/3d_secure_2/authenticate/pi_…/…``) on the fake's own address."""

from __future__ import annotations

import copy
import re
import secrets
from html import escape
from typing import Protocol
from urllib.parse import parse_qsl, urlencode

from tests.stripe.saved_cards import Account, declined
from tests.stripe.wire import JSON, StripeError, missing

HOOKS = "https://hooks.stripe.com"  # where Stripe sends a customer for the bank's check
BANK_PATH = re.compile(r"/3d_secure_2/authenticate/(pi_\w+)/(\w+)(/complete)?")


class Confirming(Account, Protocol):
    """What on-session confirmation needs of the fake's account."""

    confirm_outcomes: list[str]

    @property
    def api_base(self) -> str: ...


class OnSession:
    """Confirming a PaymentIntent on-session and the bank's check (mixed into
    ``FakeStripe``)."""

    def _confirm_intent(self: Confirming, intent_id: str, params: JSON) -> JSON:
        """Confirm a PaymentIntent again, the customer at hand: with a ``return_url`` the
        bank's check (``requires_action``, ``next_action.redirect_to_url``), else Stripe.js's
        (``use_stripe_sdk``); or as :attr:`confirm_outcomes` scripts it."""
        intent = self._get("payment_intent", intent_id)
        if intent["status"] not in ("requires_payment_method", "requires_confirmation"):
            raise StripeError(
                "You cannot confirm this PaymentIntent because it has a status of "
                f"{intent['status']}.",
                code="payment_intent_unexpected_state",
            )
        method = params.get("payment_method") or intent.get("payment_method")
        if self.objects.get(method or "", {}).get("object") != "payment_method":
            raise missing("payment_method", str(method), "payment_method", 400)
        outcome = self.confirm_outcomes.pop(0) if self.confirm_outcomes else "requires_action"
        kind, _, decline_code = outcome.partition(":")
        intent.update(payment_method=method, last_payment_error=None)
        if kind == "succeeded":
            _settle(self, intent, paid=True)
            return copy.deepcopy(intent)
        if kind == "declined":
            raise declined(self.objects, intent, "card_declined", decline_code or None, None)
        return_url = params.get("return_url")
        if return_url is None:
            action: JSON = {
                "type": "use_stripe_sdk",
                "use_stripe_sdk": {"type": "three_d_secure_redirect"},
            }
        else:
            nonce = secrets.token_hex(8)
            url = f"{HOOKS}/3d_secure_2/authenticate/{intent_id}/{nonce}"
            action = {
                "type": "redirect_to_url",
                "redirect_to_url": {"url": url, "return_url": return_url},
            }
        intent.update(status="requires_action", next_action=action)
        return copy.deepcopy(intent)

    def bank_url(self: Confirming, url: str) -> str:
        """Where this fake serves the bank's check that ``url`` (Stripe's address) names."""
        return self.api_base + url.removeprefix(HOOKS)

    def authenticate(self: Confirming, intent_id: str, *, passed: bool = True) -> str:
        """The customer completes (or fails) the bank's check of ``intent_id``: where the
        browser goes next, the confirmation's ``return_url`` with ``payment_intent``,
        ``payment_intent_client_secret`` and ``redirect_status``, as Stripe sends it."""
        with self._lock:
            intent = self._get("payment_intent", intent_id)
            action = intent.get("next_action") or {}
            if action.get("type") != "redirect_to_url":
                raise ValueError(f"{intent_id} is not waiting for the bank's check")
            back = action["redirect_to_url"]["return_url"]
            _settle(self, intent, paid=passed)
            query = {
                "payment_intent": intent_id,
                "payment_intent_client_secret": intent["client_secret"],
                "redirect_status": "succeeded" if passed else "failed",
            }
            return f"{back}{'&' if '?' in back else '?'}{urlencode(query)}"

    def bank(
        self: Confirming, method: str, path: str, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """The bank's check as a browser sees it: a page with two buttons, and their
        answer, a redirect to the ``return_url``."""
        match = BANK_PATH.fullmatch(path)
        intent = self.objects.get(match.group(1)) if match else None
        action = (intent or {}).get("next_action") or {}
        url = (action.get("redirect_to_url") or {}).get("url", "")
        if match is None or intent is None or not url.endswith(path.removesuffix("/complete")):
            return 404, {"Content-Type": "text/html"}, b"<title>Not found</title>"
        if method == "POST" and match.group(3):
            passed = dict(parse_qsl(body.decode())).get("result") == "pass"
            location = OnSession.authenticate(self, match.group(1), passed=passed)
            return 302, {"Location": location}, b""
        amount = f"{intent['amount'] / 100:.2f} {intent['currency'].upper()}"
        html = (
            "<!doctype html><title>Your bank</title><h1>Confirm a payment</h1>"
            f"<p>Pay {escape(amount)}?</p><form method=post action='{escape(path)}/complete'>"
            "<button name=result value=pass>Complete authentication</button>"
            "<button name=result value=fail>Fail authentication</button></form>"
        )
        return 200, {"Content-Type": "text/html"}, html.encode()


def _settle(account: Account, intent: JSON, *, paid: bool) -> None:
    """The bank's answer to a check: the intent succeeded, or wants another method."""
    intent["next_action"] = None
    if paid:
        intent.update(status="succeeded", amount_received=intent["amount"])
        account._get("charge", intent["latest_charge"]).update(paid=True, status="succeeded")
        return
    intent.update(status="requires_payment_method", amount_received=0)
    intent["last_payment_error"] = {
        "type": "invalid_request_error",
        "code": "payment_intent_authentication_failure",
        "message": "The provided PaymentMethod has failed authentication.",
    }
