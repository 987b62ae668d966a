"""Stripe's events as creditsd takes them in: the names they go by here, the shape every
event has (what creditsd relies on is checked, the rest is kept), and the ids their
objects carry."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SOURCE = "stripe"  # Stripe's events in the webhook inbox
STRIPE_APP = "stripe"  # the app name on the transfers Stripe events make

StripeEvent = dict[str, Any]  # an event as Stripe sends it
StripeObject = dict[str, Any]  # an object an event carries: a session, charge, invoice…


class _Tolerant(BaseModel):
    """Stripe's own JSON: exact types where creditsd relies on a field, any other field kept."""

    model_config = ConfigDict(extra="allow", strict=True)


class EventData(_Tolerant):
    """An event's ``data``: a snapshot of the object it is about."""

    object: dict[str, Any]


class EventEnvelope(_Tolerant):
    """The fields every Stripe event carries (the stored event keeps all of them)."""

    id: str = Field(min_length=1, max_length=255)
    type: str = Field(min_length=1, max_length=128)
    livemode: bool
    data: EventData


def object_id(value: Any) -> str | None:
    """An object's id, whether Stripe sent the id or the expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value else None
