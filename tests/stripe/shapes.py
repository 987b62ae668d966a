"""Stripe objects shaped exactly as Stripe publishes them, with a test's own ids filled in.

``fixtures/`` holds, field for field:

- ``checkout.session``, ``charge``, ``dispute``, ``event`` and ``invoice.2024-06-20``: the
  ``resources`` of the same names in ``openapi/fixtures3.json`` of Stripe's ``stripe/openapi``
  repository, the shape of API versions up to 2024-06-20 (an invoice names its
  ``payment_intent`` and ``charge``);
- ``invoice.basil`` and ``invoice_payment``: the fields the ``stripe`` SDK's ``Invoice``,
  ``InvoiceLineItem`` and ``InvoicePayment`` resources declare for 2025-03-31.basil and
  later (no ``payment_intent`` on the invoice, lines priced through ``pricing``, payments
  as ``InvoicePayment`` objects, only present in a webhook when expanded).
"""

from __future__ import annotations

import copy
import json
import secrets
from pathlib import Path
from typing import Any

JSON = dict[str, Any]

OLD_API = "2024-06-20"
CURRENT_API = "2025-03-31.basil"
_FIXTURES = Path(__file__).parent / "fixtures"


def published(name: str, **values: Any) -> JSON:
    """The published object ``fixtures/<name>.json`` with ``values`` in place of its own."""
    obj: JSON = json.loads((_FIXTURES / f"{name}.json").read_text())
    return obj | copy.deepcopy(values)


def event(type: str, obj: JSON, *, api_version: str = CURRENT_API, **values: Any) -> JSON:
    """A published Event envelope of ``type`` carrying ``obj``, with a fresh id."""
    return published(
        "event",
        id="evt_" + secrets.token_hex(12),
        type=type,
        api_version=api_version,
        data={"object": copy.deepcopy(obj)},
        **values,
    )


def priced_invoice(
    shape: str, invoice_id: str, customer: str, price_id: str, amount: int, **values: Any
) -> JSON:
    """A paid invoice of one line for ``price_id``, in the ``invoice.<shape>`` fixture's shape."""
    invoice = published(
        f"invoice.{shape}",
        id=invoice_id,
        customer=customer,
        amount_due=amount,
        amount_paid=amount,
        amount_remaining=0,
        attempted=True,
        attempt_count=1,
        status="paid",
        **values,
    )
    (line,) = invoice["lines"]["data"]
    line.update(amount=amount)
    if "price" in line:
        line["price"].update(id=price_id, unit_amount=amount, unit_amount_decimal=str(amount))
    else:
        line["invoice"] = invoice_id
        line["pricing"]["price_details"]["price"] = price_id
    invoice["lines"]["url"] = f"/v1/invoices/{invoice_id}/lines"
    return invoice
