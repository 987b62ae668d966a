"""Typed results built from the server's JSON: credits as Decimal, timestamps as datetime.

Every result keeps the JSON object it was built from in ``raw``, so fields a newer server
adds are there to read before this SDK learns their names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Required, TypedDict


class Usage(TypedDict, total=False):
    """Token counts of one model call, priced by the server's catalog: the disjoint counts,
    or one provider's own usage object as it came (``{"model": "openai/gpt-4o",
    "openai_chat": completion.usage.model_dump(mode="json")}``)."""

    model: Required[str]
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cache_write_tokens_by_ttl: Mapping[str, int]
    reasoning_tokens: int
    openai_chat: Mapping[str, Any]
    openai_responses: Mapping[str, Any]
    anthropic: Mapping[str, Any]
    gemini: Mapping[str, Any]


@dataclass(frozen=True)
class Limit:
    """A spend limit to set, e.g. ``Limit(1000, "day")``: at most ``amount`` credits spent
    (and held by open holds) per ``period``, a calendar ``day``, ``week`` (from Monday) or
    ``month`` in the wallet's time zone (UTC unless set), or the limit's ``lifetime``.
    A ``hard`` limit refuses what would pass it (LimitReachedError); a ``soft`` one is
    stored and shown but refuses nothing yet."""

    amount: int | str | Decimal
    period: Literal["day", "week", "month", "lifetime"]
    mode: Literal["hard", "soft"] = "hard"


@dataclass(frozen=True)
class Account:
    """An account; ``available`` = ``balance`` − ``held`` + ``overdraft_limit``.

    ``status`` is ``active``, ``frozen`` or ``closed`` (frozen and closed accounts spend
    nothing). ``balance_by_source`` splits ``balance`` by where its credits came from
    (``purchase``, ``subscription``, ``signup``, ``promotion``, ``adjustment``; ``overdrawn``
    is how far it is below zero); its parts add up to ``balance``.
    """

    id: str
    balance: Decimal
    held: Decimal
    available: Decimal
    overdraft_limit: Decimal
    status: str
    balance_by_source: dict[str, Decimal]
    aliases: tuple[str, ...]
    metadata: dict[str, Any] | None
    created_at: datetime | None
    """None: the account does not exist yet; this is what its first write will create."""
    updated_at: datetime | None
    low_balance_threshold: Decimal | None = None
    """``balance.low`` fires when a debit takes the balance below this (0: never for this
    account); None: the server's default."""
    frozen_by: tuple[str, ...] = ()
    """Who holds the account frozen (``operator``, ``dispute:<id>``, ``refund:<id>``), each
    lifting only its own freeze; empty when active."""
    time_zone: str = "UTC"
    """The IANA time zone whose days, weeks and months its spend limits count in."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Account:
        """Build from the server's JSON object."""
        return cls(
            id=data["id"],
            balance=credits(data["balance"]),
            held=credits(data["held"]),
            available=credits(data["available"]),
            overdraft_limit=credits(data["overdraft_limit"]),
            status=data["status"],
            balance_by_source={
                source: credits(amount) for source, amount in data["balance_by_source"].items()
            },
            aliases=tuple(data.get("aliases") or ()),
            frozen_by=tuple(data.get("frozen_by") or ()),
            metadata=data.get("metadata"),
            created_at=optional_timestamp(data["created_at"]),
            updated_at=optional_timestamp(data["updated_at"]),
            low_balance_threshold=optional_credits(data.get("low_balance_threshold")),
            time_zone=data.get("time_zone") or "UTC",
            raw=dict(data),
        )


@dataclass(frozen=True)
class Runway:
    """How long an account's credits last at the rate it spends them.

    ``burn_per_day`` follows ``method`` (the larger of the last 24 hours' spend and the mean
    day of the last 7); a subscription plan's allowance is left out of both it and
    ``available``. ``runway_days`` and ``runs_out_at`` are None when ``reason`` says why:
    ``too_little_history`` (under a day old) or ``no_burn``.
    """

    available: Decimal
    burn_per_day: Decimal | None
    method: str
    runway_days: Decimal | None
    runs_out_at: datetime | None
    reason: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Runway:
        """Build from the server's JSON object."""
        return cls(
            available=credits(data["available"]),
            burn_per_day=optional_credits(data["burn_per_day"]),
            method=data["method"],
            runway_days=optional_credits(data["runway_days"]),
            runs_out_at=optional_timestamp(data["runs_out_at"]),
            reason=data.get("reason"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class LotPart:
    """The part of one grant lot a transfer spent (a debit) or filled (a credit).

    ``source`` is where the lot's credits came from (``purchase`` is paid credit, every
    other source free); ``expires_at`` is when what is left of the lot lapses (None: never).
    """

    lot_id: str
    source: str
    amount: Decimal
    expires_at: datetime | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LotPart:
        """Build from the server's JSON object."""
        return cls(
            lot_id=data["lot_id"],
            source=data["source"],
            amount=credits(data["amount"]),
            expires_at=optional_timestamp(data.get("expires_at")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Transfer:
    """A movement of credits seen from one account (``account_id``).

    ``amount`` is always positive; ``change`` is its signed effect on ``account_id``, and
    ``balance``/``available`` are that account's figures right after. ``lots`` are the lots
    a debit spent (first spent first) or the lot a credit filled; ``paid`` and ``free`` split
    them into purchased and free credit. ``replayed`` is true when the server answered a
    repeat of an earlier write with its stored result.
    """

    id: str
    kind: str
    account_id: str
    amount: Decimal
    change: Decimal
    balance: Decimal | None
    available: Decimal | None
    debit_account_id: str
    credit_account_id: str
    description: str | None
    metadata: dict[str, Any] | None
    hold_id: str | None
    app: str
    idempotency_key: str
    created_at: datetime
    lots: tuple[LotPart, ...]
    paid: Decimal
    free: Decimal
    pricing: dict[str, Any] | None = None
    """How a priced amount was computed (catalog version, lines, rounding; a capture's
    settlement against its hold); None for a plain amount."""
    proxy_key_id: str | None = None
    """The proxy key whose call this capture settled; None for every other transfer."""
    member: str | None = None
    """The wallet's member it was spent for; None when no member was named."""
    replayed: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, replayed: bool = False) -> Transfer:
        """Build from the server's JSON object."""
        return cls(
            id=data["id"],
            kind=data["kind"],
            account_id=data["account_id"],
            amount=credits(data["amount"]),
            change=credits(data["change"]),
            balance=optional_credits(data.get("balance")),
            available=optional_credits(data.get("available")),
            debit_account_id=data["debit_account_id"],
            credit_account_id=data["credit_account_id"],
            description=data.get("description"),
            metadata=data.get("metadata"),
            hold_id=data.get("hold_id"),
            app=data["app"],
            idempotency_key=data["idempotency_key"],
            created_at=timestamp(data["created_at"]),
            lots=tuple(LotPart.from_json(part) for part in data["lots"]),
            paid=credits(data["paid"]),
            free=credits(data["free"]),
            pricing=data.get("pricing"),
            proxy_key_id=data.get("proxy_key_id"),
            member=data.get("member"),
            replayed=replayed,
            raw=dict(data),
        )


@dataclass(frozen=True)
class Hold:
    """Credits reserved until captured, released or expired; ``held`` is what it still reserves."""

    id: str
    account_id: str
    status: str
    amount: Decimal
    captured: Decimal
    held: Decimal
    expires_at: datetime
    description: str | None
    metadata: dict[str, Any] | None
    idempotency_key: str
    created_at: datetime
    updated_at: datetime
    pricing: dict[str, Any] | None = None
    """How a priced estimate was computed; None for a plain amount."""
    proxy_key_id: str | None = None
    """The proxy key whose call the hold is for; None for every other hold."""
    member: str | None = None
    """The wallet's member it is for; None when no member was named."""
    replayed: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, replayed: bool = False) -> Hold:
        """Build from the server's JSON object."""
        return cls(
            id=data["id"],
            account_id=data["account_id"],
            status=data["status"],
            amount=credits(data["amount"]),
            captured=credits(data["captured"]),
            held=credits(data["held"]),
            expires_at=timestamp(data["expires_at"]),
            description=data.get("description"),
            metadata=data.get("metadata"),
            idempotency_key=data["idempotency_key"],
            created_at=timestamp(data["created_at"]),
            updated_at=timestamp(data["updated_at"]),
            pricing=data.get("pricing"),
            proxy_key_id=data.get("proxy_key_id"),
            member=data.get("member"),
            replayed=replayed,
            raw=dict(data),
        )


@dataclass(frozen=True)
class Capture:
    """A capture's result: the hold after it and the transfer that charged the account."""

    hold: Hold
    transfer: Transfer
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, replayed: bool = False) -> Capture:
        """Build from the server's JSON object."""
        return cls(
            hold=Hold.from_json(data["hold"], replayed=replayed),
            transfer=Transfer.from_json(data["transfer"], replayed=replayed),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Verification:
    """A stored balance and held total checked against the account's transfers and holds."""

    account_id: str
    valid: bool
    stored: Decimal
    calculated: Decimal
    stored_held: Decimal
    calculated_held: Decimal
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verification:
        """Build from the server's JSON object."""
        return cls(
            account_id=data["account_id"],
            valid=bool(data["valid"]),
            stored=credits(data["stored"]),
            calculated=credits(data["calculated"]),
            stored_held=credits(data["stored_held"]),
            calculated_held=credits(data["calculated_held"]),
            raw=dict(data),
        )


@dataclass(frozen=True)
class TransactionPage:
    """One page of an account's transfers, newest first; ``next_cursor`` is None on the last."""

    data: tuple[Transfer, ...]
    next_cursor: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TransactionPage:
        """Build from the server's JSON object."""
        return cls(
            data=tuple(Transfer.from_json(item) for item in data["data"]),
            next_cursor=data.get("next_cursor"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Quote:
    """What a charge would cost now, without charging.

    ``breakdown`` explains the price as the server wrote it (its lines, subtotal, rounding
    and a one-sentence ``summary``); ``catalog_version`` is the price list it used.
    """

    amount: Decimal
    breakdown: dict[str, Any]
    catalog_version: int | str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Quote:
        """Build from the server's JSON object."""
        return cls(
            amount=credits(data["amount"]),
            breakdown=dict(data.get("breakdown") or {}),
            catalog_version=data.get("catalog_version"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class UsageResult:
    """What became of one usage event: its ``status``, the transfer or the error.

    ``status`` is ``charged``, ``duplicate`` (charged before), ``insufficient_credits``,
    ``limit_reached`` or ``invalid``; ``error`` is then the error object (``code``,
    ``message``, …; a ``limit_reached`` one names the limit as LimitReachedError does).
    """

    id: str
    status: str
    transfer_id: str | None
    error: dict[str, Any] | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UsageResult:
        """Build from the server's JSON object."""
        return cls(
            id=str(data["id"]),
            status=data["status"],
            transfer_id=data.get("transfer_id"),
            error=data.get("error"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Pack:
    """A credit pack on sale: ``credits`` for ``display_price`` (as the operator wrote it)."""

    name: str
    credits: Decimal
    label: str | None
    display_price: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pack:
        """Build from the server's JSON object."""
        return cls(
            name=data["name"],
            credits=credits(data["credits"]),
            label=data.get("label"),
            display_price=data.get("display_price"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class CheckoutSession:
    """A Stripe Checkout Session selling ``pack`` (``credits``) to ``account_id``.

    Hosted: send the buyer to ``url``. Embedded: mount Stripe's checkout with
    ``client_secret`` and ``publishable_key``. The credits arrive when Stripe reports the
    payment, never at creation.
    """

    id: str
    account_id: str
    pack: str
    credits: Decimal
    ui_mode: str
    url: str | None
    client_secret: str | None
    publishable_key: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckoutSession:
        """Build from the server's JSON object."""
        return cls(
            id=data["id"],
            account_id=data["account_id"],
            pack=data["pack"],
            credits=credits(data["credits"]),
            ui_mode=data["ui_mode"],
            url=data.get("url"),
            client_secret=data.get("client_secret"),
            publishable_key=data.get("publishable_key"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class PortalSession:
    """A link to one account's billing page: send the user's browser to ``url`` before
    ``expires_at``; the page then runs on its own session."""

    url: str
    expires_at: datetime
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PortalSession:
        """Build from the server's JSON object."""
        return cls(url=data["url"], expires_at=timestamp(data["expires_at"]), raw=dict(data))


@dataclass(frozen=True)
class WebhookEndpoint:
    """Where signed webhooks go (Standard Webhooks), and for which ``events``.

    ``secret`` (``whsec_…``) verifies the deliveries; it is whole only in the answer that
    created the endpoint, masked everywhere else. ``disabled_at`` is None while it is sent to.
    """

    id: str
    url: str
    events: tuple[str, ...]
    secret: str
    description: str | None
    created_at: datetime
    disabled_at: datetime | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WebhookEndpoint:
        """Build from the server's JSON object."""
        return cls(
            id=data["id"],
            url=data["url"],
            events=tuple(data["events"]),
            secret=data["secret"],
            description=data.get("description"),
            created_at=timestamp(data["created_at"]),
            disabled_at=optional_timestamp(data.get("disabled_at")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class WebhookDelivery:
    """One message to one ``destination`` (an endpoint id, or ``gateway``) and how it went.

    ``status`` is ``pending``, ``delivered`` or ``dead`` (given up on until retried);
    ``message_id`` is the ``webhook-id`` it is sent with, the same on every attempt.
    """

    id: int
    destination: str
    message_id: str
    event_type: str
    account_id: str | None
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WebhookDelivery:
        """Build from the server's JSON object."""
        return cls(
            id=whole(data["id"]),
            destination=data["destination"],
            message_id=data["message_id"],
            event_type=data["event_type"],
            account_id=data.get("account_id"),
            status=data["status"],
            attempts=whole(data["attempts"]),
            next_attempt_at=timestamp(data["next_attempt_at"]),
            last_error=data.get("last_error"),
            created_at=timestamp(data["created_at"]),
            delivered_at=optional_timestamp(data.get("delivered_at")),
            payload=dict(data["payload"]),
            raw=dict(data),
        )


@dataclass(frozen=True)
class WebhookDeliveryPage:
    """One page of webhook deliveries, newest first; ``next_cursor`` is None on the last."""

    data: tuple[WebhookDelivery, ...]
    next_cursor: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WebhookDeliveryPage:
        """Build from the server's JSON object."""
        return cls(
            data=tuple(WebhookDelivery.from_json(item) for item in data["data"]),
            next_cursor=data.get("next_cursor"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class AuditRecord:
    """One admin action: who (``actor``) did what (``action``) to which ``target``.

    ``before`` and ``after`` are the state as recorded; amounts in them are credits.
    """

    id: int
    actor: str
    action: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    created_at: datetime
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditRecord:
        """Build from the server's JSON object."""
        before, after = data.get("before"), data.get("after")
        return cls(
            id=whole(data["id"]),
            actor=data["actor"],
            action=data["action"],
            target=data["target"],
            before=None if before is None else dict(before),
            after=None if after is None else dict(after),
            created_at=timestamp(data["created_at"]),
            raw=dict(data),
        )


@dataclass(frozen=True)
class AuditRecordPage:
    """One page of the audit log, newest first; ``next_cursor`` is None on the last."""

    data: tuple[AuditRecord, ...]
    next_cursor: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditRecordPage:
        """Build from the server's JSON object."""
        return cls(
            data=tuple(AuditRecord.from_json(item) for item in data["data"]),
            next_cursor=data.get("next_cursor"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class LimitState:
    """A spend limit on a wallet and where its current window stands.

    ``scope`` is whose spend it caps (``wallet``, ``member``, ``app`` or ``key``, a proxy
    key) and ``subject`` which member, app or key (None: the wallet's own). ``remaining`` is
    ``amount`` − ``spent`` − ``held`` (what open holds reserve), at least 0, until the window
    that began at ``window_start`` ends at ``resets_at`` (None: a lifetime limit, which never
    resets). ``since`` is when the limit was set.
    """

    scope: str
    subject: str | None
    period: str
    mode: str
    amount: Decimal
    spent: Decimal
    held: Decimal
    remaining: Decimal
    window_start: datetime
    resets_at: datetime | None
    since: datetime
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LimitState:
        """Build from the server's JSON object."""
        return cls(
            scope=data["scope"],
            subject=data.get("subject"),
            period=data["period"],
            mode=data["mode"],
            amount=credits(data["amount"]),
            spent=credits(data["spent"]),
            held=credits(data["held"]),
            remaining=credits(data["remaining"]),
            window_start=timestamp(data["window_start"]),
            resets_at=optional_timestamp(data.get("resets_at")),
            since=timestamp(data["since"]),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Member:
    """A member of the wallet ``account_id``: an id of the app's choosing (``member_id``)
    that spends from the wallet within its ``limits``."""

    account_id: str
    member_id: str
    display_name: str | None
    limits: tuple[LimitState, ...]
    created_at: datetime
    updated_at: datetime
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Member:
        """Build from the server's JSON object."""
        return cls(
            account_id=data["account_id"],
            member_id=data["member_id"],
            display_name=data.get("display_name"),
            limits=tuple(LimitState.from_json(item) for item in data["limits"]),
            created_at=timestamp(data["created_at"]),
            updated_at=timestamp(data["updated_at"]),
            raw=dict(data),
        )


@dataclass(frozen=True)
class MemberPage:
    """One page of a wallet's members by id; ``next_cursor`` is None on the last."""

    data: tuple[Member, ...]
    next_cursor: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MemberPage:
        """Build from the server's JSON object."""
        return cls(
            data=tuple(Member.from_json(item) for item in data["data"]),
            next_cursor=data.get("next_cursor"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class ProxyKey:
    """A key an app minted for one account's calls to ``/openai/v1`` (an OpenAI SDK's API
    key), each call its ``member``'s when minted for one. ``secret`` (``cdp_…``) is only in
    the answer that minted it (None everywhere else: only ``hint`` is kept); ``limit`` is
    the most its calls may spend (None: only the balance), of which ``spent`` was charged
    and ``held`` is held by calls in flight."""

    id: str
    account_id: str
    member: str | None
    app: str
    name: str | None
    hint: str
    limit: Decimal | None
    spent: Decimal
    held: Decimal
    rate_limit: int | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    secret: str | None = field(default=None, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProxyKey:
        """Build from the server's JSON object."""
        rate_limit = data.get("rate_limit")
        return cls(
            id=data["id"],
            account_id=data["account_id"],
            member=data.get("member"),
            app=data["app"],
            name=data.get("name"),
            hint=data["hint"],
            limit=optional_credits(data.get("limit")),
            spent=credits(data["spent"]),
            held=credits(data["held"]),
            rate_limit=None if rate_limit is None else whole(rate_limit),
            created_at=timestamp(data["created_at"]),
            expires_at=optional_timestamp(data.get("expires_at")),
            revoked_at=optional_timestamp(data.get("revoked_at")),
            secret=data.get("secret"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class ProxyKeyPage:
    """One page of proxy keys, newest first; ``next_cursor`` is None on the last."""

    data: tuple[ProxyKey, ...]
    next_cursor: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProxyKeyPage:
        """Build from the server's JSON object."""
        return cls(
            data=tuple(ProxyKey.from_json(item) for item in data["data"]),
            next_cursor=data.get("next_cursor"),
            raw=dict(data),
        )


def credits(value: object) -> Decimal:
    """An amount from the server's JSON (an exact number, or a decimal string) as a Decimal."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | str) and not isinstance(value, bool):
        return Decimal(value)
    raise TypeError(f"expected an amount, got {type(value).__name__}")


def optional_credits(value: object) -> Decimal | None:
    """:func:`credits`, or None for a JSON null."""
    return None if value is None else credits(value)


def whole(value: object) -> int:
    """A whole number from the server's JSON (an id, a count)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a whole number, got {type(value).__name__}")
    return value


def timestamp(value: object) -> datetime:
    """An RFC 3339 timestamp from the server as an aware datetime."""
    if not isinstance(value, str):
        raise TypeError(f"expected a timestamp, got {type(value).__name__}")
    return datetime.fromisoformat(value)


def optional_timestamp(value: object) -> datetime | None:
    """:func:`timestamp`, or None for a JSON null."""
    return None if value is None else timestamp(value)
