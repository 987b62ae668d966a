"""A local test double of the Stripe HTTP API, speaking Stripe's real wire format.

Point the official SDK at it::

    with FakeStripe(prices={"price_credits": 500}) as fake:
        client = stripe.StripeClient(fake.api_key, base_addresses={"api": fake.api_base})

Requests are form-encoded with bracketed keys, answers are Stripe's JSON objects and errors, and an
``Idempotency-Key`` replays the first answer of a request that ran (a decline included; not
one refused before it ran, for missing parameters or a rate limit). What happens in the
customer's browser or bank (paying, refunds, disputes) is done from Python, and
:meth:`FakeStripe.event` with :func:`sign` makes webhooks that
``stripe.Webhook.construct_event`` accepts. Saved cards and their off-session payments are
in :mod:`tests.stripe.saved_cards`, confirming a payment on-session and the bank's check in
:mod:`tests.stripe.on_session`, the wire format in :mod:`tests.stripe.wire`.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import urlsplit

import stripe

from tests.stripe.on_session import BANK_PATH, OnSession
from tests.stripe.saved_cards import SavedCards
from tests.stripe.wire import JSON, LostAnswer, StripeError, missing, parse_form, required, sign

__all__ = ["FakeStripe", "StripeError", "parse_form", "sign"]

# API version 2026-03-25.dahlia renamed ui_mode `hosted` and `embedded`; the old names now fail.
UI_MODES = ("hosted_page", "embedded_page")
KINDS = {
    "customers": "customer",
    "prices": "price",
    "checkout/sessions": "checkout.session",
    "payment_intents": "payment_intent",
    "charges": "charge",
    "refunds": "refund",
    "disputes": "dispute",
    "events": "event",
    "invoice_payments": "invoice_payment",
    "setup_intents": "setup_intent",
    "payment_methods": "payment_method",
}
ROUTE = re.compile(r"/v1/(checkout/sessions|[a-z_]+)(?:/([^/]+)(/line_items|/confirm)?)?")


class FakeStripe(SavedCards, OnSession):
    """An in-memory Stripe test-mode account, served over real HTTP on 127.0.0.1."""

    def __init__(
        self,
        *,
        api_key: str = "sk_test_fake",
        prices: dict[str, int] | None = None,
        currency: str = "usd",
    ) -> None:
        self.api_key = api_key
        self.currency = currency
        self.requests: list[tuple[str, str, JSON, str | None]] = []
        self.objects: dict[str, JSON] = {}  # every object by id, as last changed
        self._line_items: dict[str, list[JSON]] = {}
        self._intent_metadata: dict[str, JSON] = {}
        # How the next off-session PaymentIntents end: "succeeded", "processing",
        # "authentication_required", "declined:<decline_code>[:<advice_code>]", or "lost"
        # (succeeded, but answered 500 until retried with the same idempotency key),
        # "rate_limited" (a 429, nothing made), or "key_in_use" (a 409: another request
        # with the idempotency key is running; nothing made).
        self.intent_outcomes: list[str] = []
        # How the next on-session confirmations (with a return_url) end: "requires_action"
        # (the bank's check, the default), "succeeded" (frictionless), "declined:<code>".
        self.confirm_outcomes: list[str] = []
        self._replays: dict[tuple[str, str], tuple[JSON, int, bytes]] = {}
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        for price_id, amount in (prices or {}).items():
            self._new("price", price_id, active=True, currency=currency, unit_amount=amount)
            self.objects[price_id].update(type="one_time", recurring=None, metadata={})

    def __enter__(self) -> Self:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        serve = self._server.serve_forever
        self._thread = threading.Thread(target=serve, args=(0.01,), name="fake-stripe")
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
        self._server = self._thread = None

    @property
    def api_base(self) -> str:
        """``http://127.0.0.1:PORT`` while the server runs."""
        if self._server is None:
            raise RuntimeError("FakeStripe is not running: use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- the HTTP API ----------------------------------------------------------------------

    def handle(
        self, method: str, target: str, auth: str | None, key: str | None, body: bytes
    ) -> tuple[int, bytes, bool]:
        """Answer one request: status, JSON body, and whether it replays an idempotent one."""
        url = urlsplit(target)
        params = parse_form(body.decode() if method == "POST" else url.query)
        with self._lock:
            self.requests.append((method, url.path, params, key))
            try:
                if auth != f"Bearer {self.api_key}":
                    raise StripeError(f"Invalid API Key provided: {auth or '(none)'}", status=401)
                if method != "POST" or key is None:
                    return 200, json.dumps(self._route(method, url.path, params)).encode(), False
                if (url.path, key) in self._replays:
                    first, status, answer = self._replays[url.path, key]
                    if first != params:
                        raise StripeError(
                            "Keys for idempotent requests can only be used with the same "
                            f"parameters they were first used with (key '{key}').",
                            kind="idempotency_error",
                        )
                    return status, answer, True
                try:
                    answer = json.dumps(self._route(method, url.path, params)).encode()
                except LostAnswer as lost:
                    self._replays[url.path, key] = (params, 200, json.dumps(lost.answer).encode())
                    failure = StripeError("An unknown error occurred", status=500, kind="api_error")
                    return 500, json.dumps(failure.body).encode(), False
                except StripeError as error:  # a decline ran: its answer is saved as well
                    if error.status == 402:
                        saved = (params, error.status, json.dumps(error.body).encode())
                        self._replays[url.path, key] = saved
                    raise
                self._replays[url.path, key] = (params, 200, answer)
                return 200, answer, False
            except StripeError as error:
                return error.status, json.dumps(error.body).encode(), False
            except Exception as error:  # a bug in the fake: surface it as stripe.APIError
                failure = StripeError(repr(error), status=500, kind="api_error")
                return 500, json.dumps(failure.body).encode(), False

    def _route(self, method: str, path: str, params: JSON) -> JSON:
        match = ROUTE.fullmatch(path)
        collection, oid, sub = match.groups() if match else ("", None, None)
        if method == "POST" and oid is None and collection == "customers":
            fields = {name: params.get(name) for name in ("email", "name", "description")}
            return self._new("customer", "cus_", **fields, metadata=params.get("metadata", {}))
        if method == "POST" and oid is None and collection == "checkout/sessions":
            return self._create_session(params)
        if method == "POST" and oid is None and collection == "payment_intents":
            return self._create_intent(params)
        if method == "POST" and sub == "/confirm" and collection == "payment_intents":
            return self._confirm_intent(str(oid), params)
        if method == "GET" and oid is not None and sub is None and collection in KINDS:
            return self._render(self._get(KINDS[collection], oid), params.get("expand", []))
        if method == "GET" and oid is not None and sub and collection == "checkout/sessions":
            return self._list_line_items(self._get("checkout.session", oid)["id"], params)
        if method == "GET" and oid is None and collection == "invoice_payments":
            return self._list_invoice_payments(params)
        raise StripeError(f"Unrecognized request URL ({method}: {path}).", status=404)

    def _new(self, kind: str, prefix_or_id: str, **fields: Any) -> JSON:
        """Store a new object; a prefix ending in ``_`` gets a random id."""
        oid = prefix_or_id + secrets.token_hex(12) if prefix_or_id.endswith("_") else prefix_or_id
        obj = {"id": oid, "object": kind, "created": int(time.time()), "livemode": False, **fields}
        self.objects[oid] = obj
        return obj

    def _get(self, kind: str, oid: str) -> JSON:
        obj = self.objects.get(oid)
        if obj is None or obj["object"] != kind:
            raise missing(kind, oid)
        return obj

    def _render(self, obj: JSON, expand: list[str]) -> JSON:
        """A copy of ``obj`` with ``expand`` paths (``payment_intent.latest_charge``) inlined."""
        out = {k: v for k, v in obj.items() if k != "refunds" or "refunds" in expand}
        for path in expand:
            head, _, rest = path.partition(".")
            value = out.get(head)
            if head == "line_items" and out["object"] == "checkout.session":
                out[head] = self._list_line_items(out["id"], {})
            elif isinstance(value, str) and value in self.objects:
                out[head] = self._render(self.objects[value], [rest] if rest else [])
            elif isinstance(value, dict):
                out[head] = self._render(value, [rest] if rest else [])
            elif value is not None:
                raise StripeError(f"This property cannot be expanded ({path}).", "expand")
        return copy.deepcopy(out)

    def _create_session(self, params: JSON) -> JSON:
        mode, ui_mode = params.get("mode"), params.get("ui_mode", "hosted_page")
        if mode is None:
            raise required("mode")
        if mode == "setup":
            return self._create_setup_session(params)
        if mode != "payment":
            raise StripeError(f"FakeStripe only supports payment and setup, not {mode!r}.", "mode")
        if ui_mode not in UI_MODES:
            raise StripeError(f"Invalid ui_mode: must be one of {', '.join(UI_MODES)}", "ui_mode")
        embedded = ui_mode == "embedded_page"
        for name in ("success_url", "cancel_url") if embedded else ("return_url",):
            if name in params:
                raise StripeError(f"You cannot pass `{name}` when `ui_mode` is `{ui_mode}`.", name)
        if embedded and "return_url" not in params:
            raise required("return_url")
        customer = params.get("customer")
        if customer is not None and self.objects.get(customer, {}).get("object") != "customer":
            raise missing("customer", customer, "customer", 400)
        items = []
        for i, line in enumerate(params.get("line_items") or []):
            price = self.objects.get(line.get("price", ""))
            if price is None or price["object"] != "price":
                raise missing("price", line.get("price", ""), f"line_items[{i}][price]", 400)
            if "quantity" not in line:
                raise required(f"line_items[{i}][quantity]")
            quantity = int(line["quantity"])
            amount = price["unit_amount"] * quantity
            item: JSON = {"id": "li_" + secrets.token_hex(12), "object": "item", "price": price}
            item.update(quantity=quantity, currency=price["currency"], description=price["id"])
            item.update(amount_subtotal=amount, amount_total=amount)
            items.append(item | {"amount_discount": 0, "amount_tax": 0})
        if not items:
            raise required("line_items")
        total = sum(item["amount_total"] for item in items)
        passed = ("client_reference_id", "success_url", "cancel_url", "return_url")
        session = self._new(
            "checkout.session",
            "cs_test_",
            mode=mode,
            ui_mode=ui_mode,
            status="open",
            payment_status="unpaid",
            amount_subtotal=total,
            amount_total=total,
            currency=self.currency,
            customer=customer,
            metadata=params.get("metadata", {}),
            payment_intent=None,
            expires_at=int(time.time()) + 24 * 3600,
            **{name: params.get(name) for name in passed},
        )
        session["url"] = None if embedded else f"https://checkout.stripe.com/c/pay/{session['id']}"
        secret = f"{session['id']}_secret_{secrets.token_hex(12)}"
        session["client_secret"] = secret if embedded else None
        self._line_items[session["id"]] = items
        intent_data = params.get("payment_intent_data", {})
        self._intent_metadata[session["id"]] = intent_data.get("metadata", {})
        return session

    def _list_line_items(self, session_id: str, params: JSON) -> JSON:
        items = self._line_items[session_id]
        after = params.get("starting_after")
        start = [item["id"] for item in items].index(after) + 1 if after else 0
        end = start + int(params.get("limit", 10))
        page = {"object": "list", "data": items[start:end], "has_more": end < len(items)}
        return page | {"url": f"/v1/checkout/sessions/{session_id}/line_items"}

    def _list_invoice_payments(self, params: JSON) -> JSON:
        if "invoice" not in params:
            raise StripeError("You must specify an invoice or a payment.", "invoice")
        found = [
            copy.deepcopy(obj)
            for obj in self.objects.values()
            if obj["object"] == "invoice_payment"
            and obj["invoice"] == params["invoice"]
            and params.get("status", obj["status"]) == obj["status"]
        ]
        page = {"object": "list", "data": found[: int(params.get("limit", 10))]}
        return page | {"has_more": len(found) > len(page["data"]), "url": "/v1/invoice_payments"}

    # -- what happens outside the API: the customer, their bank, Stripe's webhooks ------------

    def complete_session(self, session_id: str, *, paid: bool = True) -> JSON:
        """The customer finished Checkout; ``paid=False`` for a delayed method still processing."""
        with self._lock:
            session = self._get("checkout.session", session_id)
            if session["status"] != "open":
                raise ValueError(f"{session_id} is already {session['status']}")
            metadata = self._intent_metadata[session_id]
            intent = self._pay(session["amount_total"], session["customer"], metadata, paid=paid)
            session.update(status="complete", payment_status="paid" if paid else "unpaid")
            session["payment_intent"] = intent["id"]
            return copy.deepcopy(session)

    def pay_invoice(self, invoice_id: str, customer: str, amount: int) -> JSON:
        """The customer paid an invoice: its ``InvoicePayment``, naming a new payment intent."""
        with self._lock:
            intent = self._pay(amount, customer, {}, paid=True)
            payment = self._new("invoice_payment", "inpay_", invoice=invoice_id, is_default=True)
            payment.update(amount_paid=amount, amount_requested=amount, currency=self.currency)
            payment["payment"] = {"type": "payment_intent", "payment_intent": intent["id"]}
            payment["status"] = "paid"
            payment["status_transitions"] = {"canceled_at": None, "paid_at": int(time.time())}
            return copy.deepcopy(payment)

    def _pay(self, amount: int, customer: str | None, metadata: JSON, *, paid: bool) -> JSON:
        """A payment intent and its charge for ``amount``; the intent."""
        common = {"currency": self.currency, "customer": customer, "amount": amount}
        intent = self._new("payment_intent", "pi_", **common, metadata=copy.deepcopy(metadata))
        intent.update(amount_received=amount if paid else 0, latest_charge=None, next_action=None)
        intent.update(canceled_at=None, cancellation_reason=None)
        intent["client_secret"] = f"{intent['id']}_secret_{secrets.token_hex(12)}"
        intent["status"] = "succeeded" if paid else "processing"
        charge = self._new("charge", "ch_", **common, metadata=copy.deepcopy(metadata))
        charge.update(amount_captured=amount, amount_refunded=0, captured=True, refunded=False)
        charge.update(paid=paid, payment_intent=intent["id"], disputed=False)
        charge["status"] = "succeeded" if paid else "pending"
        url = f"/v1/charges/{charge['id']}/refunds"
        charge["refunds"] = {"object": "list", "data": [], "has_more": False, "url": url}
        intent["latest_charge"] = charge["id"]
        return intent

    def pay_async(self, session_id: str) -> JSON:
        """The delayed payment of ``complete_session(..., paid=False)`` has now succeeded."""
        with self._lock:
            session = self._get("checkout.session", session_id)
            if session["payment_intent"] is None or session["payment_status"] == "paid":
                raise ValueError(f"{session_id} has no payment awaiting funds")
            self.succeed_payment(session["payment_intent"])
            session["payment_status"] = "paid"
            return copy.deepcopy(session)

    def refund(self, charge_id: str, amount: int) -> JSON:
        """Refund part or all of a charge; returns the charge, ``refunds`` newest first."""
        with self._lock:
            charge = self._get("charge", charge_id)
            if not 0 < amount <= charge["amount"] - charge["amount_refunded"]:
                raise ValueError(f"cannot refund {amount} of {charge_id}")
            refund = self._new("refund", "re_", amount=amount, currency=charge["currency"])
            refund.update(charge=charge_id, payment_intent=charge["payment_intent"])
            refund.update(status="succeeded", reason=None, metadata={})
            charge["amount_refunded"] += amount
            charge["refunded"] = charge["amount_refunded"] == charge["amount"]
            charge["refunds"]["data"].insert(0, refund)
            return copy.deepcopy(charge)

    def dispute(self, charge_id: str, amount: int | None = None) -> JSON:
        """The cardholder disputes the charge, for its full amount unless ``amount`` is given."""
        with self._lock:
            charge = self._get("charge", charge_id)
            charge["disputed"] = True
            amount = charge["amount"] if amount is None else amount
            dispute = self._new("dispute", "dp_", amount=amount, currency=charge["currency"])
            dispute.update(charge=charge_id, payment_intent=charge["payment_intent"])
            dispute.update(status="needs_response", reason="fraudulent", metadata={})
            dispute["is_charge_refundable"] = False
            return copy.deepcopy(dispute)

    def event(self, type: str, obj: JSON) -> JSON:
        """An Event envelope carrying a snapshot of ``obj``; also served at /v1/events/{id}."""
        with self._lock:
            event = self._new("event", "evt_", api_version=stripe.api_version, type=type)
            event.update(data={"object": copy.deepcopy(obj)}, pending_webhooks=1)
            event["request"] = {"id": None, "idempotency_key": None}
            return copy.deepcopy(event)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeStripe


class _Handler(BaseHTTPRequestHandler):
    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        auth, key = self.headers.get("Authorization"), self.headers.get("Idempotency-Key")
        fake = cast("_Server", self.server).fake
        if BANK_PATH.fullmatch(urlsplit(self.path).path):
            with fake._lock:
                code, headers, page = fake.bank(self.command, urlsplit(self.path).path, body)
            self.send_response(code)
            for name, value in {**headers, "Content-Length": str(len(page))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(page)
            return
        status, answer, replayed = fake.handle(self.command, self.path, auth, key, body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.send_header("Request-Id", "req_" + secrets.token_hex(7))
        if replayed:
            self.send_header("Idempotent-Replayed", "true")
        if status >= 400:
            self.send_header("Stripe-Should-Retry", "false")
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_DELETE = _serve  # noqa: N815 (the names http.server dispatches to)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""
