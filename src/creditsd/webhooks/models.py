"""Webhook endpoints and outbox messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

GATEWAY = "gateway"  # the destination of balance syncs to a gateway ([gateway])
APP = "app"  # the destination of usage posts to an app ([app_link])
BALANCE_SYNC = "gateway.balance_sync"  # a balance for the gateway: only the latest counts
EventType = Literal[
    "charge.succeeded",
    "usage.recorded",
    "balance.low",
    "balance.runway_low",
    "balance.depleted",
    "topup.completed",
    "hold.expired",
    "limit.warning",
    "grant.expired",
    "ledger.drift_detected",
    "auto_topup.succeeded",
    "auto_topup.failed",
    "auto_topup.paused",
    "auto_topup.resumed",
    "auto_topup.needs_action",
    "auto_topup.cap_reached",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where signed webhooks go, and which events it asked for."""

    id: str
    url: str
    events: list[str]
    secret: str
    description: str | None
    created_at: datetime
    disabled_at: datetime | None


@dataclass(frozen=True, slots=True)
class Message:
    """One outbox row: a delivery to one destination."""

    id: int
    destination: str
    message_id: str
    event_type: str
    account_id: str | None
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class Backlog:
    """What the outbox has not delivered: messages waiting, messages given up on, and
    when the oldest waiting one was written."""

    pending: int
    dead: int
    oldest_pending_at: datetime | None
