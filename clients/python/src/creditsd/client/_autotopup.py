"""Typed results of auto top-up: an account's rule and where it stands, its saved card and
the consent behind it, its latest attempt, and a session that saves a card."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from creditsd.client._models import (
    credits,
    optional_credits,
    optional_timestamp,
    timestamp,
    whole,
)


@dataclass(frozen=True)
class AutoTopupCard:
    """The card auto top-up charges, and the customer's consent: who agreed
    (``consented_by``: the app and the Checkout Session that saved it), when, and the rule
    as it stood then (``consented_rule``, amounts in minor units as the server stores it)."""

    payment_method_id: str
    brand: str | None
    last4: str | None
    fingerprint: str | None
    consented_by: str
    consented_at: datetime
    consented_rule: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AutoTopupCard:
        """Build from the server's JSON object."""
        return cls(
            payment_method_id=data["payment_method_id"],
            brand=data.get("brand"),
            last4=data.get("last4"),
            fingerprint=data.get("fingerprint"),
            consented_by=data["consented_by"],
            consented_at=timestamp(data["consented_at"]),
            consented_rule=dict(data["consented_rule"]),
            raw=dict(data),
        )


@dataclass(frozen=True)
class AutoTopupAttempt:
    """The latest attempt to charge the card for ``credits``: ``status`` is ``queued``,
    ``processing``, ``succeeded``, ``declined`` (``decline_code`` says why),
    ``needs_action`` or ``canceled``."""

    id: str
    status: str
    credits: Decimal
    payment_intent_id: str | None
    decline_code: str | None
    created_at: datetime
    updated_at: datetime
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AutoTopupAttempt:
        """Build from the server's JSON object."""
        return cls(
            id=data["id"],
            status=data["status"],
            credits=credits(data["credits"]),
            payment_intent_id=data.get("payment_intent_id"),
            decline_code=data.get("decline_code"),
            created_at=timestamp(data["created_at"]),
            updated_at=timestamp(data["updated_at"]),
            raw=dict(data),
        )


@dataclass(frozen=True)
class AutoTopup:
    """An account's auto top-up: when ``available`` falls below ``threshold``, buy enough to
    reach ``target_balance``, or one ``pack`` (one of the two is set), never more than
    ``monthly_cap`` credits in a calendar month (UTC).

    ``state`` is ``off``, ``awaiting_card`` (on, no card saved yet: nothing is charged),
    ``active``, ``paused`` (``paused_reason`` says why; a new card or a purchase resumes
    it) or ``needs_action`` (the bank wants the customer to authenticate).
    ``month_total`` is the credits bought, or being bought, this month.
    """

    account_id: str
    enabled: bool
    threshold: Decimal
    target_balance: Decimal | None
    pack: str | None
    monthly_cap: Decimal
    state: str
    paused_reason: str | None
    consecutive_declines: int
    next_attempt_at: datetime | None
    """No attempt before this (the backoff after a decline); None: no wait."""
    card: AutoTopupCard | None
    last_attempt: AutoTopupAttempt | None
    month_total: Decimal
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AutoTopup:
        """Build from the server's JSON object."""
        card, last = data.get("card"), data.get("last_attempt")
        return cls(
            account_id=data["account_id"],
            enabled=bool(data["enabled"]),
            threshold=credits(data["threshold"]),
            target_balance=optional_credits(data.get("target_balance")),
            pack=data.get("pack"),
            monthly_cap=credits(data["monthly_cap"]),
            state=data["state"],
            paused_reason=data.get("paused_reason"),
            consecutive_declines=whole(data["consecutive_declines"]),
            next_attempt_at=optional_timestamp(data.get("next_attempt_at")),
            card=None if card is None else AutoTopupCard.from_json(card),
            last_attempt=None if last is None else AutoTopupAttempt.from_json(last),
            month_total=credits(data["month_total"]),
            raw=dict(data),
        )


@dataclass(frozen=True)
class AutoTopupCardSession:
    """A Stripe Checkout Session in ``setup`` mode that saves the card auto top-up charges:
    send the customer to ``url``. The card counts once Stripe reports it saved."""

    id: str
    account_id: str
    url: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AutoTopupCardSession:
        """Build from the server's JSON object."""
        return cls(
            id=data["id"], account_id=data["account_id"], url=data.get("url"), raw=dict(data)
        )
