"""The schema, as SQLAlchemy Core tables; each migration writes its change out in full."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class Timestamp(TypeDecorator[datetime]):
    """An instant in UTC: ``timestamptz`` on PostgreSQL, sortable UTC text on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(UTC)  # SQLite's text form writes the UTC fields, no offset

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


ACCOUNT_ID_LENGTH = 128
KEY_LENGTH = 255

TRANSFER_KINDS = (
    "purchase",
    "grant",
    "charge",
    "capture",
    "refund",
    "clawback",
    "adjustment",
    "expiry",
    "sync",
    "reversal",
)
HOLD_STATUSES = ("open", "captured", "released", "expired")
ACCOUNT_STATUSES = ("active", "frozen", "closed")
LOT_SOURCES = ("purchase", "subscription", "signup", "promotion", "adjustment")
SCOPES = ("admin", "app", "read")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


ledger_meta = Table(
    "ledger_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(ACCOUNT_ID_LENGTH), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("balance", BigInteger, nullable=False, server_default="0"),
    Column("held", BigInteger, nullable=False, server_default="0"),
    Column("overdraft_limit", BigInteger, nullable=False, server_default="0"),
    Column("metadata", JSON(none_as_null=True), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    # Frozen and closed accounts spend nothing; creditsd's own debits (expiry, clawback) go on.
    Column("status", String(16), nullable=False, server_default="active"),
    # What forced debits (gateway usage, a refund of spent credits under allow_negative, a
    # sync below zero, a lapse) took past `available`; credits pay it off first. Spending
    # never counts it: only the database's rule below does.
    Column("debt", BigInteger, nullable=False, server_default="0"),
    # The soonest expiry among the account's live lots: spending past it sweeps them first.
    Column("lots_expire_at", Timestamp, nullable=True),
    # Below this balance a debit sends balance.low (None: the [webhooks] default).
    Column("low_balance_threshold", BigInteger, nullable=True),
    # An armed auto top-up's threshold (on, card saved, not paused), which the posting engine
    # reads with the account's lock: NULL costs a write nothing.
    Column("auto_topup_below", BigInteger, nullable=True),
    # The fraction of a minor unit the gateway's usage priced but did not yet charge, in
    # units of 10⁻¹² of a minor unit (always below one minor unit).
    Column("usage_carry", BigInteger, nullable=False, server_default="0"),
    # The IANA time zone its spend limits' windows follow (None: UTC).
    Column("time_zone", String(64), nullable=True),
    # Whether it has members or spend limits: a batch reads them only for such accounts.
    Column("spend_controls", Boolean, nullable=False, server_default=false()),
    # Its spend per day as the worker last worked it out (ledger.runway; None: not yet, or
    # too little history), and the lowest runway level (days) a balance.runway_low told of.
    Column("runway_burn", BigInteger, nullable=True),
    Column("runway_warned", Integer, nullable=True),
    CheckConstraint(_one_of("kind", ("customer", "system")), name="kind"),
    CheckConstraint("held >= 0", name="held_not_negative"),
    CheckConstraint("overdraft_limit >= 0", name="overdraft_limit_not_negative"),
    # The no-overdraft invariant, held by the database itself: stored `held` only ever
    # overstates the live figure (expired holds not yet swept), so this is conservative.
    CheckConstraint(
        "kind = 'system' OR balance - held + overdraft_limit + debt >= 0",
        name="available_not_negative",
    ),
    CheckConstraint(_one_of("status", ACCOUNT_STATUSES), name="status"),
    CheckConstraint("debt >= 0", name="debt_not_negative"),
    # System balances are derived from transfers, so their rows never become hot.
    CheckConstraint("kind = 'customer' OR (balance = 0 AND held = 0)", name="system_not_stored"),
)

# Who holds an account frozen: an operator (`operator`), an open dispute (`dispute:<id>`),
# a refund whose spent credits were not recovered (`refund:<payment>`). The account's
# status is frozen while any is left; each holder lifts only its own.
account_freezes = Table(
    "account_freezes",
    metadata,
    Column("account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.id"), primary_key=True),
    Column("holder", String(KEY_LENGTH), primary_key=True),
    Column("reason", Text, nullable=True),
    Column("created_at", Timestamp, nullable=False),
)

# Every name an account answers to, its own id included, so ids and aliases never collide.
account_names = Table(
    "account_names",
    metadata,
    Column("name", String(ACCOUNT_ID_LENGTH), primary_key=True),
    Column("account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.id"), nullable=False),
    Index(None, "account_id"),
)

# Keys an app mints for one account's calls to /openai/v1: hashed at rest like API keys,
# with an optional spend limit. `spent` is what their holds' captures charged; what their
# open holds reserve is summed from `holds` (few are open at a time).
proxy_keys = Table(
    "proxy_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.id"), nullable=False),
    Column("member_id", String(ACCOUNT_ID_LENGTH), nullable=True),  # None: the whole account's
    Column("app", String(64), nullable=False),  # the app key's name that minted it
    Column("name", String(64), nullable=True),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("hint", String(16), nullable=False),
    Column("spend_limit", BigInteger, nullable=True),
    Column("spent", BigInteger, nullable=False, server_default="0"),
    Column("rate_limit", Integer, nullable=True),  # requests a minute; None: [proxy]'s
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=True),
    Column("revoked_at", Timestamp, nullable=True),
    CheckConstraint("spend_limit > 0", name="spend_limit_positive"),
    CheckConstraint("spent >= 0", name="spent_not_negative"),
    CheckConstraint("rate_limit > 0", name="rate_limit_positive"),
    Index(None, "account_id", "id"),
)

holds = Table(
    "holds",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("captured", BigInteger, nullable=False, server_default="0"),
    Column("status", String(16), nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("app", String(64), nullable=False),
    Column("idempotency_key", String(KEY_LENGTH), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("description", Text, nullable=True),
    Column("metadata", JSON(none_as_null=True), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("pricing", JSON(none_as_null=True), nullable=True),  # the estimate's breakdown
    Column("proxy_key_id", String(32), ForeignKey("proxy_keys.id"), nullable=True),
    Column("member_id", String(ACCOUNT_ID_LENGTH), nullable=True),  # the member it is for
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("captured >= 0", name="captured_not_negative"),
    CheckConstraint("status <> 'open' OR captured <= amount", name="open_within_amount"),
    CheckConstraint(_one_of("status", HOLD_STATUSES), name="status"),
    UniqueConstraint("app", "idempotency_key"),
    Index(None, "account_id", "status"),
    Index(None, "status", "expires_at"),
    Index(None, "proxy_key_id", "status"),
)

transfers = Table(
    "transfers",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column(
        "debit_account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.id"), nullable=False
    ),
    Column(
        "credit_account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.id"), nullable=False
    ),
    Column("amount", BigInteger, nullable=False),
    Column("app", String(64), nullable=False),
    Column("idempotency_key", String(KEY_LENGTH), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("hold_id", String(32), ForeignKey("holds.id"), nullable=True),
    Column("description", Text, nullable=True),
    Column("metadata", JSON(none_as_null=True), nullable=True),
    # What the customer side(s) looked like right after, so a replay answers as the original did.
    Column("debit_balance_after", BigInteger, nullable=True),
    Column("debit_available_after", BigInteger, nullable=True),
    Column("credit_balance_after", BigInteger, nullable=True),
    Column("credit_available_after", BigInteger, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    # The price stamp of a priced transfer: catalog version, inputs, unit prices, rounding.
    Column("pricing", JSON(none_as_null=True), nullable=True),
    # The proxy key whose call a capture paid for.
    Column("proxy_key_id", String(32), ForeignKey("proxy_keys.id"), nullable=True),
    Column("member_id", String(ACCOUNT_ID_LENGTH), nullable=True),  # the member it is for
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("debit_account_id <> credit_account_id", name="two_accounts"),
    CheckConstraint(_one_of("kind", TRANSFER_KINDS), name="kind"),
    UniqueConstraint("app", "idempotency_key"),
    Index(None, "debit_account_id", "id"),
    Index(None, "credit_account_id", "id"),
    Index(None, "created_at"),
    Index(None, "hold_id"),
)

_LIVE = text("remaining > 0")

# Every credit into a customer account lands in a lot; debits spend lots in a fixed order.
lots = Table(
    "lots",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.id"), nullable=False),
    Column("source", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("remaining", BigInteger, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("expires_at", Timestamp, nullable=True),
    Column("transfer_id", String(32), ForeignKey("transfers.id"), nullable=True),
    Column("reference", String(KEY_LENGTH), nullable=True),  # e.g. the Stripe payment it holds
    Column("created_at", Timestamp, nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining"),
    CheckConstraint(_one_of("source", LOT_SOURCES), name="source"),
    Index(
        "ix_lots_spend_order",
        "account_id",
        "priority",
        "expires_at",
        "id",
        postgresql_where=_LIVE,
        sqlite_where=_LIVE,
    ),
    Index("ix_lots_expires_at", "expires_at", postgresql_where=_LIVE, sqlite_where=_LIVE),
    Index(None, "reference"),
    Index(None, "transfer_id"),
)

# Which lots paid for a debit, and how much of each.
lot_spends = Table(
    "lot_spends",
    metadata,
    Column("transfer_id", String(32), ForeignKey("transfers.id"), primary_key=True),
    Column("lot_id", String(32), ForeignKey("lots.id"), primary_key=True),
    Column("amount", BigInteger, nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    Index(None, "lot_id"),
)

# Every webhook received (Stripe events, Svix messages), stored once before it is handled.
webhook_events = Table(
    "webhook_events",
    metadata,
    Column("source", String(16), primary_key=True),
    Column("event_id", String(KEY_LENGTH), primary_key=True),
    Column("type", String(128), nullable=False),
    Column("payload", JSON(none_as_null=True), nullable=False),
    Column("received_at", Timestamp, nullable=False),
    Column("handled_at", Timestamp, nullable=True),
    Column("outcome", String(64), nullable=True),
    Column("detail", JSON(none_as_null=True), nullable=True),  # transfers made, what was skipped
    Index(None, "type", "received_at"),
    Index(None, "source", "received_at"),  # each source's events, newest first
)

# The one Stripe customer each account pays as.
stripe_customers = Table(
    "stripe_customers",
    metadata,
    Column("account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.id"), primary_key=True),
    Column("customer_id", String(KEY_LENGTH), nullable=False, unique=True),
    Column("created_at", Timestamp, nullable=False),
)

# Each Stripe payment that bought credits, and what refunds and disputes took back.
stripe_payments = Table(
    "stripe_payments",
    metadata,
    Column("id", String(KEY_LENGTH), primary_key=True),  # payment intent, else invoice/session
    Column("account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.id"), nullable=False),
    Column("session_id", String(KEY_LENGTH), nullable=True),
    Column("invoice_id", String(KEY_LENGTH), nullable=True),
    Column("amount", BigInteger, nullable=False),  # in the currency's minor unit
    Column("currency", String(8), nullable=False),
    Column("credits", BigInteger, nullable=False),  # minor units of credits
    Column("items", JSON(none_as_null=True), nullable=False),
    Column("transfer_id", String(32), ForeignKey("transfers.id"), nullable=False),
    Column("event_id", String(KEY_LENGTH), nullable=False),
    Column("refunded", BigInteger, nullable=False, server_default="0"),
    Column("clawed_back", BigInteger, nullable=False, server_default="0"),
    Column("confirmed_at", Timestamp, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    CheckConstraint("credits > 0", name="credits_positive"),
    CheckConstraint("clawed_back >= 0 AND clawed_back <= credits", name="clawed_back"),
    Index(None, "account_id"),
)

# Refunds and disputes Stripe delivered before the purchase of their payment (Stripe does
# not order events, and retries a failed one for days): the inbox ids of their events, in
# arrival order, applied in the purchase's transaction, which deletes the row. Both sides
# write this row first, so a purchase and an early refund arriving together take turns.
stripe_early_events = Table(
    "stripe_early_events",
    metadata,
    Column("payment_id", String(KEY_LENGTH), primary_key=True),
    Column("event_ids", JSON(none_as_null=True), nullable=False),
)

OUTBOX_STATUSES = ("pending", "delivered", "dead")

# Where signed webhooks go; the secret signs them (Standard Webhooks), so it is kept as is.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("url", String(2048), nullable=False),
    Column("events", JSON(none_as_null=True), nullable=False),
    Column("secret", String(128), nullable=False),
    Column("description", Text, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("disabled_at", Timestamp, nullable=True),
    Column("idempotency_key", String(KEY_LENGTH), nullable=True, unique=True),
    Column("fingerprint", String(64), nullable=True),
)

# Every message leaving creditsd, written in the transaction of the change it tells of.
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("destination", String(32), nullable=False),  # an endpoint id, "gateway" or "app"
    Column("message_id", String(64), nullable=False, unique=True),
    Column("event_type", String(64), nullable=False),
    Column("account_id", String(ACCOUNT_ID_LENGTH), nullable=True),  # delivered in id order
    Column("payload", JSON(none_as_null=True), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Timestamp, nullable=False),
    Column("locked_until", Timestamp, nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("delivered_at", Timestamp, nullable=True),
    CheckConstraint(_one_of("status", OUTBOX_STATUSES), name="status"),
    Index(None, "status", "next_attempt_at"),
    Index(None, "destination", "account_id", "id"),
)

# Published versions of the price catalog: each the one before plus one (the key keeps it a line).
price_catalogs = Table(
    "price_catalogs",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("digest", String(64), nullable=False),
    Column("catalog", JSON(none_as_null=True), nullable=False),
    Column("published_by", String(128), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    CheckConstraint("version >= 1", name="version_positive"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("hint", String(16), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("revoked_at", Timestamp, nullable=True),
    Column("expires_at", Timestamp, nullable=True),
    CheckConstraint(_one_of("scope", SCOPES), name="scope"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(255), nullable=False),
    Column("before", JSON(none_as_null=True), nullable=True),
    Column("after", JSON(none_as_null=True), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Index(None, "target", "id"),
)

# What browsers hold of the pages that the database must know: admin console sessions
# (signing out ends one; a copied cookie dies with it) and portal links already opened
# (each opens once). Only the SHA-256 of a token is kept, so reading the table signs no
# one in.
WEB_TOKEN_KINDS = ("admin_session", "portal_link")
web_tokens = Table(
    "web_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("subject", String(KEY_LENGTH), nullable=False),  # an admin key's id, an account
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    CheckConstraint(_one_of("kind", WEB_TOKEN_KINDS), name="kind_known"),
    Index(None, "expires_at"),
)

# Reconciliation's memory (integrity/): each drift it found, open until a later run finds
# it gone or a rebuild repairs it (never deleted: their count is the violations counter);
# the chain of checkpoints over the transfers, with each checkpointed transfer's digest so
# that a broken link names its transfer; and one row per scheduled job: the lease that lets
# one process run it at a time, and how its last run went.
_OPEN = text("resolved_at IS NULL")
integrity_drifts = Table(
    "integrity_drifts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("invariant", String(64), nullable=False),
    Column("subject", String(KEY_LENGTH), nullable=False),
    Column("detail", Text, nullable=False),
    Column("detected_at", Timestamp, nullable=False),
    Column("resolved_at", Timestamp, nullable=True),
    Index(
        "ix_integrity_drifts_open",
        "invariant",
        "subject",
        unique=True,
        postgresql_where=_OPEN,
        sqlite_where=_OPEN,
    ),
)

integrity_checkpoints = Table(
    "integrity_checkpoints",
    metadata,
    Column("number", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer, nullable=False),  # of the transfers' serialization
    # Covers the transfers created before this moment and at or after the previous one's.
    Column("until", Timestamp, nullable=False, unique=True),
    Column("transfers", BigInteger, nullable=False),
    Column("total", BigInteger, nullable=False),  # their amounts summed
    Column("digest", String(64), nullable=False),  # SHA-256 chained to the previous digest
    Column("created_at", Timestamp, nullable=False),
    CheckConstraint("number >= 1", name="number_positive"),
)

# No foreign key: a transfer deleted behind creditsd's back keeps its digest, so the
# chain's check names it.
transfer_digests = Table(
    "transfer_digests",
    metadata,
    Column("transfer_id", String(32), primary_key=True),
    Column("checkpoint", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Index(None, "checkpoint"),
)

scheduled_jobs = Table(
    "scheduled_jobs",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("lease_owner", String(32), nullable=True),
    Column("lease_until", Timestamp, nullable=True),
    Column("last_success_at", Timestamp, nullable=True),
    Column("last_duration_ms", BigInteger, nullable=True),
    Column("last_full_at", Timestamp, nullable=True),  # the last run that checked everything
)

# Spend controls (limits/). A wallet is any customer account with members: ids of the
# app's choosing (a Clerk user id) who spend from it, each attributed. A spend limit caps
# what a subject (the wallet itself, a member, an app key's app, a proxy key) spends from
# the account in a period; its spend is counted per window in `limit_windows`, keyed by
# the window's start, so a new window starts a new counter and no job resets anything.
# Changing a limit's amount or period replaces it (a new id, a new `since`): its windows
# start afresh. Every row is keyed by its account first (the distribution key on Citus).
LIMIT_SCOPES = ("wallet", "member", "app", "key")
LIMIT_PERIODS = ("day", "week", "month", "lifetime")
LIMIT_MODES = ("hard", "soft")
members = Table(
    "members",
    metadata,
    Column("account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.id"), primary_key=True),
    Column("member_id", String(ACCOUNT_ID_LENGTH), primary_key=True),
    Column("display_name", String(128), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

spend_limits = Table(
    "spend_limits",
    metadata,
    Column("account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.id"), primary_key=True),
    Column("id", String(32), primary_key=True),
    Column("scope", String(8), nullable=False),
    Column("subject", String(ACCOUNT_ID_LENGTH), nullable=False),  # '' for the wallet
    Column("period", String(8), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("mode", String(8), nullable=False),
    Column("since", Timestamp, nullable=False),  # no window starts before it
    Column("created_at", Timestamp, nullable=False),
    CheckConstraint(_one_of("scope", LIMIT_SCOPES), name="scope"),
    CheckConstraint(_one_of("period", LIMIT_PERIODS), name="period"),
    CheckConstraint(_one_of("mode", LIMIT_MODES), name="mode"),
    CheckConstraint("amount >= 0", name="amount_not_negative"),
    UniqueConstraint("account_id", "scope", "subject", "period"),
)

limit_windows = Table(
    "limit_windows",
    metadata,
    Column("account_id", String(ACCOUNT_ID_LENGTH), primary_key=True),
    Column("limit_id", String(32), primary_key=True),
    Column("window_start", Timestamp, primary_key=True),
    Column("spent", BigInteger, nullable=False, server_default="0"),
    Column("warned", Integer, nullable=False, server_default="0"),  # the last percent warned
    ForeignKeyConstraint(
        ["account_id", "limit_id"],
        ["spend_limits.account_id", "spend_limits.id"],
        name="fk_limit_windows_limit",
        ondelete="CASCADE",
    ),
    CheckConstraint("spent >= 0", name="spent_not_negative"),
)

# Auto top-up: one rule per account, with the consent (a saved card) it charges and where it
# stands; and its attempts, at most one in flight per account (``in_flight`` is the account
# while an attempt is unresolved, NULL after: a unique key both databases enforce).
AUTO_TOPUP_STATES = ("active", "paused", "needs_action")
AUTO_TOPUP_ATTEMPT_STATUSES = (
    "queued",
    "processing",
    "succeeded",
    "declined",
    "needs_action",
    "canceled",
)

auto_topups = Table(
    "auto_topups",
    metadata,
    Column("account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.id"), primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("threshold", BigInteger, nullable=False),
    Column("target_balance", BigInteger, nullable=True),
    Column("pack", String(64), nullable=True),
    Column("monthly_cap", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("paused_reason", String(255), nullable=True),
    Column("consecutive_declines", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Timestamp, nullable=True),  # backing off after a decline
    Column("cap_reached_in", String(7), nullable=True),  # the month (2026-12) it was told
    Column("customer_id", String(KEY_LENGTH), nullable=True),
    Column("payment_method_id", String(KEY_LENGTH), nullable=True),
    Column("card_fingerprint", String(KEY_LENGTH), nullable=True),
    Column("card_last4", String(4), nullable=True),
    Column("card_brand", String(32), nullable=True),
    Column("consented_by", String(KEY_LENGTH), nullable=True),
    Column("consented_at", Timestamp, nullable=True),
    Column("consented_rule", JSON(none_as_null=True), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    CheckConstraint(_one_of("state", AUTO_TOPUP_STATES), name="state"),
    CheckConstraint("threshold >= 0", name="threshold_not_negative"),
    CheckConstraint("monthly_cap > 0", name="monthly_cap_positive"),
    CheckConstraint("(target_balance IS NULL) <> (pack IS NULL)", name="target_balance_or_pack"),
    CheckConstraint("target_balance IS NULL OR target_balance > threshold", name="target"),
)

auto_topup_attempts = Table(
    "auto_topup_attempts",
    metadata,
    Column("account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.id"), primary_key=True),
    Column("id", String(32), primary_key=True),
    Column("in_flight", String(ACCOUNT_ID_LENGTH), nullable=True, unique=True),
    Column("status", String(16), nullable=False),
    Column("credits", BigInteger, nullable=False),
    Column("payment_method_id", String(KEY_LENGTH), nullable=False),
    Column("card_fingerprint", String(KEY_LENGTH), nullable=True),
    Column("payment_intent_id", String(KEY_LENGTH), nullable=True, unique=True),
    Column("amount", BigInteger, nullable=True),  # in the currency's minor unit, once priced
    Column("currency", String(8), nullable=True),
    Column("decline_code", String(64), nullable=True),
    Column("transfer_id", String(32), ForeignKey("transfers.id"), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    CheckConstraint(_one_of("status", AUTO_TOPUP_ATTEMPT_STATUSES), name="status"),
    CheckConstraint("credits > 0", name="credits_positive"),
    Index(None, "card_fingerprint", "created_at"),
)
