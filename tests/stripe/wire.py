"""Stripe's wire format, as the fake Stripe speaks it: form-encoded requests with bracketed
keys, ``{"error": {...}}`` answers, and signed webhooks."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import parse_qsl

import stripe

JSON = dict[str, Any]


def sign(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header, as the official SDK computes it:
    ``t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<payload>">``."""
    header: str = stripe.WebhookSignature.generate_signature_header(
        payload.decode(), secret, timestamp=timestamp
    )
    return header


def parse_form(body: str) -> JSON:
    """Stripe's form encoding (``a[0][b]=1&m[k]=v``) as nested dicts and lists."""
    root: JSON = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        *parents, leaf = key.replace("]", "").split("[")
        node = root
        for part in parents:
            node = node.setdefault(part or str(len(node)), {})
        node[leaf or str(len(node))] = value
    return cast("JSON", _listify(root))


def _listify(value: Any, key: str = "") -> Any:
    """Dicts keyed ``0, 1, ...`` become lists (metadata keys are always strings)."""
    if not isinstance(value, dict):
        return value
    items = {k: _listify(v, k) for k, v in value.items()}
    if key != "metadata" and items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


class StripeError(Exception):
    """An error answer: its HTTP status and Stripe's ``{"error": {...}}`` body."""

    def __init__(
        self,
        message: str,
        param: str | None = None,
        *,
        status: int = 400,
        code: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: JSON = {"error": {"type": kind, "message": message, "code": code}}
        if param is not None:
            self.body["error"]["param"] = param


def missing(kind: str, oid: str, param: str = "id", status: int = 404) -> StripeError:
    return StripeError(f"No such {kind}: '{oid}'", param, status=status, code="resource_missing")


def required(param: str) -> StripeError:
    return StripeError(f"Missing required param: {param}.", param, code="parameter_missing")


class LostAnswer(Exception):
    """Stripe did the work but the answer failed (a 500): a retry with the same idempotency
    key gets the answer it should have had."""

    def __init__(self, answer: JSON) -> None:
        super().__init__("lost answer")
        self.answer = answer
