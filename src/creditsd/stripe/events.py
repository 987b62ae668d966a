"""The shape every Stripe event has: what creditsd relies on is checked, the rest is kept."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
