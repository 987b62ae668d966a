"""Request and response bodies of the webhook endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

from creditsd.kit.fields import StrictRequest, Text
from creditsd.webhooks.models import EVENT_TYPES, Endpoint, EventType, Message


class EndpointCreate(StrictRequest):
    """Where to send signed webhooks, and for which events."""

    url: Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=2048)]
    events: list[EventType] = Field(min_length=1, max_length=len(EVENT_TYPES))
    description: Text | None = None


class EndpointOut(BaseModel):
    """An endpoint; ``secret`` is shown in full only when it is created."""

    id: str
    url: str
    events: list[str]
    secret: str = Field(description="whsec_…: verify deliveries with it (Standard Webhooks).")
    description: str | None
    created_at: datetime
    disabled_at: datetime | None

    @classmethod
    def of(cls, endpoint: Endpoint, *, reveal: bool = False) -> EndpointOut:
        """Render an endpoint, its secret masked unless ``reveal``."""
        secret = endpoint.secret if reveal else endpoint.secret[:6] + "…" + endpoint.secret[-4:]
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            events=endpoint.events,
            secret=secret,
            description=endpoint.description,
            created_at=endpoint.created_at,
            disabled_at=endpoint.disabled_at,
        )


class EndpointList(BaseModel):
    """Every endpoint, oldest first."""

    data: list[EndpointOut]


class DeliveryOut(BaseModel):
    """One outbox message and how its delivery went."""

    id: int
    destination: str = Field(description="An endpoint id, `gateway` or `app`.")
    message_id: str = Field(description="The `webhook-id` it is sent with.")
    event_type: str
    account_id: str | None
    status: str = Field(description="pending, delivered or dead.")
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]

    @classmethod
    def of(cls, message: Message) -> DeliveryOut:
        """Render a message."""
        return cls(
            id=message.id,
            destination=message.destination,
            message_id=message.message_id,
            event_type=message.event_type,
            account_id=message.account_id,
            status=message.status,
            attempts=message.attempts,
            next_attempt_at=message.next_attempt_at,
            last_error=message.last_error,
            created_at=message.created_at,
            delivered_at=message.delivered_at,
            payload=message.payload,
        )


class DeliveryPage(BaseModel):
    """Deliveries, newest first."""

    data: list[DeliveryOut]
    next_cursor: str | None
