"""Configuration: one TOML file, every key overridable by ``CREDITSD_<SECTION>__<KEY>``."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from creditsd.kit.money import MAX_SCALE, AmountError, Money, parse_decimal
from creditsd.price_settings import PricingSettings

DEFAULT_CONFIG_FILE = "creditsd.toml"
DEFAULT_DATABASE_URL = "sqlite:///creditsd.db"
ENV_PREFIX = "CREDITSD_"


class ConfigError(Exception):
    """Configuration that cannot start the service; the message names the key."""


def _decimal(value: object) -> Decimal:
    try:
        return parse_decimal(value)
    except AmountError as exc:
        raise ValueError(str(exc)) from exc


ConfigDecimal = Annotated[Decimal, BeforeValidator(_decimal)]


def _listed(value: Any) -> Any:
    """A list as TOML writes it, or as an environment variable does: ``80,100``."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LedgerSettings(_Section):
    """``[ledger]``: how amounts are kept."""

    scale: int = Field(4, ge=0, le=MAX_SCALE, description="Decimal places of one credit.")
    group_commit: bool = Field(True, description="Share transactions between concurrent charges.")
    group_commit_batch: int = Field(200, ge=1, le=10_000)
    group_commit_lanes: int = Field(2, ge=1, le=1000)


class AccountSettings(_Section):
    """``[accounts]``: how customer accounts come to exist."""

    auto_create: bool = True
    signup_grant: ConfigDecimal = Decimal(0)


class HoldSettings(_Section):
    """``[holds]``: reservation lifetimes (seconds) and what a final capture past the hold does."""

    default_expires_in: int = Field(900, ge=1)
    max_expires_in: int = Field(7 * 24 * 3600, ge=1)
    sweep_interval: float = Field(5.0, gt=0)
    overrun: Literal["cap", "refuse"] = "cap"


class ServerSettings(_Section):
    """``[server]``: where ``creditsd serve`` listens."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    keep_alive_timeout: int = Field(
        75, ge=1, le=3600, description="Seconds an idle client connection is kept open."
    )
    key_cache_seconds: float = Field(
        5,
        ge=0,
        le=60,
        description="Seconds a process trusts an API key it has checked, so that a revoked "
        "key stops working within this long; 0 checks the database on every request.",
    )
    request_timeout: float = Field(
        10,
        gt=0,
        le=300,
        description="Seconds a request may take to arrive whole (headers and body); a "
        "slower one is answered 408 and its connection closed.",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Open client connections a process accepts (fewer if its descriptor "
        "limit is lower); more are answered 503 with Retry-After and closed.",
    )
    max_body_bytes: int = Field(
        1 << 20,
        ge=1024,
        le=64 << 20,
        description="The largest /v1 request body; larger ones are refused (413) as they "
        "arrive, before the key is checked.",
    )
    max_webhook_body_bytes: int = Field(
        1 << 20,
        ge=1024,
        le=64 << 20,
        description="The largest body a provider's webhook (Stripe, Clerk) may send; larger "
        "ones are refused (413) as they arrive, before the signature is checked.",
    )
    metrics: Literal["open", "key", "off"] = Field(
        "open",
        description="Who may read GET /metrics: anyone who can reach the port (open), any "
        "API key, a read key being enough (key), or nobody (off: not served).",
    )


def _database_url(raw: str) -> str:
    """A URL creditsd can open, else a ``ValueError`` saying why without quoting it (it may
    hold a password): ``sqlite://x.db`` is "a SQLite URL takes three slashes …"."""
    try:
        url = make_url(raw)
        port = url.port
    except (ArgumentError, ValueError):
        raise ValueError(
            "is not a database URL: use sqlite:///path/to/file.db or "
            "postgresql://user:password@host:port/database"
        ) from None
    backend = url.get_backend_name()
    if backend not in {"sqlite", "postgresql", "postgres"}:
        raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")
    if backend == "sqlite" and url.host:
        raise ValueError(
            "a SQLite URL takes three slashes before a relative path (sqlite:///creditsd.db) "
            "and four before an absolute one (sqlite:////var/lib/creditsd.db)"
        )
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port {port} is not 1-65535")
    return raw


DatabaseUrl = Annotated[str, AfterValidator(_database_url)]


class DatabaseSettings(_Section):
    """``[database]``: ``url`` is also read from ``CREDITSD_DATABASE_URL``."""

    url: DatabaseUrl = DEFAULT_DATABASE_URL
    pool_size: int = Field(10, ge=1, le=1000)
    connect_timeout: float = Field(
        5, gt=0, le=300, description="Seconds to open a PostgreSQL connection before giving up."
    )
    pool_timeout: float = Field(
        5, gt=0, le=300, description="Seconds a request waits for a free pooled connection."
    )
    lock_timeout: float = Field(
        5,
        gt=0,
        le=300,
        description="Seconds a write waits for a row another transaction holds (PostgreSQL) "
        "or for SQLite's write lock.",
    )
    statement_timeout: float = Field(
        10,
        ge=0,
        le=3600,
        description="Seconds one PostgreSQL statement may run (0: no limit); a database that "
        "stops answering is given up on shortly after.",
    )


def _secret(prefixes: tuple[str, ...], what: str) -> Any:
    def check(value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(prefixes):
            raise ValueError(f"is not a {what} (it should start with {' or '.join(prefixes)})")
        return value

    return check


_STRIPE_KEY_MODES = {"sk_test_": False, "rk_test_": False, "sk_live_": True, "rk_live_": True}
StripeKey = Annotated[
    SecretStr, AfterValidator(_secret(tuple(_STRIPE_KEY_MODES), "Stripe secret or restricted key"))
]
WebhookSecret = Annotated[SecretStr, AfterValidator(_secret(("whsec_",), "webhook signing secret"))]
PositiveCredits = Annotated[ConfigDecimal, Field(gt=0)]


class StripeSettings(_Section):
    """``[stripe]``: the account credit packs are sold through, and what refunds do."""

    secret_key: StripeKey | None = None
    webhook_secret: WebhookSecret | None = None
    publishable_key: str | None = Field(None, pattern=r"^pk_[A-Za-z0-9_]+$")
    api_base: str | None = Field(
        None, pattern=r"^https?://", description="Another Stripe API address (tests, proxies)."
    )
    timeout_seconds: float = Field(20, gt=0, le=120)
    webhook_tolerance: int = Field(300, ge=1, le=3600, description="Seconds a signature lives.")
    refund_policy: Literal["allow_negative", "block_account", "write_off"] = "allow_negative"
    dispute_policy: Literal["clawback", "freeze"] = "clawback"
    currency: str = Field(
        "usd",
        pattern=r"^[a-z]{3}$",
        description="The currency auto top-up saves cards for and charges in (ISO 4217).",
    )

    @property
    def enabled(self) -> bool:
        """Whether checkout can be offered (a secret key is set)."""
        return self.secret_key is not None

    @property
    def livemode(self) -> bool | None:
        """Whether the key is a live-mode one (``sk_live_``, ``rk_live_``); None without a key."""
        if self.secret_key is None:
            return None
        return _STRIPE_KEY_MODES[self.secret_key.get_secret_value()[:8]]


class PackSettings(_Section):
    """``[packs.<name>]``: credits sold for one Stripe price."""

    credits: PositiveCredits
    price_id: str = Field(pattern=r"^price_[A-Za-z0-9_]+$")
    label: str | None = Field(None, max_length=100)
    display_price: str | None = Field(None, max_length=40)


class PlanSettings(_Section):
    """``[plans.<id>]``: a subscription plan (Clerk ``cplan_…`` or Stripe ``price_…``)."""

    credits: PositiveCredits = Field(description="Credits granted each billing period.")
    label: str | None = Field(None, max_length=100)


class LinkSettings(_Section):
    """A link of seed 000 (``[gateway]``, ``[app_link]``): where its messages go, the secret
    both sides send as ``X-Internal-Secret``, and seed 000's client settings."""

    enabled: bool = Field(False, description="Send this link's messages to base_url.")
    base_url: str | None = Field(None, pattern=r"^https?://[^\s]+$")
    internal_secret: SecretStr | None = Field(None, min_length=16)
    timeout_seconds: float = Field(10, gt=0, le=300)
    retry_count: int = Field(2, ge=0, le=20)
    retry_delay_seconds: float = Field(1, ge=0, le=300)
    points_to_usd: PositiveCredits = Field(
        Decimal(10_000), description="Gateway points that make one US dollar."
    )

    @model_validator(mode="after")
    def _enabled_needs_an_address_and_a_secret(self) -> LinkSettings:
        if self.enabled:
            for key in ("base_url", "internal_secret"):
                if getattr(self, key) is None:
                    raise ValueError(f"{key} is required when enabled is true")
        return self


class ModelRoute(_Section):
    """``[proxy.models."<model>"]``: where one model's calls go instead of ``[proxy]``'s
    upstream; what is left out comes from ``[proxy]``."""

    base_url: str | None = Field(None, pattern=r"^https?://[^\s]+$")
    api_key: SecretStr | None = None
    model: str | None = Field(
        None, min_length=1, max_length=255, description="The upstream's name for the model."
    )


class ProxySettings(_Section):
    """``[proxy]``: the OpenAI-compatible upstream ``/openai/v1`` forwards model calls to."""

    base_url: str = Field(
        "https://openrouter.ai/api/v1",
        pattern=r"^https?://[^\s]+$",
        description="Any OpenAI-compatible API (OpenRouter by default).",
    )
    api_key: SecretStr | None = Field(
        None, description="The upstream's key; never shown to a client or logged."
    )
    timeout_seconds: float = Field(120, gt=0, le=3600)
    max_answer_bytes: int = Field(
        64 << 20,
        ge=1024,
        le=1 << 30,
        description="The longest whole (not streamed) upstream answer passed on; a longer "
        "one is 502 upstream_answer_too_large and costs nothing. Also what a stream keeps "
        "for a client reading slower than the upstream writes; past it the upstream waits.",
    )
    send_timeout_seconds: float = Field(
        60,
        gt=0,
        le=3600,
        description="A stream's client that takes nothing for this long is cut, and billed "
        "by on_client_disconnect.",
    )
    default_max_tokens: int = Field(
        4096,
        ge=1,
        le=1_000_000,
        description="The output cap a call is held for, and sent upstream, when it names none.",
    )
    clamp_max_tokens: bool = Field(
        False,
        description="Lower a call's output cap to what the balance covers instead of 402 "
        "(a call opts in alone with X-Creditsd-Clamp: true).",
    )
    on_client_disconnect: Literal["finish", "delivered"] = Field(
        "finish",
        description="A stream whose client hangs up (or is cut) before the upstream's end: "
        "read the upstream to its end and bill its usage (finish), or stop the upstream and "
        "bill what reached the client (delivered).",
    )
    empty_completion: Literal["free", "bill"] = Field(
        "free", description="An answer with no output tokens: charge nothing, or its usage."
    )
    hold_seconds: int = Field(
        600,
        ge=30,
        le=86_400,
        description="A call's hold lasts this long (a stream's is extended every half of it "
        "until the upstream's stream ends), so a crashed process's holds expire soon.",
    )
    models: dict[str, ModelRoute] = Field(
        {}, description="Per-model upstreams, by catalog model id."
    )
    rate_limit_per_minute: int = Field(
        60,
        ge=0,
        le=1_000_000,
        description="Requests a minute each proxy key may make, per process (0: no limit); "
        "a key minted with its own rate_limit keeps that.",
    )
    app_rate_limit_per_minute: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="Requests a minute each app key may make on /openai/v1, per process "
        "(0: no limit).",
    )


class WebhookSettings(_Section):
    """``[webhooks]``: delivering the outbox (signed webhooks and the gateway link)."""

    low_balance_threshold: ConfigDecimal = Field(
        Decimal(0), ge=0, description="balance.low below this (credits); 0: never."
    )
    limit_warning_percentages: Annotated[
        list[Annotated[int, Field(ge=1, le=1000)]], BeforeValidator(_listed)
    ] = Field(
        [80, 100],
        max_length=10,
        description="limit.warning once per window when a window's spend reaches each of "
        "these percentages of its spend limit ([]: never).",
    )
    poll_interval: float = Field(1, gt=0, le=60, description="Seconds between outbox polls.")
    timeout_seconds: float = Field(10, gt=0, le=300)
    backoff_seconds: float = Field(5, gt=0, le=3600, description="The first retry's wait.")
    max_backoff_seconds: float = Field(3600, gt=0, le=86_400)
    max_age_seconds: int = Field(3 * 86_400, ge=60, description="Then a message is dead.")
    batch: int = Field(
        16,
        ge=1,
        le=256,
        description="Messages a worker delivers at once; each is leased to it for one "
        "delivery's time (the webhook timeout, or a gateway or app link's timeout for each of "
        "its tries and the waits between them if longer, plus 5 s), so a worker that dies "
        "holds them back no longer.",
    )


class ReconcileSettings(_Section):
    """``[reconcile]``: the scheduled check of the ledger's invariants (in the worker)."""

    interval_seconds: float = Field(
        300, ge=0, description="Seconds between runs; 0 turns scheduled reconciliation off."
    )
    full_pass_seconds: float = Field(
        86_400,
        gt=0,
        description="A run checks every account and re-derives the whole checkpoint chain "
        "at least this often; runs between check what changed.",
    )


class ClerkSettings(_Section):
    """``[clerk]``: the Svix signing secret of Clerk's webhooks."""

    webhook_secret: WebhookSecret | None = None


class WebSettings(_Section):
    """``[web]``: the billing page (``/billing``) and the admin console (``/admin``)."""

    secret: SecretStr | None = Field(
        None,
        min_length=32,
        description="Signs portal links and the billing page's sessions; every process of a "
        "deployment needs the same one. Unset: one is made on first use and kept in the database.",
    )
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s]+$",
        description="The address browsers reach creditsd at, for portal links; unset: the "
        "address the app's request came to.",
    )
    link_seconds: int = Field(
        300, ge=10, le=86_400, description="Seconds a portal link works before it is opened."
    )
    portal_session_seconds: int = Field(
        3600, ge=60, le=7 * 86_400, description="Seconds a billing page session lasts."
    )
    admin_session_seconds: int = Field(
        8 * 3600, ge=60, le=7 * 86_400, description="Seconds an admin console session lasts."
    )
    members_see_wallet_balance: bool = Field(
        False,
        description="Whether a wallet member's billing page (a portal link made with "
        "`member`) shows the wallet's balance; off by default, as a team's balance is its "
        "owner's business. Members always see their own limits.",
    )


class Settings(_Section):
    """The whole configuration."""

    ledger: LedgerSettings = LedgerSettings()
    accounts: AccountSettings = AccountSettings()
    holds: HoldSettings = HoldSettings()
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    pricing: PricingSettings = PricingSettings()
    stripe: StripeSettings = StripeSettings()
    clerk: ClerkSettings = ClerkSettings()
    # creditsd as the app of a sub2api gateway: its usage comes in, balances go out to it.
    gateway: LinkSettings = LinkSettings()
    # creditsd as the gateway of an app written to seed 000: usage goes out, balances come in.
    app_link: LinkSettings = LinkSettings()
    proxy: ProxySettings = ProxySettings()
    webhooks: WebhookSettings = WebhookSettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    web: WebSettings = WebSettings()
    packs: dict[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")], PackSettings] = {}
    plans: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,100}$")], PlanSettings] = {}

    @model_validator(mode="after")
    def _price_ids_name_one_thing(self) -> Settings:
        seen: dict[str, str] = {}
        for where, price_id in [
            *((f"packs.{name}", pack.price_id) for name, pack in self.packs.items()),
            *((f"plans.{plan_id}", plan_id) for plan_id in self.plans),
        ]:
            if price_id in seen:
                raise ValueError(f"{where} uses price {price_id}, already used by {seen[price_id]}")
            seen[price_id] = where
        return self

    @property
    def money(self) -> Money:
        """The converter for this deployment's scale."""
        return Money(self.ledger.scale)

    def units(self, key: str, credits: Decimal) -> int:
        """A configured amount of credits in minor units; ``key`` names it if it does not fit
        the ledger's scale."""
        try:
            return self.money.to_minor(credits, allow_zero=True)
        except AmountError as exc:
            raise ConfigError(f"{key} {exc}") from exc

    @property
    def signup_grant_units(self) -> int:
        """The sign-up grant in minor units."""
        return self.units("accounts.signup_grant", self.accounts.signup_grant)

    @property
    def low_balance_threshold_units(self) -> int:
        """The default balance.low threshold in minor units (0: never)."""
        return self.units("webhooks.low_balance_threshold", self.webhooks.low_balance_threshold)

    def low_balance_threshold_of(self, own: int | None) -> int:
        """An account's balance.low threshold in minor units: its own (``own``), else the
        default; 0: never."""
        return self.low_balance_threshold_units if own is None else own

    @property
    def configured_pricing(self) -> PricingSettings | None:
        """The catalog this configuration sets (a ``[pricing]`` section or its variables),
        None without one: a process never publishes the built-in catalog over another."""
        return self.pricing if "pricing" in self.model_fields_set else None

    def check_amounts(self) -> None:
        """Refuse, naming the key, any configured credits the ledger's scale cannot hold,
        so that the start fails rather than the first sign-up, debit or purchase."""
        _ = self.signup_grant_units, self.low_balance_threshold_units
        for name, pack in self.packs.items():
            self.units(f"packs.{name}.credits", pack.credits)
        for plan_id, plan in self.plans.items():
            self.units(f"plans.{plan_id}.credits", plan.credits)


def _read_file(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
        return tomllib.loads(text, parse_float=Decimal), text
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc


def _path_of(fragment: str) -> tuple[str, ...] | None:
    """The key path one line of TOML defines on its own (a header or a key), if it parses."""
    try:
        parsed: Any = tomllib.loads(fragment)
    except tomllib.TOMLDecodeError:
        return None
    path: list[str] = []
    while isinstance(parsed, dict) and len(parsed) == 1:
        key, parsed = next(iter(parsed.items()))
        path.append(key)
    return tuple(path) if path else None


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Where each table and key of a TOML text is defined (1-based line numbers)."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "[[")):
            continue
        if line.startswith("["):
            table = _path_of(line) or table
            lines.setdefault(table, number)
        elif (key := _path_of(line)) is not None:
            lines.setdefault(table + key, number)
    return lines


def _source(
    loc: tuple[str, ...], variables: dict[tuple[str, ...], str], lines: dict[tuple[str, ...], int]
) -> tuple[str, bool]:
    """Where the nearest enclosing key set came from, and whether that is the file:
    `` (from CREDITSD_SERVER__PORT)``, `` (line 3)``, or nothing for a default."""
    for end in range(len(loc), 0, -1):
        if (variable := variables.get(loc[:end])) is not None:
            return f" (from {variable})", False
        if (number := lines.get(loc[:end])) is not None:
            return f" (line {number})", True
    return "", False


def _overlay_environment(
    data: dict[str, Any], environ: Mapping[str, str]
) -> dict[tuple[str, ...], str]:
    """``CREDITSD_STRIPE__SECRET_KEY`` sets stripe.secret_key; ``CREDITSD_PACKS__P10K__PRICE_ID``
    sets packs.p10k.price_id. Returns the variable that set each key."""
    variables: dict[tuple[str, ...], str] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        *tables, key = name.removeprefix(ENV_PREFIX).lower().split("__")
        table = data
        for part in tables:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(f"{'.'.join(tables)} must be a table")
        table[key] = value
        variables[(*tables, key)] = name
    url = environ.get(f"{ENV_PREFIX}DATABASE_URL")
    if url is not None and not url.strip():
        # Unset means the embedded default; empty is a mistake, not a request for SQLite.
        raise ConfigError(f"{ENV_PREFIX}DATABASE_URL is set but empty: unset it or give a URL")
    if url:
        data.setdefault("database", {})["url"] = url
        variables["database", "url"] = f"{ENV_PREFIX}DATABASE_URL"
    return variables


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the TOML file (``CREDITSD_CONFIG``, else ``creditsd.toml`` if present) and the env."""
    environ = os.environ if environ is None else environ
    explicit = path or environ.get(f"{ENV_PREFIX}CONFIG")
    file = Path(explicit or DEFAULT_CONFIG_FILE)
    data, text = _read_file(file) if explicit or file.exists() else ({}, "")
    variables = _overlay_environment(data, environ)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        lines = _key_lines(text)
        problems, in_file = [], False
        for error in exc.errors():
            loc = tuple(str(part) for part in error["loc"])
            source, from_file = _source(loc, variables, lines)
            in_file |= from_file
            # A validator's own words, without pydantic's "Value error, " before them.
            said = error["ctx"]["error"] if error["type"] == "value_error" else error["msg"]
            problems.append(f"{'.'.join(loc)}{source}: {said}")
        # The file is named only when it holds a culprit: a variable's mistake is not its.
        raise ConfigError(
            f"invalid configuration{f' in {file}' if in_file else ''}: {'; '.join(problems)}"
        ) from None
    settings.check_amounts()
    return settings
